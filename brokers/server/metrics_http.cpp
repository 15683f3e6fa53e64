// SPDX-License-Identifier: Apache-2.0
#include "metrics_http.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <sys/socket.h>

#include <httplib.h>

namespace plexus::broker {

int bind_metrics_port(httplib::Server& http, int port) {
  http.set_socket_options([](socket_t s) {
    int yes = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  errno = 0;
  const int bound = port < 0 ? http.bind_to_any_port("127.0.0.1")
                             : (http.bind_to_port("127.0.0.1", port) ? port : -1);
  if (bound >= 0) return bound;
  const auto why = errno == EADDRINUSE ? std::string{"port in use"}
                   : errno != 0        ? std::string{std::strerror(errno)}
                                       : std::string{"cannot listen on 127.0.0.1"};
  throw metrics_port_error("metrics port " + (port < 0 ? std::string{"(any)"} : std::to_string(port))
                           + ": " + why);
}

} // namespace plexus::broker
