// SPDX-License-Identifier: Apache-2.0
// `plexus`: publish, subscribe and request from the command line.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <cstdlib>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "plexus/client.hpp"
#include "plexus/creds.hpp"
#include "plexus/node.hpp"
#include "plexus/trace.hpp"
#include "queues.hpp"
#include "render.hpp"

namespace {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using plexus::cli::printable;

std::atomic<bool> interrupted{false};
extern "C" void on_signal(int) { interrupted = true; }

/// "250ms", "2s", "1m" or a plain number of milliseconds.
ms parse_duration(const std::string& text) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  std::string_view unit{p, static_cast<std::size_t>(text.data() + text.size() - p)};
  if (ec != std::errc{} || text.empty()) throw CLI::ValidationError("bad duration '" + text + "'");
  if (unit.empty() || unit == "ms") return ms{n};
  if (unit == "s") return ms{n * 1000};
  if (unit == "m") return ms{n * 60'000};
  throw CLI::ValidationError("bad duration '" + text + "' (use ms, s or m)");
}

struct common {
  std::string broker;
  std::string connect_timeout = "3s";
  std::string creds_path;
  std::optional<plexus::credentials> creds; // read from creds_path before any command

  plexus::client connect() const {
    plexus::client_options o;
    o.endpoint = broker;
    o.connect_timeout = parse_duration(connect_timeout);
    if (creds) {
      o.curve_public_key = creds->public_key;
      o.curve_secret_key = creds->secret_key;
      o.curve_server_key = creds->broker_key;
    }
    return plexus::client{o};
  }
};

// ------------------------------------------------------------------ keys

/// A file that is there and --force was not given: one line, exit 1.
struct file_exists : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void refuse_existing(const std::vector<std::string>& paths, bool force) {
  if (force) return;
  for (auto& p : paths)
    if (std::filesystem::exists(p))
      throw file_exists(p + " exists; not overwriting it (--force does)");
}

// Writes `text` to `path` with `mode` (an existing file, with --force,
// gets that mode too: a secret must not stay readable by others).
void write_file(const std::string& path, const std::string& text, mode_t mode, bool force) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
  if (fd < 0) {
    if (errno == EEXIST) throw file_exists(path + " exists; not overwriting it (--force does)");
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  }
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t done = 0;
  while (ok && done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ::close(fd) == 0 && ok;
  if (!ok) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

// plexus keys broker NAME: NAME.key (secret, 0600) and NAME.pub.
int run_keys_broker(const std::string& name, bool force) {
  auto key = name + ".key", pub = name + ".pub";
  refuse_existing({key, pub}, force);
  auto pair = plexus::make_curve_key_pair();
  write_file(key, pair.secret_key + "\n", 0600, force);
  write_file(pub, pair.public_key + "\n", 0644, force);
  std::cout << pair.public_key << "\n";
  std::cerr << "plexus: wrote " << key << " (secret: give it to the broker's auth file as "
            << "secret_key_file) and " << pub << " (for `plexus keys user --broker-key`)\n";
  return 0;
}

// plexus keys user NAME --broker-key BROKER.pub: NAME.creds (0600).
int run_keys_user(const std::string& name, const std::string& broker_key, bool force) {
  auto user = std::filesystem::path{name}.filename().string();
  if (plexus::validate_topic(user) != plexus::topic_errc::ok || user.find('.') != std::string::npos
      || user.starts_with('$'))
    throw std::invalid_argument("user name '" + user + "': one topic token (no dots, spaces or "
                                "wildcards), not starting with '$'");
  std::string server = plexus::is_z85_key(broker_key) && !std::filesystem::exists(broker_key)
                         ? broker_key
                         : plexus::read_key_file(broker_key);
  auto path = name + ".creds";
  refuse_existing({path}, force);
  auto pair = plexus::make_curve_key_pair();
  write_file(path, plexus::format_credentials({user, pair.public_key, pair.secret_key, server}), 0600,
             force);
  std::cout << pair.public_key << "\n";
  std::cerr << "plexus: wrote " << path << " (secret: --creds " << path << "); the broker's auth "
            << "file lists the key above as user '" << user << "'\n";
  return 0;
}

// What the broker refused of a plain publish comes back as ERR, with its
// reason; a plain publish has no answer otherwise. So after the messages
// a confirmed publish goes to this client's own inbox (nobody else can
// subscribe it, and no acked consumer holds its CONFIRM back): the broker
// answers a connection in order, so when that CONFIRM is in, every ERR
// for the messages before it is too. Confirming every message instead
// would wait for at-least-once consumers to ACK them: not what a plain
// publish asks for.
bool broker_heard_all(plexus::client& cl, ms timeout) {
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  cl.publish_confirmed("_INBOX." + cl.node_id() + ".cli-barrier", "",
                       [done](std::uint32_t) { done->set_value(); });
  return f.wait_for(timeout) == std::future_status::ready;
}

std::string too_large(std::size_t bytes, std::uint64_t limit) {
  return "payload is " + std::to_string(bytes) + " bytes; the broker's max_payload is "
         + std::to_string(limit);
}

int run_pub(const common& c, const std::string& topic, std::string data, bool data_given,
            std::uint64_t count, bool confirm) {
  if (!data_given) data.assign(std::istreambuf_iterator<char>(std::cin), {});
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t refused = 0;
  std::string first_refusal;
  auto cl = c.connect();
  cl.on_error([&](std::uint32_t code, std::string_view text) {
    if (code >= plexus::status_timeout) return; // the client's own news, not a broker's ERR
    std::lock_guard lock{m};
    if (refused++ == 0)
      first_refusal = std::string{plexus::status_text(code)} + (text.empty() ? "" : ": ")
                      + std::string{text};
  });
  auto refusals = [&] {
    std::lock_guard lock{m};
    if (refused == 0) return false;
    std::cerr << "plexus: the broker refused " << (refused == 1 ? "the message" : std::to_string(refused) + " messages")
              << " on " << topic << ": " << first_refusal << "\n";
    return true;
  };
  if (!confirm) {
    try {
      for (std::uint64_t i = 0; i < count; ++i) cl.publish(topic, data);
    } catch (const plexus::publish_error& e) { // too large: the broker would drop it
      std::cerr << "plexus: " << e.what() << "\n";
      return 1;
    }
    if (!cl.flush(10s)) {
      std::cerr << "plexus: could not hand every message to the broker within 10 s\n";
      return 1;
    }
    if (!broker_heard_all(cl, 10s)) {
      std::cerr << "plexus: the broker did not say within 10 s that it read the messages\n";
      return 1;
    }
    return refusals() ? 1 : 0;
  }
  std::uint64_t done = 0, failed = 0;
  for (std::uint64_t i = 0; i < count; ++i)
    cl.publish_confirmed(topic, data, [&](std::uint32_t code) {
      std::lock_guard lock{m};
      ++done;
      if (code == plexus::code_of(plexus::status::no_interest)) {
        std::cerr << "plexus: warning: " << plexus::status_text(code) << "\n";
      } else if (code == static_cast<std::uint32_t>(plexus::wire::errc::payload_too_large)) {
        if (failed++ == 0) std::cerr << "plexus: " << too_large(data.size(), cl.max_payload()) << "\n";
      } else if (code == plexus::code_of(plexus::status::forbidden)) {
        if (failed++ == 0)
          std::cerr << "plexus: not confirmed: " << plexus::status_text(code)
                    << ": clients may not publish on " << topic << "\n";
      } else if (code != 0) {
        ++failed;
        std::cerr << "plexus: not confirmed: " << plexus::status_text(code) << "\n";
      }
      cv.notify_all();
    });
  std::unique_lock lock{m};
  if (!cv.wait_for(lock, 30s, [&] { return done == count; })) {
    std::cerr << "plexus: " << (count - done) << " of " << count
              << " messages unconfirmed after 30 s\n";
    return 1;
  }
  return failed ? 1 : 0;
}

int run_sub(const common& c, const std::string& pattern, const std::string& queue,
            std::uint64_t count, bool acked, bool raw, bool headers) {
  std::mutex m;
  std::condition_variable cv;
  std::uint64_t seen = 0;
  auto cl = c.connect(); // after what its handler touches: its I/O thread is joined first
  plexus::subscribe_options o;
  o.queue = queue;
  o.acked = acked;
  o.credit = queue.empty() ? 0 : 256;
  cl.subscribe(pattern, [&](const plexus::message_view& v) {
    {
      std::lock_guard lock{m};
      if (count && seen >= count) return; // past --count: the broker redelivers
      ++seen;
      if (raw) std::cout << printable(v.payload) << "\n";
      else std::cout << v.topic << (v.delivery > 1 ? " (delivery " + std::to_string(v.delivery) + ")" : "")
                     << ": " << printable(v.payload) << "\n";
      if (headers) std::cout << plexus::cli::header_lines(v.headers);
      std::cout.flush();
    }
    if (acked) cl.ack(v.sid, v.seq);
    if (!queue.empty()) cl.grant_credit(v.sid, 1);
    cv.notify_all();
  }, o);
  std::unique_lock lock{m};
  while (!interrupted && (count == 0 || seen < count)) cv.wait_for(lock, 100ms);
  return 0;
}

int run_req(const common& c, const std::string& topic, const std::string& data, ms timeout) {
  auto cl = c.connect();
  auto r = cl.request(topic, data, timeout);
  if (r.code == 0) {
    std::cout << printable(r.payload) << "\n";
    return 0;
  }
  if (r.code == plexus::code_of(plexus::status::no_responders)) std::cerr << "plexus: no responders for " << topic << "\n";
  else if (r.code == plexus::status_timeout)
    std::cerr << "plexus: no reply to " << topic << " within " << timeout.count() << " ms\n";
  else std::cerr << "plexus: request failed: " << plexus::status_text(r.code) << ": " << r.text << "\n";
  return 1;
}

// Without an id: failed spans as they happen (all with --all). With one:
// that trace as a tree, from what every node still keeps of it (asked on
// $SYS.trace-query) and what arrives within --wait.
// Writes the spans as Zipkin v2 JSON to a file ('-': standard output)
// and/or POSTs them to a collector; false (said on stderr) when either fails.
bool export_zipkin(const std::vector<plexus::span>& spans, const std::string& file,
                   const std::string& url) {
  if (file.empty() && url.empty()) return true;
  auto json = plexus::zipkin_json(spans);
  bool ok = true;
  if (file == "-") {
    std::cout << json;
    std::cout.flush();
  } else if (!file.empty()) {
    std::ofstream out{file, std::ios::binary | std::ios::trunc};
    out << json;
    out.close();
    if (!out) {
      std::cerr << "plexus: cannot write " << file << "\n";
      ok = false;
    } else {
      std::cerr << "plexus: wrote " << spans.size() << " spans to " << file << "\n";
    }
  }
  if (!url.empty()) {
    if (auto failed = plexus::post_zipkin(url, json)) {
      std::cerr << "plexus: " << *failed << "\n";
      ok = false;
    } else {
      std::cerr << "plexus: posted " << spans.size() << " spans to " << url << "\n";
    }
  }
  return ok;
}

struct zipkin_export {
  std::string file, url; // --zipkin FILE ('-' = stdout), --zipkin-url URL
  [[nodiscard]] bool on_stdout() const { return file == "-"; }
};

int run_trace(const common& c, const std::string& id, bool all, ms wait, std::uint64_t count,
              const zipkin_export& zipkin) {
  std::mutex m;
  std::condition_variable cv;
  std::vector<plexus::span> kept, shown_spans; // a trace's; those shown live (for --zipkin)
  std::uint64_t shown = 0, bad = 0;
  auto cl = c.connect(); // after what its handlers touch: its I/O thread is joined first
  cl.subscribe("$SYS.trace.>", [&](const plexus::message_view& v) {
    std::vector<plexus::span> batch;
    try {
      batch = plexus::decode_spans(v.payload);
    } catch (const std::exception&) {
      std::lock_guard lock{m};
      ++bad; // not spans: counted, skipped
      return;
    }
    std::lock_guard lock{m};
    for (auto& s : batch) {
      if (!id.empty()) {
        if (s.trace_id == id) kept.push_back(std::move(s));
      } else if ((all || s.status != plexus::span_status::ok) && (count == 0 || shown < count)) {
        if (!zipkin.on_stdout()) std::cout << plexus::describe(s) << "\n";
        ++shown;
        if (!zipkin.file.empty() || !zipkin.url.empty()) shown_spans.push_back(std::move(s));
      }
    }
    std::cout.flush();
    cv.notify_all();
  });
  if (!id.empty()) { // nodes answer on our own topic, each with what it keeps (the SUB
                     // goes before the PUB on this connection: it is in when they answer)
    auto inbox = "_INBOX." + cl.node_id() + ".trace";
    cl.subscribe(inbox, [&](const plexus::message_view& v) {
      std::lock_guard lock{m};
      try {
        for (auto& s : plexus::decode_spans(v.payload)) kept.push_back(std::move(s));
      } catch (const std::exception&) {
        ++bad;
      }
    });
    plexus::publish_options o;
    o.reply_to = inbox;
    cl.publish("$SYS.trace-query", id, o);
  }
  std::unique_lock lock{m};
  bool exported = true;
  if (id.empty()) {
    while (!interrupted && (count == 0 || shown < count)) cv.wait_for(lock, 100ms);
    auto spans = std::move(shown_spans);
    shown_spans.clear();
    lock.unlock(); // a POST takes a while: the subscription is not held up
    exported = export_zipkin(spans, zipkin.file, zipkin.url);
    lock.lock();
  } else {
    auto until = std::chrono::steady_clock::now() + wait;
    while (!interrupted && std::chrono::steady_clock::now() < until) cv.wait_until(lock, until);
    if (kept.empty()) {
      std::cerr << "plexus: no span of trace " << id << " within " << wait.count() << " ms\n";
      return 1;
    }
    // A span both kept by a node and seen live counts once.
    std::sort(kept.begin(), kept.end(), [](auto& a, auto& b) { return a.span_id < b.span_id; });
    kept.erase(std::unique(kept.begin(), kept.end(),
                           [](auto& a, auto& b) { return a.span_id == b.span_id; }),
               kept.end());
    exported = export_zipkin(kept, zipkin.file, zipkin.url);
    if (!zipkin.on_stdout()) std::cout << plexus::render_trace(std::move(kept));
  }
  if (bad) std::cerr << "plexus: " << bad << " payloads on $SYS.trace.> were not spans\n";
  return exported ? 0 : 1;
}

// `plexus top`: every node's function stats ($SYS.node.<id>.stats, each
// second) as one table, cluster-wide: rates from the last two snapshots.
struct node_sample {
  std::vector<plexus::function_stats> now, before;
  std::chrono::steady_clock::time_point at{}, before_at{};
};

std::uint64_t handled(const plexus::function_stats& f) {
  return f.ok + f.errors + f.rejected + f.crashes;
}

std::string top_table(const std::map<std::string, node_sample>& nodes) {
  struct row {
    double rate = 0;
    std::uint64_t p50 = 0, p99 = 0, ok = 0, errors = 0, crashes = 0, rejected = 0, dlq = 0,
                  restarts = 0, instances = 0, nodes = 0, in_flight = 0, queue = 0, credit = 0;
  };
  std::map<std::string, row> rows;
  for (auto& [id, n] : nodes) {
    double dt = std::chrono::duration<double>(n.at - n.before_at).count();
    for (auto& f : n.now) {
      auto& r = rows[f.service + "." + f.function];
      for (auto& b : n.before)
        if (dt > 0 && b.service == f.service && b.function == f.function)
          r.rate += static_cast<double>(handled(f) - std::min(handled(f), handled(b))) / dt;
      r.p50 = std::max(r.p50, f.duration_p50_ns);
      r.p99 = std::max(r.p99, f.duration_p99_ns);
      r.ok += f.ok;
      r.errors += f.errors;
      r.crashes += f.crashes;
      r.rejected += f.rejected;
      r.dlq += f.quarantined;
      r.restarts += f.restarts;
      r.instances += f.instances;
      r.in_flight += f.in_flight;
      r.queue += f.queue_depth;
      r.credit += f.credit;
      ++r.nodes;
    }
  }
  auto millis = [](std::uint64_t ns) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", static_cast<double>(ns) / 1e6);
    return std::string{b};
  };
  std::string out;
  char line[320];
  std::snprintf(line, sizeof line, "%-36s %5s %9s %9s %9s %9s %7s %7s %7s %7s %8s %4s %8s %7s %7s\n",
                "FUNCTION", "NODES", "RATE/s", "P50 ms", "P99 ms", "OK", "ERROR", "CRASH",
                "REJECT", "DLQ", "RESTARTS", "INST", "INFLIGHT", "QUEUE", "CREDIT");
  out += line;
  for (auto& [name, r] : rows) {
    std::snprintf(line, sizeof line,
                  "%-36s %5llu %9.0f %9s %9s %9llu %7llu %7llu %7llu %7llu %8llu %4llu %8llu %7llu %7llu\n",
                  name.c_str(), static_cast<unsigned long long>(r.nodes), r.rate, millis(r.p50).c_str(),
                  millis(r.p99).c_str(), static_cast<unsigned long long>(r.ok),
                  static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.crashes),
                  static_cast<unsigned long long>(r.rejected), static_cast<unsigned long long>(r.dlq),
                  static_cast<unsigned long long>(r.restarts), static_cast<unsigned long long>(r.instances),
                  static_cast<unsigned long long>(r.in_flight), static_cast<unsigned long long>(r.queue),
                  static_cast<unsigned long long>(r.credit));
    out += line;
  }
  return out;
}

