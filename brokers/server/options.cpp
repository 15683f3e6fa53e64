// SPDX-License-Identifier: Apache-2.0
#include "options.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include "auth_file.hpp"
#include "plexus/creds.hpp"
#include "plexus/version.hpp"
#include "plexus/wire.hpp"

namespace plexus::broker {

namespace {

// One setting: its flag (--name), TOML key (name with '_'), help, and how to
// apply a value given as text. Integers are range-checked.
struct setting {
  std::string name; // flag spelling, e.g. "heartbeat-ms"
  std::string help;
  std::function<std::string(const command_line&)> current;
  std::function<void(command_line&, const std::string&)> apply;
  bool list = false;
  std::function<void(command_line&)> clear{}; // lists: flags replace the file's list
  bool toml_only = false; // a key of --config, no flag
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (auto& a : v) s += (s.empty() ? "" : ",") + a;
  return s;
}

// Whether a listen endpoint takes connections from other machines: any
// tcp:// address but a loopback one (ipc:// and inproc:// never do).
bool reachable_from_outside(std::string_view listen) {
  if (!listen.starts_with("tcp://")) return false;
  auto host = listen.substr(6);
  host = host.substr(0, host.rfind(':')); // npos (no port): all of it
  return !(host.starts_with("127.") || host == "localhost" || host == "[::1]" || host == "::1");
}

void check_endpoint(const std::string& flag, const std::string& v) {
  if (v.find("://") == std::string::npos)
    throw config_error(flag + ": expected an endpoint like tcp://127.0.0.1:7400, got '" + v + "'");
}

// The cluster secret: at least 16 bytes, trailing white space (a file's
// newline) not part of it.
constexpr std::size_t min_secret_bytes = 16;

std::string checked_secret(std::string secret, const std::string& from) {
  while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
  if (secret.size() < min_secret_bytes)
    throw config_error(from + ": the cluster secret must be at least "
                       + std::to_string(min_secret_bytes) + " bytes, got "
                       + std::to_string(secret.size()));
  return secret;
}

std::string read_secret_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) throw config_error("--cluster-secret-file: cannot read '" + path + "'");
  std::string s{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  return checked_secret(std::move(s), "--cluster-secret-file " + path);
}

// --auth FILE: the broker's secret key (secret_key_file, relative to the
// auth file's folder), the users it admits with their permissions, and the
// peers' keys.
void apply_auth_file(command_line& c, const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) throw config_error("--auth: cannot read '" + path + "'");
  std::string text{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  std::string error;
  auto file = parse_auth_file(text, path, error);
  if (!file) throw config_error(error);
  std::filesystem::path key_path{file->secret_key_file};
  if (key_path.is_relative()) key_path = std::filesystem::path{path}.parent_path() / key_path;
  std::ifstream key_in{key_path, std::ios::binary};
  if (!key_in)
    throw config_error(path + ": secret_key_file: cannot read '" + key_path.string() + "'");
  std::string key{std::istreambuf_iterator<char>{key_in}, std::istreambuf_iterator<char>{}};
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  if (!is_z85_key(key))
    throw config_error(key_path.string() + ": not a CURVE secret key (40 characters of Z85; "
                       "`plexus keys broker NAME` writes NAME.key)");
  c.auth_path = path;
  c.server.curve_secret_key = key;
  c.server.admitted = {};
  for (auto& u : file->users) (void)c.server.admitted.admit(u.public_key, u.name);
  for (auto& k : file->peer_keys) (void)c.server.admitted.admit(k, std::string{peer_user_id});
  c.server.core.auth = std::move(file->policy);
}

std::string toml_key(std::string flag) {
  for (auto& ch : flag)
    if (ch == '-') ch = '_';
  return flag;
}

std::uint64_t parse_uint(const std::string& name, const std::string& text, std::uint64_t lo,
                         std::uint64_t hi) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size())
    throw config_error(name + ": expected a whole number, got '" + text + "'");
  if (v < lo || v > hi)
    throw config_error(name + ": must be between " + std::to_string(lo) + " and "
                       + std::to_string(hi) + ", got " + text);
  return v;
}

