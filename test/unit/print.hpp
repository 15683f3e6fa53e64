// SPDX-License-Identifier: Apache-2.0
#pragma once

// Boost.Test prints values of failed checks; these make plexus enums readable.

#include <ostream>

#include "plexus/topic.hpp"
#include "plexus/wire.hpp"

namespace plexus {
inline std::ostream& operator<<(std::ostream& os, topic_errc e) { return os << to_string(e); }
inline std::ostream& operator<<(std::ostream& os, reserved r) { return os << static_cast<int>(r); }
} // namespace plexus

namespace plexus::wire {
inline std::ostream& operator<<(std::ostream& os, errc e) { return os << to_string(e); }
inline std::ostream& operator<<(std::ostream& os, field f) { return os << to_string(f); }
inline std::ostream& operator<<(std::ostream& os, op o) { return os << to_string(o); }
inline std::ostream& operator<<(std::ostream& os, ack_mode a) { return os << static_cast<int>(a); }
inline std::ostream& operator<<(std::ostream& os, nack_action a) { return os << static_cast<int>(a); }
} // namespace plexus::wire