int run_top(const common& c, bool once, ms interval) {
  std::mutex m;
  std::map<std::string, node_sample> nodes;
  std::uint64_t bad = 0;
  auto cl = c.connect(); // after what its handler touches: its I/O thread is joined first
  cl.subscribe("$SYS.node.*.stats", [&](const plexus::message_view& v) {
    auto id = std::string{v.topic.substr(10, v.topic.size() - 10 - 6)}; // $SYS.node.<id>.stats
    std::vector<plexus::function_stats> stats;
    std::lock_guard lock{m};
    if (plexus::decode_payload(v.payload, stats)) {
      ++bad; // not stats: counted, skipped
      return;
    }
    auto& n = nodes[id];
    n.before = std::move(n.now);
    n.before_at = n.at;
    n.now = std::move(stats);
    n.at = std::chrono::steady_clock::now();
  });
  // Two snapshots per node give a rate: the first table after two seconds.
  auto next = std::chrono::steady_clock::now() + std::max(interval, ms{2000});
  while (!interrupted) {
    std::this_thread::sleep_until(next); // the refresh period, not a wait for anything
    next += interval;
    std::lock_guard lock{m};
    if (nodes.empty()) {
      if (once) {
        std::cerr << "plexus: no node published its stats ($SYS.node.*.stats)\n";
        return 1;
      }
      continue;
    }
    if (!once) std::cout << "\033[H\033[2J"; // a live table: clear, redraw
    std::cout << top_table(nodes);
    if (bad) std::cout << bad << " stats payloads could not be read\n";
    std::cout.flush();
    if (once) return 0;
  }
  return 0;
}