template <class T>
setting number(std::string name, std::string help, std::uint64_t lo, std::uint64_t hi, std::function<T&(command_line&)> field) {
  setting s;
  s.name = name;
  s.help = std::move(help);
  s.current = [field](const command_line& c) {
    return std::to_string(field(const_cast<command_line&>(c)));
  };
  s.apply = [name, lo, hi, field](command_line& c, const std::string& text) {
    field(c) = static_cast<T>(parse_uint("--" + name, text, lo, hi));
  };
  return s;
}

template <class Rep, class Period>
setting millis(std::string name, std::string help, std::uint64_t lo, std::uint64_t hi,
               std::function<std::chrono::duration<Rep, Period>&(command_line&)> field) {
  setting s;
  s.name = name;
  s.help = std::move(help);
  s.current = [field](const command_line& c) {
    return std::to_string(field(const_cast<command_line&>(c)).count());
  };
  s.apply = [name, lo, hi, field](command_line& c, const std::string& text) {
    field(c) = std::chrono::duration<Rep, Period>{parse_uint("--" + name, text, lo, hi)};
  };
  return s;
}

constexpr std::uint64_t big = std::uint64_t{1} << 40;

std::string store_sync_text(const server_options& o) {
  switch (o.store_sync_policy) {
    case store_sync::always: return "always";
    case store_sync::batch: return "batch";
    case store_sync::interval: return "interval:" + std::to_string(o.store_sync_interval.count());
  }
  return "batch";
}

void apply_store_sync(server_options& o, const std::string& v) {
  if (v == "always") {
    o.store_sync_policy = store_sync::always;
  } else if (v == "batch") {
    o.store_sync_policy = store_sync::batch;
  } else if (v.starts_with("interval:")) {
    auto ms = parse_uint("--store-sync interval:N", v.substr(9), 1, 3'600'000);
    o.store_sync_policy = store_sync::interval;
    o.store_sync_interval = std::chrono::milliseconds{ms};
  } else {
    throw config_error("--store-sync: expected always, batch or interval:N (N milliseconds, 1 or "
                       "more), got '" + v + "'");
  }
}

