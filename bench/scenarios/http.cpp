// SPDX-License-Identifier: Apache-2.0
// Scenario `http`: the HTTP gateway (actors/http) as the front door.
// `POST /rpc/echo` with a 128 B body through the gateway, a request on the
// broker to a function that replies with the body, the reply as the
// response; wrk (Debian's package) drives it with 64 keep-alive
// connections on 2 threads. Two gateways, as plexus is deployed:
//   gateway      on a node whose broker is a plexus-broker over tcp on
//                127.0.0.1 (a cluster's broker; a tcp hop each way);
//   gateway-emb  on a node with its embedded broker (inproc; `make demo`'s
//                set-up, and a gateway node's own broker in a cluster).
// Beside them, in the same run and driven the same way: nginx (Debian's
// package) answering a static `return 200` (the ceiling of HTTP on this
// machine; its 2 workers, as `worker_processes auto` gives on 2 cores).
// Runs are taken in turn.
//
// Target (#20): the gateway with its broker round trip >= 50% of nginx's
// req/s, p99 <= 5 ms at 64 connections. Every run fails on any non-2xx
// response or socket error (wrk's counts): a fast error is no result.
//
// wrk: $PLEXUS_WRK, else wrk on the PATH or in /usr/bin. nginx:
// $PLEXUS_NGINX, else /usr/sbin/nginx or build/tools/usr/sbin/nginx (where
// `make bench` unpacks it without its service); without nginx the nginx
// rows are left out with a note.

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baselines/child_process.hpp"
#include "plexus/actors/http.hpp"
#include "plexus/node.hpp"
#include "scenario.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr std::size_t payload_bytes = 128;
constexpr int connections = 64;
constexpr int wrk_threads = 2;
constexpr auto full_duration = 10s;
constexpr auto quick_duration = 1s;
constexpr std::uint32_t echo_instances = 8;

fs::path found(const char* env, std::initializer_list<fs::path> candidates) {
  if (const char* e = std::getenv(env); e != nullptr && *e != '\0') return e;
  std::error_code ec;
  for (const auto& c : candidates)
    if (fs::exists(c, ec)) return c;
  return {};
}

fs::path wrk_path() {
  fs::path on_path;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::stringstream dirs{path};
    for (std::string d; std::getline(dirs, d, ':');) {
      std::error_code ec;
      if (!d.empty() && fs::exists(fs::path{d} / "wrk", ec)) {
        on_path = fs::path{d} / "wrk";
        break;
      }
    }
  }
  return found("PLEXUS_WRK", {on_path.empty() ? fs::path{"/usr/bin/wrk"} : on_path});
}

fs::path nginx_path() {
  return found("PLEXUS_NGINX", {"/usr/sbin/nginx", fs::path{PLEXUS_BENCH_TOOLS_DIR} / "usr/sbin/nginx"});
}

/// A loopback port free a moment ago (nginx and wrk take a number).
int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) throw std::runtime_error("http: no socket for a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(s);
    throw std::runtime_error("http: cannot bind a free loopback port");
  }
  ::close(s);
  return ntohs(a.sin_port);
}

struct wrk_result {
  double req_per_s = 0, p50_ms = 0, p99_ms = 0;
};

double to_ms(const std::string& value, const std::string& unit) {
  double v = std::stod(value);
  if (unit == "us") return v / 1000;
  if (unit == "ms") return v;
  if (unit == "s") return v * 1000;
  throw std::runtime_error("http: wrk printed a latency in '" + unit + "'");
}

/// wrk's report: Requests/sec, the 50% and 99% latencies (--latency), and
/// no errors, else throws quoting it.
wrk_result parse_wrk(const std::string& out, const std::string& what) {
  auto fail = [&](const std::string& why) {
    throw std::runtime_error("http " + what + ": " + why + "; wrk said:\n" + out);
  };
  wrk_result r;
  std::smatch m;
  if (!std::regex_search(out, m, std::regex{R"(Requests/sec:\s+([0-9.]+))"})) fail("no Requests/sec");
  r.req_per_s = std::stod(m[1]);
  if (!std::regex_search(out, m, std::regex{R"(\n\s+50%\s+([0-9.]+)(us|ms|s)\b)"})) fail("no 50% latency");
  r.p50_ms = to_ms(m[1], m[2]);
  if (!std::regex_search(out, m, std::regex{R"(\n\s+99%\s+([0-9.]+)(us|ms|s)\b)"})) fail("no 99% latency");
  r.p99_ms = to_ms(m[1], m[2]);
  if (std::regex_search(out, m, std::regex{R"(Non-2xx or 3xx responses:\s+(\d+))"}))
    fail(std::string{m[1]} + " responses were not 2xx");
  if (std::regex_search(out, m, std::regex{R"(Socket errors:[^\n]*)"})) fail("socket errors");
  if (r.req_per_s <= 0) fail("0 requests/s");
  return r;
}

/// One wrk run against `url` (POST, a 128 B body); the load is wrk's
/// alone, this thread waits for it.
wrk_result run_wrk(const fs::path& wrk, const fs::path& dir, const std::string& url,
                   std::chrono::seconds duration, const std::string& what) {
  const auto script = dir / "post.lua";
  if (!fs::exists(script)) {
    std::ofstream lua{script};
    lua << "wrk.method = \"POST\"\n"
        << "wrk.body = string.rep(\"x\", " << payload_bytes << ")\n"
        << "wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n";
  }
  const auto out = dir / ("wrk-" + what + ".txt");
  fs::remove(out);
  child_process p{{wrk.string(), "-t" + std::to_string(wrk_threads), "-c" + std::to_string(connections),
                   "-d" + std::to_string(duration.count()) + "s", "--latency", "-s", script.string(), url},
                  out};
  if (!p.wait_for_exit(duration + 30s)) throw std::runtime_error("http " + what + ": wrk did not finish");
  std::ifstream in{out};
  std::stringstream text;
  text << in.rdbuf();
  if (!p.succeeded()) throw std::runtime_error("http " + what + ": wrk " + p.describe() + ":\n" + text.str());
  return parse_wrk(text.str(), what);
}

