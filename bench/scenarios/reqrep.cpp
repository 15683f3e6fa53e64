// SPDX-License-Identifier: Apache-2.0
// Scenario `reqrep`: request/reply round trips, 128 B each way, tcp on
// 127.0.0.1, a requester and an echoing responder on their own
// connections. Two cases:
//
// - 128B-paced-10k: 10,000 requests/s offered on a fixed schedule (open
//   loop); p50/p99/p999 of the time from when each request was due to its
//   reply, per run. Target: plexus p99 <= nats-server's.
// - 128B-window-64: as fast as replies come back with 64 outstanding;
//   requests/s.
//
// Systems, in the same run: plexus (client request_async via the broker),
// nats-server (libnats, reply subjects), zmq (PUSH/PULL each way, direct:
// no broker, the floor). With --data-dir, the latency CDF of every
// system's paced samples goes to reqrep-cdf.dat for plotting.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "latency.hpp"
#include "scenario.hpp"
#include "baselines/nats.hpp"
#include "scenarios/reqrep.hpp"
#include "scenarios/throughput.hpp"

namespace plexus::bench {

bool reply_log::wait(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock{mutex_};
  for (;;) {
    if (!failure_.empty()) throw std::runtime_error(failure_);
    if (answered_count() == at_.size()) return true;
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      if (!failure_.empty()) throw std::runtime_error(failure_);
      return answered_count() == at_.size();
    }
  }
}

namespace {

using namespace std::chrono_literals;

constexpr std::size_t payload_bytes = 128;
// Requests per second offered in the paced cases: a light load, and one
// where a broker batches; the CDF plot is of the last.
constexpr std::array<double, 2> rates{1'000, 10'000};
constexpr auto full_paced = 2s;          // of requests at each rate, per run
constexpr auto quick_paced = 200ms;
constexpr std::size_t window = 64;       // outstanding requests, window case
constexpr std::size_t full_window_count = 100'000;
constexpr std::size_t quick_window_count = 3'000;
constexpr std::size_t warmup_requests = 1'000; // per run and phase, not recorded
constexpr auto answer_within = 30s;      // a phase's replies, else the run fails

struct reqrep_factory {
  std::string name;
  std::function<std::unique_ptr<reqrep_system>(std::size_t size)> make;
};

std::string answered_text(const reply_log& log, std::size_t count) {
  return std::to_string(log.answered_count()) + " of " + std::to_string(count) +
         " requests were answered within " +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(answer_within).count()) +
         " s";
}

/// `count` requests, request i due at start + i / rate; its latency is from
/// then to its reply, in microseconds.
std::vector<double> paced_phase(reqrep_system& sys, std::size_t count, double rate) {
  auto& log = sys.log();
  log.reset(count, false);
  const auto start = steady::now();
  auto due = [start, rate](std::size_t i) {
    return start + std::chrono::duration_cast<steady::duration>(
                     std::chrono::duration<double>(static_cast<double>(i) / rate));
  };
  for (std::size_t i = 0; i < count; ++i) {
    if (auto d = due(i); d > steady::now()) std::this_thread::sleep_until(d); // the pace, not a wait for an event
    sys.send(i);
  }
  if (!log.wait(steady::now() + answer_within)) throw std::runtime_error(answered_text(log, count));
  std::vector<double> us(count);
  for (std::size_t i = 0; i < count; ++i)
    us[i] = std::chrono::duration<double, std::micro>(log.at(i) - due(i)).count();
  return us;
}

/// `count` requests, at most `window` unanswered at a time.
run_result window_phase(reqrep_system& sys, std::size_t count) {
  auto& log = sys.log();
  log.reset(count, true);
  log.open_window(window);
  const auto start = steady::now();
  const auto deadline = start + answer_within;
  for (std::size_t i = 0; i < count; ++i) {
    if (!log.take_slot(deadline)) throw std::runtime_error(answered_text(log, count));
    sys.send(i);
  }
  if (!log.wait(deadline)) throw std::runtime_error(answered_text(log, count));
  auto last = start;
  for (std::size_t i = 0; i < count; ++i) last = std::max(last, log.at(i));
  return {count, count, last - start};
}