std::vector<setting> settings() {
  using cl = command_line;
  std::vector<setting> all;
  all.push_back({"listen", "ZeroMQ endpoint to listen on; tcp://127.0.0.1:* picks a free port",
                 [](const cl& c) { return c.server.listen; },
                 [](cl& c, const std::string& v) {
                   check_endpoint("--listen", v);
                   c.server.listen = v;
                 }});
  all.push_back({"id", "broker id: in WELCOME and in $SYS.broker.<id>.stats",
                 [](const cl& c) { return c.server.core.id; },
                 [](cl& c, const std::string& v) {
                   if (validate_topic(v) != topic_errc::ok || v.find('.') != std::string::npos)
                     throw config_error("--id: must be one topic token (no dots, spaces or wildcards), got '" + v + "'");
                   c.server.core.id = v;
                 }});
  all.push_back({"advertise", "this broker's endpoints for clients to fail over to (repeatable); "
                 "WELCOME lists them with the peers' [default: the listen endpoint]",
                 [](const cl& c) { return joined(c.server.core.advertise); },
                 [](cl& c, const std::string& v) {
                   check_endpoint("--advertise", v);
                   c.server.core.advertise.push_back(v);
                 },
                 true, [](cl& c) { c.server.core.advertise.clear(); }});
  all.push_back({"peer", "a seed broker of the cluster to link with (repeatable; the same list "
                 "on every broker is fine: a broker skips itself)",
                 [](const cl& c) { return joined(c.server.peers); },
                 [](cl& c, const std::string& v) {
                   check_endpoint("--peer", v);
                   c.server.peers.push_back(v);
                 },
                 true, [](cl& c) { c.server.peers.clear(); }});
  all.push_back({"cluster-secret-file", "file holding the cluster secret (at least 16 bytes; "
                 "every broker of the cluster the same): only brokers that prove it become peers. "
                 "Also from the environment as PLEXUS_CLUSTER_SECRET. Without one no peer is admitted",
                 [](const cl& c) { return c.server.core.cluster_secret.empty() ? "none" : "set"; },
                 [](cl& c, const std::string& v) { c.server.core.cluster_secret = read_secret_file(v); }});
  all.push_back({"auth", "TOML file of the users this broker admits (CurveZMQ keys, with what each may "
                 "publish and subscribe) and its secret key: without it the broker admits "
                 "everyone, in plaintext",
                 [](const cl& c) { return c.auth_path.empty() ? "none" : c.auth_path; },
                 [](cl& c, const std::string& v) { apply_auth_file(c, v); }});
  all.push_back({"creds", "credentials file (plexus keys user) for this broker's links to its "
                 "peers, as a CURVE client; its public key must be in their auth file's [[peers]]. "
                 "Default with --auth: the broker's own key pair",
                 [](const cl& c) { return c.creds_path.empty() ? "none" : c.creds_path; },
                 [](cl& c, const std::string& v) {
                   try {
                     auto cr = read_credentials(v);
                     c.server.link_public_key = cr.public_key;
                     c.server.link_secret_key = cr.secret_key;
                     c.server.link_server_key = cr.broker_key;
                     c.creds_path = v;
                   } catch (const creds_error& e) {
                     throw config_error(std::string{"--creds: "} + e.what());
                   }
                 }});
  all.push_back({"store", "directory of the durable queues' store (created if missing; one broker "
                 "at a time): the messages of [[durable]] queues are kept there until acked and "
                 "recovered at start. The TOML key store_segment_bytes sizes its files",
                 [](const cl& c) { return c.server.store.empty() ? "none" : c.server.store; },
                 [](cl& c, const std::string& v) {
                   if (v.empty()) throw config_error("--store: expected a directory, got ''");
                   c.server.store = v;
                 }});
  all.push_back({"store-sync", "when a durable queue's messages are fdatasynced (and their publishers "
                 "confirmed): always (after each message), batch (once per loop pass: a group "
                 "commit) or interval:N (every N ms at most)",
                 [](const cl& c) { return store_sync_text(c.server); },
                 [](cl& c, const std::string& v) { apply_store_sync(c.server, v); }});
  setting segment{"store-segment-bytes", "store segment file size, bytes (a file rolls past it)",
                  [](const cl& c) { return std::to_string(c.server.store_segment_bytes); },
                  [](cl& c, const std::string& v) {
                    c.server.store_segment_bytes = parse_uint("store_segment_bytes", v, 64u << 10,
                                                              std::uint64_t{1} << 32);
                  }};
  segment.toml_only = true;
  all.push_back(std::move(segment));
  all.push_back({"log-level", "trace, debug, info, warn, error or off",
                 [](const cl& c) { return c.log_level; },
                 [](cl& c, const std::string& v) {
                   static const std::vector<std::string> ok{"trace", "debug", "info", "warn", "error", "off"};
                   if (std::find(ok.begin(), ok.end(), v) == ok.end())
                     throw config_error("--log-level: expected trace, debug, info, warn, error or off, got '" + v + "'");
                   c.log_level = v;
                 }});
  all.push_back({"slow-consumer", "what to do with a subscriber whose queue is full: drop or disconnect",
                 [](const cl& c) {
                   return c.server.core.slow_consumer == slow_consumer_policy::drop ? "drop" : "disconnect";
                 },
                 [](cl& c, const std::string& v) {
                   if (v == "drop") c.server.core.slow_consumer = slow_consumer_policy::drop;
                   else if (v == "disconnect") c.server.core.slow_consumer = slow_consumer_policy::disconnect;
                   else throw config_error("--slow-consumer: expected drop or disconnect, got '" + v + "'");
                 }});
  all.push_back(number<int>("metrics-port", "serve Prometheus metrics on http://127.0.0.1:PORT/metrics; 0 = off", 0, 65535,
    [](cl& c) -> int& { return c.server.metrics_port; }));
  all.push_back(millis<std::int64_t, std::milli>("heartbeat-ms", "heartbeat interval", 10, 3'600'000,
    [](cl& c) -> milliseconds& { return c.server.core.heartbeat; }));
  all.push_back(number<std::uint32_t>("liveness", "missed heartbeats before a peer is dead", 1, 100,
    [](cl& c) -> std::uint32_t& { return c.server.core.liveness; }));
  all.push_back(millis<std::int64_t, std::milli>("holder-probe-ms",
    "ping a connection holding unacked messages this often, so a dead consumer's work is redelivered within about that long; 0 = heartbeats only",
    0, 3'600'000, [](cl& c) -> milliseconds& { return c.server.core.holder_probe; }));
  all.push_back(number<std::size_t>("max-payload", "largest payload accepted, bytes", 1, 64u << 20,
    [](cl& c) -> std::size_t& { return c.server.core.limits.max_payload_bytes; }));
  all.push_back(number<std::size_t>("max-subscriptions", "subscriptions per connection", 1, 1u << 20,
    [](cl& c) -> std::size_t& { return c.server.core.max_subscriptions; }));
  all.push_back(number<std::size_t>("max-pending-msgs", "queued messages per connection", 1, big,
    [](cl& c) -> std::size_t& { return c.server.core.max_pending_msgs; }));
  all.push_back(number<std::size_t>("max-pending-bytes", "queued bytes per connection", 1024, big,
    [](cl& c) -> std::size_t& { return c.server.core.max_pending_bytes; }));
  all.push_back(number<std::size_t>("group-queue-msgs", "messages a queue group holds while no member has credit", 0, big,
    [](cl& c) -> std::size_t& { return c.server.core.group_queue_msgs; }));
  all.push_back(number<std::size_t>("group-queue-bytes", "bytes a queue group holds while no member has credit", 0, big,
    [](cl& c) -> std::size_t& { return c.server.core.group_queue_bytes; }));
  all.push_back(number<std::uint32_t>("pause-percent", "flow control: pause a group's publishers (those that do flow control) once its queue holds this % of group-queue-msgs or -bytes; 0 = off", 0, 100,
    [](cl& c) -> std::uint32_t& { return c.server.core.pause_percent; }));
  all.push_back(number<std::uint32_t>("resume-percent", "flow control: resume them once the queue is down to this %", 0, 100,
    [](cl& c) -> std::uint32_t& { return c.server.core.resume_percent; }));
  all.push_back(millis<std::int64_t, std::milli>("ack-wait-ms", "default time before an unacked message is redelivered", 1, 86'400'000,
    [](cl& c) -> milliseconds& { return c.server.core.ack_wait; }));
  all.push_back(number<std::uint32_t>("max-deliver", "default deliveries before a message is dead-lettered", 1, 1'000'000,
    [](cl& c) -> std::uint32_t& { return c.server.core.max_deliver; }));
  all.push_back(millis<std::int64_t, std::milli>("dedup-window-ms", "how long a msg id is remembered for dedup", 0, 86'400'000,
    [](cl& c) -> milliseconds& { return c.server.core.dedup_window; }));
  all.push_back(number<std::size_t>("dedup-entries", "msg ids remembered at most", 0, 1u << 26,
    [](cl& c) -> std::size_t& { return c.server.core.dedup_entries; }));
  all.push_back(number<std::size_t>("dedup-bytes", "bytes the dedup window holds at most: ids, publishers and ~128 B of bookkeeping each, never payloads", 0, big,
    [](cl& c) -> std::size_t& { return c.server.core.dedup_bytes; }));
  all.push_back(number<std::size_t>("max-connections", "client connections at once; a HELLO past it is refused (ERR 103)", 1, big,
    [](cl& c) -> std::size_t& { return c.server.core.max_connections; }));
  all.push_back(number<std::size_t>("max-connections-per-user", "with --auth, connections one user may hold at once; 0 = only max-connections", 0, big,
    [](cl& c) -> std::size_t& { return c.server.core.max_connections_per_user; }));
  all.push_back(millis<std::int64_t, std::milli>("handshake-timeout-ms", "time a new connection has to finish its ZeroMQ/CURVE handshake", 100, 600'000,
    [](cl& c) -> milliseconds& { return c.server.handshake_timeout; }));
  all.push_back(number<std::size_t>("max-handshakes", "connections still in their ZeroMQ/CURVE handshake at once; one past it is closed when accepted (0 = no cap)", 0, big,
    [](cl& c) -> std::size_t& { return c.server.max_handshakes; }));
  all.push_back(number<std::size_t>("error-budget", "bad frames before a connection is dropped", 0, big,
    [](cl& c) -> std::size_t& { return c.server.core.error_budget; }));
  all.push_back(millis<std::int64_t, std::milli>("stats-interval-ms", "period of $SYS.broker.<id>.stats", 100, 3'600'000,
    [](cl& c) -> milliseconds& { return c.server.core.stats_interval; }));
  all.push_back(number<int>("sndhwm", "ZeroMQ send high-water mark per peer, frames (batch frames carry up to max-pending-bytes / sndhwm)", 1, 10'000'000,
    [](cl& c) -> int& { return c.server.sndhwm; }));
  all.push_back(number<int>("rcvhwm", "ZeroMQ receive high-water mark per peer, frames (clients send frames of at most 32 KiB)", 1, 10'000'000,
    [](cl& c) -> int& { return c.server.rcvhwm; }));
  return all;
}

