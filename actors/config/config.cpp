// SPDX-License-Identifier: Apache-2.0
// The actors from a TOML file (plexus/actors/config.hpp): each table read
// into its options struct, every problem collected with its line; only a
// file without TOML problems reaches the actors' own checks (add_*).
#include "plexus/actors/config.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

#include <toml++/toml.h>

#include "plexus/actors/files.hpp"
#include "plexus/actors/postgres.hpp"
#include "plexus/actors/sinks.hpp"
#include "plexus/actors/timer.hpp"

namespace plexus::actors {

namespace {

using std::chrono::milliseconds;

std::string line_of(const toml::node& n) {
  const auto& at = n.source().begin;
  return at.line == 0 ? std::string{} : "line " + std::to_string(at.line) + ": ";
}

/// One table of the file: its keys read once each, the rest reported.
class table_reader {
public:
  table_reader(const toml::table& t, std::string where, std::vector<std::string>& problems)
    : t_(t), where_(std::move(where)), problems_(problems) {}

  /// Reports the keys nobody read; call last.
  void done() {
    for (const auto& [k, v] : t_)
      if (!read_.contains(std::string{k.str()}))
        problem(v, std::string{k.str()}, "unknown key (known: " + known_ + ")");
  }

  void text(std::string_view key, std::string& out) {
    if (const auto* n = node(key)) {
      if (auto v = n->value<std::string>()) out = *v;
      else problem(*n, key, "a string");
    }
  }
  void flag(std::string_view key, bool& out) {
    if (const auto* n = node(key)) {
      if (auto v = n->value<bool>()) out = *v;
      else problem(*n, key, "true or false");
    }
  }
  template <class T>
  void whole(std::string_view key, T& out, std::int64_t lo = 0,
             std::int64_t hi = std::numeric_limits<std::int64_t>::max()) {
    if (const auto* n = node(key)) {
      auto v = n->value_exact<std::int64_t>();
      const auto max = static_cast<std::int64_t>(std::min<std::uint64_t>(
        static_cast<std::uint64_t>(hi), static_cast<std::uint64_t>(std::numeric_limits<T>::max())));
      if (!v || *v < lo || *v > max)
        problem(*n, key, "a whole number in " + std::to_string(lo) + ".." + std::to_string(max));
      else out = static_cast<T>(*v);
    }
  }
  void ms(std::string_view key, milliseconds& out, std::int64_t lo = 0) {
    auto v = out.count();
    whole(key, v, lo, 86'400'000LL * 365);
    out = milliseconds{v};
  }
  template <class E>
  void choice(std::string_view key, E& out, std::initializer_list<std::pair<const char*, E>> names) {
    std::string s;
    const auto* n = node(key);
    if (!n) return;
    if (auto v = n->value<std::string>()) s = *v;
    std::string known;
    for (const auto& [name, value] : names) {
      if (s == name) {
        out = value;
        return;
      }
      known += (known.empty() ? "\"" : ", \"") + std::string{name} + "\"";
    }
    problem(*n, key, "one of " + known);
  }
  void strings(std::string_view key, std::vector<std::string>& out) {
    const auto* n = node(key);
    if (!n) return;
    const auto* a = n->as_array();
    if (a == nullptr) return problem(*n, key, "an array of strings");
    out.clear();
    for (const auto& e : *a) {
      if (auto v = e.value<std::string>()) out.push_back(*v);
      else return problem(e, key, "an array of strings");
    }
  }
  void string_table(std::string_view key, std::vector<std::pair<std::string, std::string>>& out) {
    const auto* n = node(key);
    if (!n) return;
    const auto* t = n->as_table();
    if (t == nullptr) return problem(*n, key, "a table of strings");
    out.clear();
    for (const auto& [k, v] : *t) {
      if (auto s = v.value<std::string>()) out.emplace_back(std::string{k.str()}, *s);
      else return problem(v, key, std::string{k.str()} + ": a string");
    }
  }
  /// An array of tables under `key` (absent: none).
  const toml::array* tables(std::string_view key) {
    const auto* n = node(key);
    if (!n) return nullptr;
    const auto* a = n->as_array();
    if (a == nullptr || !a->is_array_of_tables()) {
      problem(*n, key, "an array of tables ([[...]])");
      return nullptr;
    }
    return a;
  }
  [[nodiscard]] const std::string& where() const noexcept { return where_; }

private:
  const toml::node* node(std::string_view key) {
    read_.insert(std::string{key});
    known_ += (known_.empty() ? "" : ", ") + std::string{key};
    return t_.get(key);
  }
  void problem(const toml::node& n, std::string_view key, const std::string& want) {
    problems_.push_back(line_of(n) + where_ + ": " + std::string{key} + ": " + want);
  }

