// SPDX-License-Identifier: Apache-2.0
#pragma once

// What every actor in actors/ shares (private to the library): the name and
// topic rules its options are checked against, its log line, and how it
// joins a service as one supervised instance.

#include <string>
#include <string_view>

#include "plexus/actor.hpp"
#include "plexus/node.hpp"

namespace plexus::actors::detail {

/// 1 to `max` letters, digits, '_' or '-': one topic token, part of a
/// function's name and of msg ids.
[[nodiscard]] bool valid_token(std::string_view s, std::size_t max);

/// Why actors may not use `topic` (`what` names the option: "topic", "on"),
/// or empty. `pattern`: wildcards allowed. Reserved namespaces ($SYS.,
/// $DLQ., _INBOX.) are refused.
[[nodiscard]] std::string topic_problem(std::string_view what, const std::string& topic,
                                        bool pattern = false);

/// Appends `what` to a "; "-separated list of problems.
void add_problem(std::string& problems, const std::string& what);

/// One line on stderr, as context::log writes it.
void log_line(const char* level, const std::string& who, std::string_view id, std::string_view text);

/// `svc`'s function `name` on `topic`: one permanent instance of a raw
/// actor made by `make`.
function_builder& add_singleton(service& svc, const std::string& name, const std::string& topic,
                                actor_factory make);

} // namespace plexus::actors::detail
