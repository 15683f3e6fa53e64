// SPDX-License-Identifier: Apache-2.0
#pragma once

// The one way plexus binds a /metrics endpoint (the broker's and a node's).

#include <stdexcept>

namespace httplib {
class Server;
}

namespace plexus::broker {

/// Why a metrics endpoint could not listen: "metrics port N: port in use".
struct metrics_port_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Binds `http` to 127.0.0.1:`port` (< 0: a free port) and returns the
/// port. SO_REUSEADDR only, not cpp-httplib's SO_REUSEPORT: with it a
/// second process bound the same port and scrapes went to either. A
/// restart still binds over the last run's TIME_WAIT connections. Throws
/// metrics_port_error when the port cannot be had.
int bind_metrics_port(httplib::Server& http, int port);

} // namespace plexus::broker
