// SPDX-License-Identifier: Apache-2.0
#pragma once

// The actors from a TOML file, so operators add a timer, a watched
// directory or a webhook without a rebuild:
//
//   plexus::node node{argc, argv, {{"actors", "actors TOML file", &actors_file, "FILE"}}};
//   auto& svc = node.service("edge");
//   auto cfg = plexus::actors::add_from_config(svc, actors_file); // throws config_error
//   node.start();
//   for (auto& g : cfg.gateways) g->start(node.client());
//   node.wait();
//   for (auto& g : cfg.gateways) g->stop();
//   node.stop();
//
// One array of tables per kind; keys are the options' fields, durations in
// whole milliseconds with a `_ms` suffix (as plexus-broker's config):
//
//   [[timer]]          name, schedule, topic, zone, missed ("skip" or
//                      "catch_up"), max_catch_up, grace_ms, state_dir
//   [[files]]          name, dir, topic, pattern, max_content, max_in_flight
//   [[postgres]]       name, conninfo, channels (array), topic
//   [[file_sink]]      name, on, path, format ("line", "length_prefixed",
//                      "json_line"), sync ("every_message", "interval"),
//                      sync_interval_ms, max_deliver
//   [[webhook]]        name, on, url, timeout_ms, max_deliver,
//                      backoff_initial_ms, backoff_max_ms, content_type,
//                      headers (a table), concurrency
//   [[http]]           listen, port, events, rpc, json, max_body,
//                      max_concurrent, max_connections, threads, default_timeout_ms,
//                      max_timeout_ms, keep_alive_timeout_ms, drain_timeout_ms,
//                      and [[http.route]] tables: method, path, topic,
//                      request, timeout_ms
//
// Every problem is reported, not just the first: an unknown kind or key (a
// typo never passes silently), a value of the wrong type, a number out of
// range, each with its line (`actors.toml: line 7: [[timer]] "daily":
// schedule: a string`); then each actor's own checks, in the same words
// as in code (`timer "daily": schedule: ...`).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/actors/http.hpp"
#include "plexus/node.hpp"

namespace plexus::actors {

struct configured {
  /// The [[http]] gateways, built and checked, not started: start() each
  /// with the node's client() after node.start(), stop() before node.stop().
  std::vector<std::unique_ptr<gateway>> gateways;
  /// The functions added to the service (timers, file drops, listeners, sinks).
  std::vector<std::string> functions;
};

/// Adds what the TOML file at `path` describes to `svc`. Throws
/// plexus::config_error naming the file and every problem; then nothing
/// has been added (the actors' checks run on a scratch service first),
/// unless a name clashes with a function `svc` had already.
configured add_from_config(service& svc, const std::string& path);

/// The same from TOML text; `source` names it in errors.
configured add_from_toml(service& svc, std::string_view text, std::string_view source = "config");

} // namespace plexus::actors