// The dependency graph from the spans the nodes keep and those published
// within --window: DOT (or Mermaid) on stdout, or a PNG through Graphviz.
int run_graph(const common& c, ms window, const std::string& format, const std::string& png) {
  std::mutex m;
  plexus::dependency_graph graph;
  std::uint64_t bad = 0;
  auto cl = c.connect(); // after what its handlers touch: its I/O thread is joined first
  auto feed = [&](const plexus::message_view& v) {
    std::lock_guard lock{m};
    try {
      graph.add(plexus::decode_spans(v.payload));
    } catch (const std::exception&) {
      ++bad;
    }
  };
  cl.subscribe("$SYS.trace.>", feed);
  auto inbox = "_INBOX." + cl.node_id() + ".graph";
  cl.subscribe(inbox, feed);
  plexus::publish_options o;
  o.reply_to = inbox;
  cl.publish("$SYS.trace-query", "*", o);
  auto until = std::chrono::steady_clock::now() + window;
  while (!interrupted && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  std::lock_guard lock{m};
  if (bad) std::cerr << "plexus: " << bad << " payloads were not spans\n";
  if (graph.edges().empty()) {
    std::cerr << "plexus: no calls between functions seen within " << window.count()
              << " ms (successful spans are sampled: --trace-sample on the nodes)\n";
    return 1;
  }
  if (!png.empty()) {
    auto cmd = "dot -Tpng -o '" + png + "'";
    auto* pipe = ::popen(cmd.c_str(), "w");
    if (!pipe) throw std::runtime_error("cannot run Graphviz's dot (apt-get install graphviz)");
    auto text = graph.dot();
    std::fwrite(text.data(), 1, text.size(), pipe);
    if (::pclose(pipe) != 0) throw std::runtime_error("dot failed to write " + png);
    std::cerr << "plexus: wrote " << png << "\n";
    return 0;
  }
  std::cout << (format == "mermaid" ? graph.mermaid() : graph.dot());
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"plexus: talk to a plexus broker from the shell"};
  app.require_subcommand(1);
  // The options above the subcommands work after them too ("plexus sub X
  // --broker EP"): every subcommand added below inherits this.
  app.fallthrough();
  common c;
  const char* env = std::getenv("PLEXUS_BROKER");
  c.broker = env && *env ? env : "tcp://127.0.0.1:7400";
  app.add_option("--broker", c.broker,
                 "broker endpoint: tcp://HOST:PORT, ipc://PATH or inproc://NAME (or $PLEXUS_BROKER); "
                 "also accepted after the subcommand, as is --connect-timeout")
    ->type_name("ENDPOINT")
    ->capture_default_str();
  const char* creds_env = std::getenv("PLEXUS_CREDS");
  c.creds_path = creds_env ? creds_env : "";
  app.add_option("--creds", c.creds_path,
                 "credentials file (plexus keys user) for a broker with --auth (or $PLEXUS_CREDS)")
    ->type_name("FILE");
  app.add_option("--connect-timeout", c.connect_timeout,
                 "give up when the broker has not answered within this (e.g. 500ms, 3s)")
    ->type_name("DURATION")
    ->capture_default_str();

  auto* pub = app.add_subcommand("pub", "publish a message (DATA, or standard input)");
  std::string pub_topic, pub_data;
  std::uint64_t pub_count = 1;
  bool confirm = false;
  pub->add_option("TOPIC", pub_topic, "topic to publish on")->required();
  auto* data_opt = pub->add_option("DATA", pub_data, "payload; read from standard input when absent");
  pub->add_option("--count", pub_count, "publish it this many times")->capture_default_str();
  pub->add_flag("--confirm", confirm, "wait for the broker's confirms; exit 1 if any fails");

  auto* sub = app.add_subcommand("sub", "print messages on a pattern until Ctrl-C or --count");
  std::string sub_pattern, queue;
  std::uint64_t sub_count = 0;
  bool acked = false, raw = false, headers = false;
  sub->add_option("PATTERN", sub_pattern, "pattern: '*' matches one token, '>' the rest")->required();
  sub->add_option("--queue", queue, "join this queue group (each message to one member)");
  sub->add_option("--count", sub_count, "exit after this many messages (0 = never)");
  sub->add_flag("--ack", acked, "at-least-once: acknowledge each message after printing it");
  sub->add_flag("--raw", raw, "print payloads only");
  auto* headers_flag = sub->add_flag("--headers,!--no-headers", headers,
                                     "print each message's headers under it (on by default for "
                                     "$DLQ patterns: the dead-letter reason is there)");

  auto* req = app.add_subcommand("req", "send a request and print the reply");
  std::string req_topic, req_data, req_timeout = "2s";
  req->add_option("TOPIC", req_topic, "topic of the service")->required();
  req->add_option("DATA", req_data, "request payload")->required();
  req->add_option("--timeout", req_timeout, "how long to wait for the reply")->type_name("DURATION")->capture_default_str();

  auto* trace = app.add_subcommand(
    "trace", "failed spans as they happen, with their cause; with ID, that trace as a tree");
  std::string trace_id, trace_wait = "2s";
  std::uint64_t trace_count = 0;
  bool trace_all = false;
  trace->add_option("ID", trace_id, "a trace id (32 hex): print its spans as a tree");
  trace->add_flag("--all", trace_all, "print successful spans too (as sampled by the nodes)");
  trace->add_option("--wait", trace_wait, "with ID: how long to collect its spans")->type_name("DURATION")
    ->capture_default_str();
  trace->add_option("--count", trace_count, "exit after this many spans (0 = never)");
  zipkin_export trace_zipkin;
  trace->add_option("--zipkin", trace_zipkin.file,
                    "on exit, write the spans shown (or the trace's) as Zipkin v2 JSON to this "
                    "file ('-': standard output, instead of the text)")
    ->type_name("FILE");
  trace->add_option("--zipkin-url", trace_zipkin.url,
                    "on exit, POST them as Zipkin v2 JSON to a collector, e.g. "
                    "http://localhost:9411/api/v2/spans (exit 1 when it does not take them)")
    ->type_name("URL");

  auto* graph = app.add_subcommand("graph", "the dependency graph between functions, from their spans");
  std::string graph_window = "2s", graph_format = "dot", graph_png;
  graph->add_option("--window", graph_window, "also collect the spans published for this long")->type_name("DURATION")
    ->capture_default_str();
  graph->add_option("--format", graph_format, "dot or mermaid")
    ->check(CLI::IsMember({"dot", "mermaid"}))
    ->capture_default_str();
  graph->add_option("--png", graph_png, "render it to this PNG file with Graphviz")->type_name("FILE");

  auto* top = app.add_subcommand("top", "a live table of every function in the cluster (1 s refresh)");
  bool top_once = false;
  std::string top_interval = "1s";
  top->add_flag("--once", top_once, "print one table (after two seconds: rates need two samples) and exit");
  top->add_option("--interval", top_interval, "refresh period")->type_name("DURATION")->capture_default_str();

  auto* keys = app.add_subcommand("keys", "make CurveZMQ keys: a broker's, or a user's credentials file");
  keys->require_subcommand(1);
  bool keys_force = false;
  keys->add_flag("--force", keys_force, "overwrite files that exist");
  auto* keys_broker = keys->add_subcommand(
    "broker", "write NAME.key (the secret key, mode 0600) and NAME.pub; print the public key");
  std::string keys_name, keys_broker_key;
  keys_broker->add_option("NAME", keys_name, "file name without extension")->required();
  auto* keys_user = keys->add_subcommand(
    "user", "write NAME.creds (mode 0600) for --creds; print the user's public key (for the "
            "broker's auth file)");
  keys_user->add_option("NAME", keys_name, "the user's name (and file name)")->required();
  keys_user->add_option("--broker-key", keys_broker_key, "the broker's NAME.pub (or the key itself)")
    ->type_name("FILE")
    ->required();

  plexus::cli::queue_commands queues; // plexus queue ls|info, plexus dlq ls|show|replay
  plexus::cli::add_queue_commands(app, queues);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "plexus: " << e.what() << " (see --help)\n";
    return 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (*keys) {
    try {
      if (*keys_broker) return run_keys_broker(keys_name, keys_force);
      return run_keys_user(keys_name, keys_broker_key, keys_force);
    } catch (const plexus::creds_error& e) {
      std::cerr << "plexus: --broker-key: " << e.what() << "\n";
      return 2;
    } catch (const std::invalid_argument& e) {
      std::cerr << "plexus: " << e.what() << "\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "plexus: " << e.what() << "\n";
      return 1;
    }
  }
  if (!c.creds_path.empty()) {
    try {
      c.creds = plexus::read_credentials(c.creds_path);
    } catch (const plexus::creds_error& e) {
      std::cerr << "plexus: --creds: " << e.what() << "\n";
      return 2;
    }
  }
  try {
    parse_duration(c.connect_timeout);
    if (*pub) return run_pub(c, pub_topic, pub_data, data_opt->count() > 0, pub_count, confirm);
    if (*sub) {
      if (headers_flag->count() == 0) headers = sub_pattern.starts_with("$DLQ") && !raw;
      return run_sub(c, sub_pattern, queue, sub_count, acked, raw, headers);
    }
    if (*req) return run_req(c, req_topic, req_data, parse_duration(req_timeout));
    if (*trace)
      return run_trace(c, trace_id, trace_all, parse_duration(trace_wait), trace_count, trace_zipkin);
    if (*graph) return run_graph(c, parse_duration(graph_window), graph_format, graph_png);
    if (*top) return run_top(c, top_once, parse_duration(top_interval));
    if (auto rc = plexus::cli::run_queue_commands(queues, [&] { return c.connect(); }, parse_duration, &interrupted))
      return *rc;
  } catch (const CLI::ValidationError& e) {
    std::cerr << "plexus: " << e.what() << "\n";
    return 2;
  } catch (const plexus::publish_error& e) { // valid input the broker would not take
    std::cerr << "plexus: " << e.what() << "\n";
    return 1;
  } catch (const std::invalid_argument& e) { // a bad endpoint, topic or pattern
    std::cerr << "plexus: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "plexus: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
