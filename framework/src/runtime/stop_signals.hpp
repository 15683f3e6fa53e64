// SPDX-License-Identifier: Apache-2.0
#pragma once

// SIGINT and SIGTERM as a graceful stop: node::wait() returns, node::run()
// stops the node (handlers finish, their messages are ACKed) and exits 0.

namespace plexus::detail {

/// Installs the handlers and forgets earlier signals (node::start()).
void catch_stop_signals();
/// A stop signal came since catch_stop_signals().
[[nodiscard]] bool stop_signalled() noexcept;

} // namespace plexus::detail
