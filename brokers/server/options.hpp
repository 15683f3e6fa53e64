// SPDX-License-Identifier: Apache-2.0
#pragma once

// `plexus-broker` configuration: a TOML file (--config) and flags, flags
// winning. Every setting is declared once in options.cpp, which gives the
// flag, the TOML key, the help text, the default and the range check.

#include <stdexcept>
#include <string>

#include "server.hpp"

namespace plexus::broker {

/// Bad flags or a bad config file: the message is one line a user can act on.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct command_line {
  server_options server;
  std::string log_level = "info";
  std::string auth_path, creds_path; // --auth, --creds (for --check)
  bool exit_now = false; // --help or --version was answered
  std::string output;    // what to print when exit_now
};

/// Throws config_error.
[[nodiscard]] command_line parse_command_line(int argc, const char* const* argv);

} // namespace plexus::broker
