// SPDX-License-Identifier: Apache-2.0
#pragma once

// What every integration suite needs: a real plexus-broker process on
// 127.0.0.1 (endpoint read from its first stdout line), clients connected to
// it, waiting on conditions with deadlines, a barrier through the broker,
// and the broker's stats JSON from $SYS.broker.<id>.stats.

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "plexus/client.hpp"
#include "process.hpp"

namespace plexus::itest {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

inline constexpr milliseconds default_wait = 10s;

inline const std::string broker_bin = PLEXUS_BROKER_BIN;
inline const std::string cli_bin = PLEXUS_CLI_BIN;

/// Polls `pred` until it holds or `timeout` passes; for conditions nobody
/// can notify about (a file's size, another process's memory). A `period`
/// longer than 1 ms suits a predicate that reads a whole file.
template <class Pred>
[[nodiscard]] bool poll_until(Pred&& pred, milliseconds timeout = default_wait,
                              milliseconds period = 1ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(period); // polling period, not synchronisation
  }
}

/// The complete lines a file holds so far (a torn last line is left out):
/// what a child process has written to it.
inline std::vector<std::string> complete_lines(const std::string& path) {
  std::ifstream f{path};
  std::stringstream ss;
  ss << f.rdbuf();
  auto text = ss.str();
  std::vector<std::string> lines;
  std::size_t at = 0;
  for (auto nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', at)) {
    lines.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return lines;
}

/// Shared state guarded by a mutex, with a condition variable for waiting
/// on it: handlers change it through update(), tests wait_until().
template <class T>
class guarded {
public:
  template <class F>
  void update(F&& f) {
    {
      std::lock_guard lock{m_};
      f(value_);
    }
    cv_.notify_all();
  }
  template <class F>
  auto read(F&& f) const {
    std::lock_guard lock{m_};
    return f(value_);
  }
  T snapshot() const {
    std::lock_guard lock{m_};
    return value_;
  }
  template <class Pred>
  [[nodiscard]] bool wait_until(Pred&& pred, milliseconds timeout = default_wait) const {
    std::unique_lock lock{m_};
    return cv_.wait_for(lock, timeout, [&] { return pred(value_); });
  }

private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  T value_{};
};

/// One received message, copied out of the handler's views.
struct received {
  std::string topic, payload, msg_id;
  std::uint64_t seq = 0;
  std::uint32_t delivery = 0;
  std::map<std::string, std::string, std::less<>> headers;
};

inline received copy_of(const message_view& v) {
  received r{std::string{v.topic}, std::string{v.payload}, std::string{v.msg_id}, v.seq,
             v.delivery, {}};
  for (auto [k, val] : v.headers.items()) r.headers.emplace(k, val);
  return r;
}

/// Collects what one subscription receives. Declare it before the client
/// whose handler feeds it: the client (and its I/O thread) must go first.
class collector {
public:
  client::message_handler handler() {
    return [this](const message_view& v) { log_.update([&](auto& l) { l.push_back(copy_of(v)); }); };
  }
  [[nodiscard]] bool wait_count(std::size_t n, milliseconds timeout = default_wait) const {
    return log_.wait_until([n](const auto& l) { return l.size() >= n; }, timeout);
  }
  std::vector<received> messages() const { return log_.snapshot(); }
  std::vector<std::string> payloads() const {
    return log_.read([](const auto& l) {
      std::vector<std::string> p;
      for (auto& m : l) p.push_back(m.payload);
      return p;
    });
  }
  std::size_t size() const { return log_.read([](const auto& l) { return l.size(); }); }

private:
  guarded<std::vector<received>> log_;
};

/// A real plexus-broker on 127.0.0.1 with a port of its own; killed and
/// reaped when the fixture goes.
class broker_process {
public:
  /// `listen`: where (a free loopback port by default; a restarted broker
  /// takes its predecessor's endpoint()).
  explicit broker_process(std::vector<std::string> extra = {},
                          std::string listen = "tcp://127.0.0.1:*") {
    spawn_options o;
    o.args = {broker_bin, "--listen", std::move(listen), "--log-level", "warn"};
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    o.out = redirect::pipe;
    proc_ = std::make_unique<child_process>(o);
    auto line = proc_->read_line(default_wait);
    if (!line) {
      auto code = proc_->wait(100ms);
      BOOST_FAIL("plexus-broker printed no 'listening on' line within 10 s"
                 << (code ? "; it exited with " + std::to_string(*code)
                              + (*code == 127 ? " (exec failed: binary missing or being relinked?)" : "")
                          : std::string{}));
    }
    const std::string prefix = "listening on ";
    BOOST_REQUIRE_MESSAGE(line->rfind(prefix, 0) == 0, "unexpected first line: " << *line);
    endpoint_ = line->substr(prefix.size());
  }

  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }
  [[nodiscard]] child_process& process() noexcept { return *proc_; }

  [[nodiscard]] std::unique_ptr<client> connect(std::string node_id = {}) const {
    client_options o;
    o.endpoint = endpoint_;
    o.node_id = std::move(node_id);
    o.connect_timeout = 5s;
    return std::make_unique<client>(o);
  }

private:
  std::unique_ptr<child_process> proc_;
  std::string endpoint_;
};