/// The CDF of `sorted` latencies at fixed fractions, fine in the tail.
void write_cdf(std::ofstream& out, const std::string& system, const std::vector<double>& sorted) {
  out << "# " << system << ": latency_us fraction (" << sorted.size() << " samples)\n";
  std::vector<double> fractions;
  for (int i = 1; i <= 990; ++i) fractions.push_back(i / 1000.0);
  for (int i = 1; i <= 99; ++i) fractions.push_back(0.99 + i / 10'000.0);
  for (int i = 1; i <= 9; ++i) fractions.push_back(0.9999 + i / 100'000.0);
  for (double q : fractions) out << percentile(sorted, q) << ' ' << q << '\n';
  out << sorted.back() << " 1\n\n\n"; // two blank lines: the next gnuplot index
}

void run_reqrep(const run_config& cfg, recorder& rec) {
  auto systems = with_nats<reqrep_factory>({
    {"plexus", [](std::size_t size) { return make_plexus_reqrep(size); }},
    // As with --auth: CURVE on every hop, ZAP, the core's permission checks.
    {"plexus-curve", [](std::size_t size) { return make_plexus_reqrep(size, true); }},
    {"zmq", &make_zmq_reqrep},
  }, {"nats", [](std::size_t size) { return make_nats_reqrep(size); }}, rec);
  if (nats_missing().empty()) // TLS with a self-signed certificate: nats-server's encryption
    systems.push_back({"nats-tls", [](std::size_t size) { return make_nats_reqrep(size, true); }});
  auto paced_count = [&](double rate) {
    return static_cast<std::size_t>(
      rate * std::chrono::duration<double>(cfg.quick ? quick_paced : full_paced).count());
  };
  auto paced_case = [](double rate) {
    return std::to_string(payload_bytes) + "B-paced-" + std::to_string(static_cast<int>(rate / 1000)) + "k";
  };
  const auto window_count = cfg.quick ? quick_window_count : full_window_count;
  const auto window_case = std::to_string(payload_bytes) + "B-window-" + std::to_string(window);
  rec.note(std::to_string(cfg.runs) + " runs per system, fresh broker each: requests paced at 1k/s and 10k/s (" +
           std::to_string(paced_count(rates.back())) + " at 10k/s), then " +
           std::to_string(window_count) + " with " + std::to_string(window) + " outstanding");

  std::ofstream cdf;
  if (!cfg.data_dir.empty()) {
    cdf.open(cfg.data_dir + "/reqrep-cdf.dat", std::ios::trunc);
    if (!cdf) throw std::runtime_error("cannot write " + cfg.data_dir + "/reqrep-cdf.dat");
  }
  for (const auto& sys : systems) {
    struct percentiles {
      std::vector<double> p50, p99, p999;
    };
    std::array<percentiles, rates.size()> at_rate;
    std::vector<double> all; // the last rate's, for the CDF
    record_throughput(cfg, rec, window_case, sys.name, payload_bytes, [&] {
      auto s = sys.make(payload_bytes);
      for (std::size_t r = 0; r < rates.size(); ++r) {
        (void)paced_phase(*s, warmup_requests, rates[r]);
        auto us = paced_phase(*s, paced_count(rates[r]), rates[r]);
        if (r + 1 == rates.size()) all.insert(all.end(), us.begin(), us.end());
        std::sort(us.begin(), us.end());
        if (us.front() <= 0)
          throw std::runtime_error(sys.name + ": a reply came before its request was due");
        at_rate[r].p50.push_back(percentile(us, 0.50));
        at_rate[r].p99.push_back(percentile(us, 0.99));
        at_rate[r].p999.push_back(percentile(us, 0.999));
      }
      (void)window_phase(*s, warmup_requests);
      return window_phase(*s, window_count);
    });
    for (std::size_t r = 0; r < rates.size(); ++r) {
      rec.add(paced_case(rates[r]), sys.name, "p50_us", "us", at_rate[r].p50);
      rec.add(paced_case(rates[r]), sys.name, "p99_us", "us", at_rate[r].p99);
      rec.add(paced_case(rates[r]), sys.name, "p999_us", "us", at_rate[r].p999);
    }
    if (cdf.is_open()) {
      std::sort(all.begin(), all.end());
      write_cdf(cdf, sys.name, all);
    }
  }
}

const registration reqrep_registration{
  {"reqrep", "request/reply, 128 B: p50/p99/p999 at 1k/s and 10k/s, and max with 64 outstanding; plexus (plaintext and CURVE), nats-server (plaintext and TLS), zmq",
   &run_reqrep}};

} // namespace

} // namespace plexus::bench