// [[durable]] tables: one queue each. Unknown keys and values of the wrong
// kind are refused, naming the table; the core checks names and subjects.
std::vector<durable_config> read_durables(const std::string& path, const toml::node& node) {
  auto* arr = node.as_array();
  if (!arr || !arr->is_array_of_tables())
    throw config_error(path + ": durable must be an array of tables ([[durable]])");
  std::vector<durable_config> out;
  std::size_t i = 0;
  for (auto&& el : *arr) {
    const auto& t = *el.as_table();
    auto where = path + ": durable[" + std::to_string(i++) + "]";
    auto* name = t.get("name");
    auto n = name ? name->value<std::string>() : std::nullopt;
    where += n && !n->empty() ? " '" + *n + "': " : ": ";
    for (auto&& [k, v] : t) {
      static constexpr std::string_view known[] = {"name", "subjects", "max_msgs", "max_bytes",
                                                   "max_age_ms", "home"};
      if (std::find(std::begin(known), std::end(known), k.str()) == std::end(known))
        throw config_error(where + "unknown key '" + std::string{k.str()}
                           + "' (name, subjects, max_msgs, max_bytes, max_age_ms, home)");
    }
    durable_config d;
    if (!name) throw config_error(where + "no 'name'");
    if (!n || n->empty()) throw config_error(where + "name must be a non-empty string");
    d.name = *n;
    auto* subjects = t.get("subjects");
    if (!subjects) throw config_error(where + "no 'subjects'");
    auto* list = subjects->as_array();
    if (!list) throw config_error(where + "subjects must be an array of strings");
    for (auto&& s : *list) {
      auto v = s.value<std::string>();
      if (!v) throw config_error(where + "subjects must be an array of strings");
      d.subjects.push_back(std::move(*v));
    }
    if (d.subjects.empty()) throw config_error(where + "subjects must not be empty");
    auto whole = [&](std::string_view key, std::int64_t lo) -> std::optional<std::uint64_t> {
      auto* v = t.get(key);
      if (!v) return std::nullopt;
      auto x = v->value_exact<std::int64_t>();
      if (!x) throw config_error(where + std::string{key} + " must be a whole number");
      if (*x < lo)
        throw config_error(where + std::string{key} + " must be " + std::to_string(lo)
                           + " or more, got " + std::to_string(*x));
      return static_cast<std::uint64_t>(*x);
    };
    if (auto v = whole("max_msgs", 1)) d.max_msgs = *v;
    if (auto v = whole("max_bytes", 1)) d.max_bytes = *v;
    if (auto v = whole("max_age_ms", 0)) d.max_age = milliseconds{static_cast<std::int64_t>(*v)};
    if (auto* home = t.get("home")) {
      auto h = home->value<std::string>();
      if (!h) throw config_error(where + "home must be a string (a broker id)");
      d.home = *h;
    }
    out.push_back(std::move(d));
  }
  return out;
}

