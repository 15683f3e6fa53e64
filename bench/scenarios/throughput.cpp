// SPDX-License-Identifier: Apache-2.0
#include "scenarios/throughput.hpp"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#include <unistd.h>

namespace plexus::bench {

namespace {

// Where this process's ipc sockets live: a directory of its own, removed
// at exit with whatever socket files closing left behind.
const std::string& ipc_dir() {
  // Never destroyed: the exit handler runs after static destructors.
  static const std::string* dir = [] {
    std::string templ = (std::filesystem::temp_directory_path() / "plexus-bench-XXXXXX").string();
    if (!::mkdtemp(templ.data()))
      throw std::runtime_error("bench: cannot make a directory for ipc sockets");
    auto* made = new std::string(std::move(templ));
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ipc_dir(), ec);
    });
    return made;
  }();
  return *dir;
}

} // namespace

std::string bind_endpoint(transport t) {
  static std::atomic<unsigned> next{0};
  switch (t) {
    case transport::tcp: return "tcp://127.0.0.1:*";
    case transport::ipc: return "ipc://" + ipc_dir() + "/" + std::to_string(next++);
    case transport::inproc: return "inproc://plexus-bench-" + std::to_string(next++);
  }
  return {};
}

double run_result::msgs_per_s() const noexcept {
  auto seconds = std::chrono::duration<double>(elapsed).count();
  return received == 0 || seconds <= 0 ? 0.0 : static_cast<double>(received) / seconds;
}

// ---------------------------------------------------------------- sink

message_sink::message_sink(std::size_t receivers, std::size_t warmups, std::size_t measured,
                           delivery how)
  : targets_{how == delivery::every ? receivers : 1,
             how == delivery::every ? warmups * receivers : warmups,
             how == delivery::every ? measured * receivers : measured},
    every_(how == delivery::every),
    per_receiver_storage_(std::make_unique<receiver_count[]>(receivers)),
    per_receiver_(per_receiver_storage_.get(), receivers) {
  assert(receivers >= 1);
}

void message_sink::reached(std::size_t k) noexcept {
  auto now = steady::now();
  {
    std::lock_guard lock{mutex_};
    reached_at_[k] = now;
    reached_[k] = true;
  }
  changed_.notify_all();
}

void message_sink::fail(std::exception_ptr e) noexcept {
  {
    std::lock_guard lock{mutex_};
    if (!failure_) failure_ = e;
  }
  changed_.notify_all();
}

void message_sink::rethrow_locked() {
  if (failure_) std::rethrow_exception(failure_);
}

message_sink::progress message_sink::wait(message_kind kind, steady::duration idle,
                                          steady::time_point deadline) {
  // Woken when the target is reached; otherwise polls the count every few
  // milliseconds to see whether it still grows.
  constexpr auto slice = std::chrono::milliseconds{5};
  const auto k = index_of(kind);
  std::unique_lock lock{mutex_};
  progress p;
  p.last = steady::now();
  for (;;) {
    rethrow_locked();
    if (reached_[k]) {
      p.count = counts_[k].load(std::memory_order_acquire);
      p.complete = true;
      p.last = reached_at_[k];
      return p;
    }
    auto now = steady::now();
    auto count = counts_[k].load(std::memory_order_acquire);
    if (count != p.count) {
      p.count = count;
      p.last = now;
    }
    if (now >= deadline || now - p.last >= idle) return p;
    changed_.wait_until(lock, std::min(deadline, now + slice));
  }
}

std::vector<std::size_t> message_sink::measured_per_receiver() const {
  std::vector<std::size_t> out;
  for (const auto& r : per_receiver_) out.push_back(r.count.load(std::memory_order_relaxed));
  return out;
}

// ---------------------------------------------------------------- recording

namespace {

constexpr double quick_loss_limit = 0.01; // --quick fails above 1% lost
constexpr double bytes_per_mb = 1e6;

std::string percent(double fraction) {
  std::array<char, 32> buf{};
  auto n = std::snprintf(buf.data(), buf.size(), "%.3f%%", fraction * 100);
  return std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
}

} // namespace

void record_throughput(const run_config& cfg, recorder& rec, std::string_view case_name,
                       std::string_view system, std::size_t payload_bytes,
                       const std::function<run_result()>& run_once) {
  record_throughput_interleaved(cfg, rec, case_name, payload_bytes, {{system, run_once}});
}

void record_throughput_interleaved(const run_config& cfg, recorder& rec, std::string_view case_name,
                                   std::size_t payload_bytes, const std::vector<system_run>& systems) {
  struct tally {
    std::vector<double> msgs, mbs;
    std::size_t sent = 0, lost = 0, lossy_runs = 0;
  };
  std::vector<tally> t(systems.size());
  auto where = [&](std::size_t s) { return std::string{case_name} + " " + std::string{systems[s].system}; };
  for (int run = 0; run < cfg.runs; ++run)
    for (std::size_t s = 0; s < systems.size(); ++s) {
      auto r = systems[s].run_once();
      if (r.received > r.sent)
        throw std::runtime_error(where(s) + ": received " + std::to_string(r.received) +
                                 " measured messages but sent " + std::to_string(r.sent));
      if (r.received == 0)
        throw std::runtime_error(where(s) + ": run " + std::to_string(run + 1) +
                                 " received none of " + std::to_string(r.sent) + " messages");
      auto& x = t[s];
      x.sent += r.sent;
      x.lost += r.lost();
      x.lossy_runs += r.lost() > 0 ? 1 : 0;
      x.msgs.push_back(r.msgs_per_s());
      x.mbs.push_back(r.msgs_per_s() * static_cast<double>(payload_bytes) / bytes_per_mb);
    }
  for (std::size_t s = 0; s < systems.size(); ++s) {
    const auto& x = t[s];
    const double lost_fraction = x.sent == 0 ? 0.0 : static_cast<double>(x.lost) / static_cast<double>(x.sent);
    auto loss = std::to_string(cfg.runs) + " runs x " +
                std::to_string(x.sent / static_cast<std::size_t>(cfg.runs)) + " msgs, lost " +
                std::to_string(x.lost) + " (" + percent(lost_fraction) + ")";
    if (x.lost > 0)
      rec.note("LOSS " + where(s) + ": " + loss + " in " + std::to_string(x.lossy_runs) +
               " runs; throughput counts received messages only");
    else
      rec.note(where(s) + ": " + loss);
    if (cfg.quick && lost_fraction > quick_loss_limit)
      throw std::runtime_error(where(s) + ": lost " + percent(lost_fraction) +
                               " of the messages, more than the 1% --quick allows");
    rec.add(case_name, systems[s].system, "msgs_per_s", "msg/s", x.msgs);
    rec.add(case_name, systems[s].system, "mb_per_s", "MB/s", x.mbs);
  }
}

} // namespace plexus::bench