  const toml::table& t_;
  std::string where_;
  std::vector<std::string>& problems_;
  std::set<std::string> read_;
  std::string known_;
};

std::string label(std::string_view kind, const toml::table& t, std::size_t i) {
  auto name = t["name"].value<std::string>();
  return "[[" + std::string{kind} + "]] " + (name ? "\"" + *name + "\"" : "#" + std::to_string(i + 1));
}

// What the file asks for, read and typed; added only when all of it is.
struct plan {
  std::vector<timer_options> timers;
  std::vector<file_drop_options> drops;
  std::vector<postgres_options> listeners;
  std::vector<file_sink_options> file_sinks;
  std::vector<webhook_options> webhooks;
  std::vector<http_options> gateways;
};

void read_timer(table_reader& r, timer_options& o) {
  r.text("name", o.name);
  r.text("schedule", o.schedule);
  r.text("topic", o.topic);
  r.text("zone", o.zone);
  r.choice("missed", o.missed.action, {{"skip", on_missed::skip}, {"catch_up", on_missed::catch_up}});
  r.whole("max_catch_up", o.missed.max_catch_up, 0, 100'000);
  r.ms("grace_ms", o.missed.grace);
  r.text("state_dir", o.state_dir);
}

void read_files(table_reader& r, file_drop_options& o) {
  r.text("name", o.name);
  r.text("dir", o.dir);
  r.text("topic", o.topic);
  r.text("pattern", o.pattern);
  r.whole("max_content", o.max_content);
  r.whole("max_in_flight", o.max_in_flight, 1);
}

void read_postgres(table_reader& r, postgres_options& o) {
  r.text("name", o.name);
  r.text("conninfo", o.conninfo);
  r.strings("channels", o.channels);
  r.text("topic", o.topic);
}

void read_file_sink(table_reader& r, file_sink_options& o) {
  r.text("name", o.name);
  r.text("on", o.on);
  r.text("path", o.path);
  r.choice("format", o.format,
           {{"line", record_format::line},
            {"length_prefixed", record_format::length_prefixed},
            {"json_line", record_format::json_line}});
  r.choice("sync", o.sync, {{"every_message", sync_policy::every_message}, {"interval", sync_policy::interval}});
  r.ms("sync_interval_ms", o.sync_interval);
  r.whole("max_deliver", o.max_deliver, 1);
}

void read_webhook(table_reader& r, webhook_options& o) {
  r.text("name", o.name);
  r.text("on", o.on);
  r.text("url", o.url);
  r.ms("timeout_ms", o.timeout, 1);
  r.whole("max_deliver", o.max_deliver, 1);
  r.ms("backoff_initial_ms", o.backoff_initial);
  r.ms("backoff_max_ms", o.backoff_max);
  r.text("content_type", o.content_type);
  r.string_table("headers", o.headers);
  r.whole("concurrency", o.concurrency, 1);
}

void read_http(table_reader& r, http_options& o, std::vector<std::string>& problems) {
  r.text("listen", o.listen);
  r.whole("port", o.port, 0, 65535);
  r.flag("events", o.events);
  r.flag("rpc", o.rpc);
  r.flag("json", o.json);
  r.whole("max_body", o.max_body, 1);
  r.whole("max_concurrent", o.max_concurrent, 1);
  r.whole("max_connections", o.max_connections, 1);
  r.whole("threads", o.threads, 1, 64);
  r.ms("default_timeout_ms", o.default_timeout, 1);
  r.ms("max_timeout_ms", o.max_timeout, 1);
  r.ms("keep_alive_timeout_ms", o.keep_alive_timeout, 1);
  r.ms("drain_timeout_ms", o.drain_timeout);
  if (const auto* routes = r.tables("route")) {
    for (std::size_t i = 0; i < routes->size(); ++i) {
      const auto& t = *(*routes)[i].as_table();
      table_reader rr{t, r.where() + " route #" + std::to_string(i + 1), problems};
      http_route route;
      rr.text("method", route.method);
      rr.text("path", route.path);
      rr.text("topic", route.topic);
      rr.flag("request", route.request);
      rr.ms("timeout_ms", route.timeout);
      rr.done();
      o.routes.push_back(std::move(route));
    }
  }
}

template <class Options, class Read>
void read_all(table_reader& top, std::string_view kind, std::vector<Options>& out,
              std::vector<std::string>& problems, Read read) {
  const auto* a = top.tables(kind);
  if (a == nullptr) return;
  for (std::size_t i = 0; i < a->size(); ++i) {
    const auto& t = *(*a)[i].as_table();
    table_reader r{t, label(kind, t, i), problems};
    Options o;
    read(r, o);
    r.done();
    out.push_back(std::move(o));
  }
}

plan read_plan(const toml::table& root, std::vector<std::string>& problems) {
  plan p;
  table_reader top{root, "top level", problems};
  read_all(top, "timer", p.timers, problems, read_timer);
  read_all(top, "files", p.drops, problems, read_files);
  read_all(top, "postgres", p.listeners, problems, read_postgres);
  read_all(top, "file_sink", p.file_sinks, problems, read_file_sink);
  read_all(top, "webhook", p.webhooks, problems, read_webhook);
  read_all(top, "http", p.gateways, problems,
           [&problems](table_reader& r, http_options& o) { read_http(r, o, problems); });
  top.done();
  return p;
}

[[noreturn]] void refuse(std::string_view source, const std::vector<std::string>& problems) {
  std::string text = std::string{source} + ": ";
  for (std::size_t i = 0; i < problems.size(); ++i) text += (i ? "; " : "") + problems[i];
  throw config_error(text);
}

// Adds every actor of `p` to `svc` and collects what each refused.
std::vector<std::string> add_all(service& svc, const plan& p, std::vector<std::string>* added) {
  std::vector<std::string> problems;
  auto add = [&](auto&& f, const auto& options, auto&& name_of) {
    for (const auto& o : options) {
      try {
        f(svc, o);
        if (added) added->push_back(name_of(o));
      } catch (const std::invalid_argument& e) {
        problems.emplace_back(e.what());
      }
    }
  };
  add(add_timer, p.timers, [](const timer_options& o) { return function_name(o.name); });
  add(add_file_drop, p.drops, [](const file_drop_options& o) { return file_drop_function_name(o.name); });
  add(add_postgres_listener, p.listeners,
      [](const postgres_options& o) { return postgres_function_name(o.name); });
  add(add_file_sink, p.file_sinks, [](const file_sink_options& o) { return file_sink_function_name(o.name); });
  add(add_webhook_sink, p.webhooks, [](const webhook_options& o) { return webhook_function_name(o.name); });
  return problems;
}

configured apply(service& svc, plan p, std::string_view source) {
  configured out;
  std::vector<std::string> problems;
  for (auto& o : p.gateways) { // they only check: nothing joins the service
    try {
      out.gateways.push_back(std::make_unique<gateway>(std::move(o)));
    } catch (const std::invalid_argument& e) {
      problems.emplace_back(e.what());
    }
  }
  // The actors' own checks, first on a service of the same name that
  // nothing runs, so a refusal leaves `svc` as it was.
  service scratch{svc.name(), {}};
  for (auto& why : add_all(scratch, p, nullptr)) problems.push_back(std::move(why));
  if (!problems.empty()) refuse(source, problems);
  problems = add_all(svc, p, &out.functions); // only a clash with svc's own functions is left
  if (!problems.empty()) refuse(source, problems);
  return out;
}

configured from_table(service& svc, const toml::table& root, std::string_view source) {
  std::vector<std::string> problems;
  auto p = read_plan(root, problems);
  if (!problems.empty()) refuse(source, problems);
  return apply(svc, std::move(p), source);
}

[[noreturn]] void refuse_parse(std::string_view source, const toml::parse_error& e) {
  const auto line = e.source().begin.line;
  throw config_error(std::string{source} + ": " + (line ? "line " + std::to_string(line) + ": " : std::string{}) +
                     std::string{e.description()});
}

} // namespace

configured add_from_toml(service& svc, std::string_view text, std::string_view source) {
  try {
    return from_table(svc, toml::parse(text, std::string{source}), source);
  } catch (const toml::parse_error& e) {
    refuse_parse(source, e);
  }
}

configured add_from_config(service& svc, const std::string& path) {
  try {
    return from_table(svc, toml::parse_file(path), path);
  } catch (const toml::parse_error& e) {
    refuse_parse(path, e);
  }
}

} // namespace plexus::actors