struct toml_file {
  std::map<std::string, std::vector<std::string>> values; // key -> values as text
  std::optional<std::vector<durable_config>> durables;    // [[durable]]
};

// Reads the TOML file into (key -> values as text) and its [[durable]]
// tables, rejecting unknown keys and values of the wrong kind.
toml_file read_toml(const std::string& path, const std::vector<setting>& known) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << path << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
       << e.description();
    throw config_error(os.str());
  }
  toml_file file;
  auto& out = file.values;
  for (auto&& [k, node] : tbl) {
    std::string key{k.str()};
    if (key == "durable") {
      file.durables = read_durables(path, node);
      continue;
    }
    auto it = std::find_if(known.begin(), known.end(),
                           [&](const setting& s) { return toml_key(s.name) == key; });
    if (it == known.end()) throw config_error(path + ": unknown key '" + key + "'");
    auto text = [&](const toml::node& n) -> std::string {
      if (auto s = n.value<std::string>()) return *s;
      if (auto i = n.value<std::int64_t>()) {
        if (*i < 0) throw config_error(path + ": " + key + " must not be negative");
        return std::to_string(*i);
      }
      throw config_error(path + ": " + key + " must be a string or a whole number");
    };
    if (auto* arr = node.as_array()) {
      if (!it->list) throw config_error(path + ": " + key + " takes one value, not a list");
      for (auto&& el : *arr) out[key].push_back(text(el));
    } else {
      out[key].push_back(text(node));
    }
  }
  return file;
}