/// Returns once the broker has handled everything `c` sent before the call
/// (subscriptions included): a request nobody serves comes back as
/// no_responders only after the broker read it, and a connection is FIFO.
/// The topic starts with '$' so no `>` or `*.…` subscription matches it.
inline void sync_with_broker(client& c) {
  auto r = c.request("$itest.barrier", "", default_wait);
  BOOST_REQUIRE_MESSAGE(r.code == 100, "barrier request: expected no responders (100), got "
                                         << r.code << " " << status_text(r.code));
}

/// A number from the broker's stats JSON: `"name":<digits>`.
inline std::optional<std::uint64_t> json_number(std::string_view json, std::string_view name) {
  std::string key = "\"" + std::string{name} + "\":";
  auto at = json.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  auto digits = json.substr(at + key.size());
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc{}) return std::nullopt;
  return v;
}

/// The latest stats JSON a broker published on $SYS.broker.<id>.stats,
/// through a client of its own (declared after the state its handler uses,
/// so it stops first).
class stats_watch {
public:
  stats_watch(const broker_process& b, const std::string& broker_id) : client_(b.connect()) {
    client_->subscribe("$SYS.broker." + broker_id + ".stats", [this](const message_view& v) {
      last_.update([&](std::string& s) { s.assign(v.payload); });
    });
    sync_with_broker(*client_);
  }
  /// Waits for a stats message whose counter `name` satisfies `pred`.
  template <class Pred>
  [[nodiscard]] bool wait_for(std::string_view name, Pred&& pred, milliseconds timeout = default_wait) {
    return last_.wait_until([&](const std::string& s) {
      auto v = json_number(s, name);
      return v && pred(*v);
    }, timeout);
  }
  [[nodiscard]] std::string json() const { return last_.snapshot(); }
  [[nodiscard]] std::uint64_t counter(std::string_view name) const {
    return json_number(json(), name).value_or(0);
  }

private:
  guarded<std::string> last_;
  std::unique_ptr<client> client_;
};

/// A file in the test's scratch directory, removed afterwards.
class temp_file {
public:
  explicit temp_file(const std::string& stem) {
    auto dir = std::filesystem::temp_directory_path();
    path_ = (dir / (stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++))).string();
  }
  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

private:
  static std::atomic<int>& counter() {
    static std::atomic<int> n{0};
    return n;
  }
  std::string path_;
};

/// A fresh directory (mkdtemp) in the temporary directory, removed with
/// everything in it afterwards.
class temp_dir {
public:
  explicit temp_dir(const std::string& stem = "plexus-itest") {
    auto tmpl = (std::filesystem::temp_directory_path() / (stem + ".XXXXXX")).string();
    BOOST_TEST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
  std::filesystem::path path_;
};

/// How a program run to its end went.
struct outcome {
  int code = -1;
  std::string out, err;
};

/// Runs a program to completion (within 10 s) and collects what it printed.
inline outcome run(std::vector<std::string> args) {
  spawn_options o;
  o.args = std::move(args);
  o.out = redirect::pipe;
  o.err = redirect::pipe;
  child_process p{o};
  outcome r;
  auto code = p.wait(default_wait);
  BOOST_REQUIRE_MESSAGE(code, o.args[0] << " did not exit within 10 s");
  r.code = *code;
  r.err = p.read_stderr(std::chrono::seconds{1});
  while (auto line = p.read_line(std::chrono::milliseconds{0})) r.out += *line + "\n";
  return r;
}

#ifdef PLEXUS_SHIPPING_BIN // the integration tests' (the fault suite includes this file too)
/// A node program (the shipping sample) with `args` to its end, its
/// standard output dropped: exit code and stderr (read while it runs, so a
/// chatty node never blocks on a full pipe).
inline outcome run_node(std::vector<std::string> args) {
  spawn_options o;
  o.args = {PLEXUS_SHIPPING_BIN};
  o.args.insert(o.args.end(), args.begin(), args.end());
  o.out = redirect::null;
  o.err = redirect::pipe;
  child_process p{o};
  outcome r;
  r.err = p.read_stderr(default_wait); // until it exits and its stderr closes
  auto code = p.wait(default_wait);
  BOOST_REQUIRE_MESSAGE(code, "shipping did not exit within 10 s; stderr: " << r.err);
  r.code = *code;
  return r;
}
#endif

} // namespace plexus::itest