/// nginx with `return 200` on `port`, master and 2 workers, everything in `dir`.
class nginx_server {
public:
  nginx_server(const fs::path& binary, const fs::path& dir, int port) : port_(port) {
    fs::create_directories(dir / "logs");
    const auto conf = dir / "nginx.conf";
    std::ofstream c{conf};
    c << "daemon off;\nworker_processes 2;\npid " << (dir / "nginx.pid").string() << ";\n"
      << "error_log " << (dir / "logs/error.log").string() << ";\n"
      << "events { worker_connections 1024; }\nhttp {\n  access_log off;\n";
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
      c << "  " << t << "_temp_path " << (dir / t).string() << ";\n";
    c << "  server { listen 127.0.0.1:" << port << "; location / { return 200 \"ok\"; } }\n}\n";
    c.close();
    proc_ = std::make_unique<child_process>(
      std::vector<std::string>{binary.string(), "-p", dir.string(), "-c", conf.string()}, dir / "nginx.out");
    // Up once it answers.
    for (auto until = std::chrono::steady_clock::now() + 10s;;) {
      if (!proc_->running())
        throw std::runtime_error("http: nginx " + proc_->describe() + ": " + tail_of(dir / "logs/error.log"));
      if (answers()) break;
      if (std::chrono::steady_clock::now() > until) throw std::runtime_error("http: nginx did not listen");
      std::this_thread::sleep_for(20ms); // polling a child process's start
    }
  }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/rpc/echo"; }

private:
  [[nodiscard]] bool answers() const {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return ok;
  }

  int port_;
  std::unique_ptr<child_process> proc_;
};

struct samples {
  std::vector<double> rps, p50, p99;
  void add(const wrk_result& r) {
    rps.push_back(r.req_per_s);
    p50.push_back(r.p50_ms);
    p99.push_back(r.p99_ms);
  }
};

void record(recorder& rec, const std::string& name, const std::string& system, const samples& s) {
  rec.add(name, system, "req_per_s", "req/s", s.rps);
  rec.add(name, system, "p50_ms", "ms", s.p50);
  rec.add(name, system, "p99_ms", "ms", s.p99);
}

void run_http(const run_config& cfg, recorder& rec) {
  const auto wrk = wrk_path();
  if (wrk.empty())
    throw std::runtime_error("http: no wrk (scripts/install-deps.sh test or bench installs it, or set PLEXUS_WRK)");
  const auto nginx_bin = nginx_path();
  if (nginx_bin.empty())
    rec.note("nginx rows left out: no nginx binary (make bench unpacks one into build/tools, or set PLEXUS_NGINX)");
  const auto duration = cfg.quick ? quick_duration : full_duration;
  const int runs = cfg.runs;
  scratch_dir dir{"plexus-bench-http"};

  // A node with the echo function and a gateway in front of it; broker:
  // the endpoint, or empty for the node's embedded one.
  struct front_door {
    node n;
    actors::gateway g;
    explicit front_door(const std::string& broker)
        : n{node_options{.broker = broker, .duration = {}}}, g{gateway_options()} {
      n.service("bench").function("echo").on("echo").instances(echo_instances).handle(
        [](std::string_view body, context& ctx) -> plexus::result<void> {
          ctx.reply(body);
          return {};
        });
      n.start();
      g.start(n.client());
    }
    static actors::http_options gateway_options() {
      actors::http_options o;
      o.port = 0;
      o.json = false;
      return o;
    }
    [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(g.port()) + "/rpc/echo"; }
    // Stops both; throws if the gateway answered anything but 2xx.
    std::uint64_t finish(const std::string& name) {
      const auto st = g.stats();
      g.stop();
      n.stop();
      if (st.server_errors != 0 || st.client_errors != 0)
        throw std::runtime_error("http: " + name + " answered " + std::to_string(st.server_errors) + " 5xx and " +
                                 std::to_string(st.client_errors) + " 4xx");
      return st.requests;
    }
  };

  samples gw, emb, ngx;
  with_plexus_broker([&](const std::string& endpoint) {
    front_door tcp{endpoint}, embedded{std::string{}};
    std::optional<nginx_server> ngx_server;
    if (!nginx_bin.empty()) ngx_server.emplace(nginx_bin, dir.path() / "nginx", free_port());

    for (int r = 0; r < runs; ++r) {
      gw.add(run_wrk(wrk, dir.path(), tcp.url(), duration, "gateway"));
      emb.add(run_wrk(wrk, dir.path(), embedded.url(), duration, "gateway-emb"));
      if (ngx_server) ngx.add(run_wrk(wrk, dir.path(), ngx_server->url(), duration, "nginx"));
    }
    const auto a = tcp.finish("gateway"), b = embedded.finish("gateway-emb");
    rec.note("gateways: " + std::to_string(a) + " + " + std::to_string(b) + " requests answered, all 2xx");
  });
  const auto name = std::to_string(payload_bytes) + "B-rpc-" + std::to_string(connections) + "conn";
  record(rec, name, "gateway", gw);
  record(rec, name, "gateway-emb", emb);
  if (!ngx.rps.empty()) record(rec, name, "nginx", ngx);
}

const registration http_registration{
  {"http", "POST /rpc/echo through the HTTP gateway and the broker (wrk, 64 connections), beside nginx's return 200",
   &run_http}};

} // namespace

} // namespace plexus::bench