std::string durable_text(const durable_config& d) {
  return d.name + " (subjects " + joined(d.subjects) + "; max_msgs " + std::to_string(d.max_msgs)
         + "; max_bytes " + std::to_string(d.max_bytes) + "; max_age_ms "
         + std::to_string(d.max_age.count()) + (d.home.empty() ? "" : "; home " + d.home) + ")";
}

} // namespace

command_line parse_command_line(int argc, const char* const* argv) {
  command_line result;
  result.server.core.id = "broker";
  auto all = settings();
  CLI::App app{"plexus-broker: the plexus message broker (topics, queue groups with credit, "
               "acks and redelivery, dead letters, request/reply).\n"
               "Settings come from --config FILE (TOML, keys as the flags with '_' for '-') "
               "and from flags, which win.\n"
               "Memory is bounded per message kept: per connection, max-pending-msgs and "
               "max-pending-bytes of messages plus as much again of control frames (confirms, "
               "errors, pongs); per queue group, group-queue-msgs and group-queue-bytes while no "
               "member has credit; the dedup window, dedup-entries and dedup-bytes of ids (never "
               "payloads). A message is stored once however many subscribers it has; an unacked "
               "delivery is kept until its ACK, at most ack-wait-ms before it is redelivered.\n"
               "Durable queues: [[durable]] tables in --config (name, subjects, max_msgs, max_bytes, "
               "max_age_ms, home) keep what matches their subjects on disk in --store DIR, "
               "whether or not a member is connected, until a member acks it (README: Keep "
               "messages on disk)."};
  app.set_help_flag("-h,--help", "print this help and exit");
  std::string config_path;
  app.add_option("--config", config_path, "TOML file with any of the settings below");
  std::map<std::string, std::vector<std::string>> given;
  for (auto& s : all) {
    if (s.toml_only) continue;
    auto* o = app.add_option("--" + s.name, given[s.name], s.help + " [default: " + s.current(result) + "]");
    if (!s.list) o->expected(1);
  }
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");
  bool insecure = false;
  app.add_flag("--insecure", insecure, "listen on an address other machines can reach without --auth: "
               "anyone who reaches it may publish anywhere and read every dead letter and trace "
               "(logged each minute). Loopback, ipc and inproc need no --auth");
  bool check = false;
  app.add_flag("--check", check, "read --config and the flags, print the settings in effect and exit: "
               "0 if they are valid, 2 (with the reason) if not");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    result.exit_now = true;
    result.output = app.help();
    return result;
  } catch (const CLI::ParseError& e) {
    throw config_error(e.what());
  }
  if (version) {
    result.exit_now = true;
    result.output = "plexus-broker " PLEXUS_VERSION " (wire protocol "
                    + std::to_string(plexus::wire::protocol_version) + ")\n";
    return result;
  }
  if (!config_path.empty()) {
    auto file = read_toml(config_path, all);
    for (auto& [key, values] : file.values) {
      auto& s = *std::find_if(all.begin(), all.end(),
                              [&](const setting& x) { return toml_key(x.name) == key; });
      for (auto& v : values) s.apply(result, v);
    }
    if (file.durables) result.server.core.durables = std::move(*file.durables);
  }
  for (auto& s : all) {
    auto& values = given[s.name];
    if (values.empty()) continue;
    if (s.clear) s.clear(result); // flags replace the file's list
    for (auto& v : values) s.apply(result, v);
  }
  auto& secret = result.server.core.cluster_secret;
  if (secret.empty())
    if (const char* env = std::getenv("PLEXUS_CLUSTER_SECRET"); env && *env)
      secret = checked_secret(env, "PLEXUS_CLUSTER_SECRET");
  if (!result.server.peers.empty() && secret.empty())
    throw config_error("--peer needs a cluster secret, the same on every broker of the cluster: "
                       "--cluster-secret-file FILE or PLEXUS_CLUSTER_SECRET (at least 16 bytes)");
  result.server.insecure = insecure;
  if (result.server.curve_secret_key.empty() && !insecure && reachable_from_outside(result.server.listen))
    throw config_error("--listen " + result.server.listen + " is reachable from other machines and there "
                       "is no --auth: anyone who reaches it could publish anywhere and read every dead "
                       "letter and trace. Give --auth FILE (README: Secure a broker), or --insecure to "
                       "run open anyway");
  if (!result.server.core.durables.empty()) {
    auto here = kept_here(result.server.core);
    if (here > 0 && result.server.store.empty())
      throw config_error("durable queues need --store DIR: " + config_path + " declares "
                         + std::to_string(here) + " [[durable]] kept by this broker");
    // The core's own checks (names, duplicates, subject patterns), now
    // rather than when the broker starts.
    try {
      core probe{result.server.core};
    } catch (const std::invalid_argument& e) {
      throw config_error(config_path + ": " + e.what());
    }
  }
  if (check) {
    result.exit_now = true;
    for (auto& s : all) result.output += toml_key(s.name) + " = " + s.current(result) + "\n";
    for (auto& d : result.server.core.durables) result.output += "durable = " + durable_text(d) + "\n";
  }
  return result;
}

} // namespace plexus::broker
