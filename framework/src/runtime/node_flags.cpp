// SPDX-License-Identifier: Apache-2.0
// The node's standard command-line flags, with the program's own beside
// them. Like any tool, --help prints and exits 0 and a bad flag exits 2
// with one line: a program reads its flags right after constructing the
// node, before anything has started.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "node_impl.hpp"

namespace plexus {

namespace {
// CLI::Range with its range in the option's help text instead of its type:
// --help shows "--metrics-port INT", not "INT:INT in [0 - 65535]".
template <class T>
CLI::Validator in_range(T min, T max) {
  return CLI::Range(min, max).description("");
}
} // namespace

node::node(int argc, const char* const* argv, std::vector<flag> extra)
  : impl_(std::make_unique<impl>()) {
  CLI::App app{"a plexus node: hosts services of functions"};
  app.set_help_flag("-h,--help", "print this help and exit");
  std::string broker;
  std::uint64_t duration = 0;
  app.add_option("--broker", broker,
                 "a plexus-broker to connect to (e.g. tcp://127.0.0.1:7400); without it the node "
                 "runs an embedded broker");
  app.add_option("--duration", duration, "seconds to run; 0 = until Ctrl-C")->capture_default_str();
  std::string on_failure = "restart";
  app.add_option("--on-failure", on_failure,
                 "a service past its restart intensity: 'restart' it after a growing backoff, or "
                 "'stop' the node (exit code 3)")
    ->check(CLI::IsMember({"restart", "stop"}))
    ->capture_default_str();
  double drain = 10;
  app.add_option("--drain-timeout", drain,
                 "seconds (0..3600) running handlers may take to finish on shutdown; then their "
                 "messages go back to the broker")
    ->check(in_range(0.0, 3600.0))
    ->capture_default_str();
  int metrics_port = 0;
  app.add_option("--metrics-port", metrics_port,
                 "serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0..65535); 0 = off")
    ->check(in_range(0, 65535))
    ->capture_default_str();
  double trace_sample = impl_->opts.trace_sample;
  app.add_option("--trace-sample", trace_sample,
                 "share (0..1) of traces whose successful spans are published on "
                 "$SYS.trace.<node>; failed spans always are")
    ->check(in_range(0.0, 1.0))
    ->capture_default_str();
  const char* creds_env = std::getenv("PLEXUS_CREDS");
  std::string creds = creds_env ? creds_env : "";
  app.add_option("--creds", creds,
                 "credentials file (plexus keys user) for a --broker with --auth; also "
                 "$PLEXUS_CREDS")
    ->type_name("FILE");
  std::string store;
  app.add_option("--store", store,
                 "without --broker: the embedded broker's store directory, where durable "
                 "functions' messages wait across restarts")
    ->type_name("DIR");
  for (auto& f : extra)
    if (f.value)
      app.add_option("--" + f.name, *f.value, f.help)->type_name(f.type)->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    // The node's flags are the program's: answer and leave, as any tool does.
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", argc > 0 ? argv[0] : "node", e.what());
    std::exit(2);
  }
  impl_->opts.broker = broker;
  impl_->opts.duration = std::chrono::seconds{duration};
  impl_->opts.on_failure = on_failure == "stop" ? node_options::failure_policy::stop_node
                                                : node_options::failure_policy::restart_service;
  impl_->opts.drain_timeout = std::chrono::milliseconds{static_cast<std::int64_t>(drain * 1000)};
  impl_->opts.trace_sample = trace_sample;
  impl_->opts.metrics_port = metrics_port;
  impl_->opts.creds = creds;
  impl_->opts.store = store;
  impl_->program = argc > 0 ? argv[0] : "node";
}

} // namespace plexus
