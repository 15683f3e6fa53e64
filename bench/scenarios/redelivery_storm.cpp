// SPDX-License-Identifier: Apache-2.0
// Scenario `redelivery-storm`: a member of an acked queue group dies
// holding 10,000 unacked messages. The member is a child process
// (plexus-bench --child) that takes every message and ACKs none; once it
// holds them all it is killed (-9). The broker must find the member dead,
// take its deliveries back and redeliver all of them to the surviving
// member, which ACKs each; the publisher published them confirmed, and a
// CONFIRM "ok" comes only once a member ACKed. Figures, per run (fresh
// broker with the broker's default heartbeat, 1 s):
//
// - detect_ms: the kill -> the first redelivery at the survivor (how long
//   the broker takes to notice the member is gone: about its heartbeat);
// - drain_ms: the first redelivery -> the last CONFIRM (the storm itself);
// - storm_ms: the kill -> the last CONFIRM, i.e. all redelivered and ACKed;
// - drain_msgs_per_s: messages redelivered and ACKed per second of drain.
//
// Every id must be confirmed "ok" (0 lost) or the run fails.

#include <signal.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "baselines/child_process.hpp"
#include "plexus/client.hpp"
#include "scenario.hpp"
#include "systems/plexus.hpp"

namespace plexus::bench {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view topic = "bench.storm";
constexpr std::string_view group = "workers";
constexpr std::string_view system_name = "plexus";
constexpr std::size_t payload_bytes = 128;
constexpr std::size_t full_count = 10'000;
constexpr std::size_t quick_count = 2'000;
constexpr int quick_runs = 3;
constexpr auto held_within = 30s;   // the member holds every message
constexpr auto storm_within = 60s;  // from the kill: all confirmed
constexpr auto child_lifetime = 120s; // the member exits by itself if never killed
constexpr char probe = 'p';

std::string payload_of(std::size_t id) {
  auto p = std::to_string(id);
  p.resize(payload_bytes, ' ');
  return p;
}

/// The id a payload carries; SIZE_MAX (never an id) if it carries none.
std::size_t parse_id(std::string_view payload) noexcept {
  std::size_t id = 0;
  auto [end, ec] = std::from_chars(payload.data(), payload.data() + payload.size(), id);
  return ec == std::errc{} ? id : SIZE_MAX;
}

double ms_between(steady::time_point from, steady::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// ---------------------------------------------------------------- the member that dies

/// --child redelivery-storm:ENDPOINT|COUNT. Joins the group with credit for
/// COUNT messages, ACKs probes, holds the rest unacked, prints "held COUNT"
/// once it has them all, then waits to be killed.
void run_member(std::string_view arg, std::ostream& out) {
  auto bar = arg.find('|');
  if (bar == std::string_view::npos) throw std::runtime_error("expected ENDPOINT|COUNT");
  std::size_t count = 0;
  auto digits = arg.substr(bar + 1);
  if (std::from_chars(digits.data(), digits.data() + digits.size(), count).ec != std::errc{})
    throw std::runtime_error("expected ENDPOINT|COUNT");
  client_options o;
  o.endpoint = std::string{arg.substr(0, bar)};
  plexus::client c{o};
  std::mutex m;
  std::condition_variable cv;
  std::size_t held = 0;
  subscribe_options so;
  so.queue = std::string{group};
  so.acked = true;
  so.credit = static_cast<std::uint32_t>(count + 1);
  c.subscribe_batch(topic, [&](std::span<const message_view> batch) {
    std::size_t got = 0;
    for (const auto& msg : batch) {
      if (!msg.payload.empty() && msg.payload[0] == probe) {
        c.ack(msg.sid, msg.seq);
        c.grant_credit(msg.sid, 1);
      } else {
        ++got;
      }
    }
    std::lock_guard lock{m};
    held += got;
    if (held >= count) cv.notify_all();
  }, so);
  std::unique_lock lock{m};
  if (!cv.wait_for(lock, held_within, [&] { return held >= count; }))
    throw std::runtime_error("held " + std::to_string(held) + " of " + std::to_string(count));
  out << "held " << held << std::endl;
  cv.wait_for(lock, child_lifetime, [] { return false; });
  throw std::runtime_error("not killed within " + std::to_string(child_lifetime.count()) + " s");
}

// ---------------------------------------------------------------- one run

struct storm_figures {
  double detect_ms = 0, drain_ms = 0, storm_ms = 0, drain_rate = 0;
  std::size_t redelivered = 0, duplicates = 0;
};

/// What the survivor and the publisher's CONFIRMs saw; any thread.
class storm_state {
public:
  explicit storm_state(std::size_t count) : confirmed_(count), received_(count) {}

  void confirm(std::size_t id, std::uint32_t code) {
    std::lock_guard lock{m_};
    if (code != 0) {
      failure_ = "message " + std::to_string(id) + " confirmed " + status_text(code);
    } else if (!confirmed_[id]) {
      confirmed_[id] = true;
      if (++n_confirmed_ == confirmed_.size()) last_confirm_ = steady::now();
    }
    cv_.notify_all();
  }

  void survivor_got(std::size_t id, std::uint32_t delivery) {
    std::lock_guard lock{m_};
    if (id >= received_.size()) {
      failure_ = "the survivor got a message that was never published";
      cv_.notify_all();
      return;
    }
    if (first_redelivery_ == steady::time_point{}) first_redelivery_ = steady::now();
    if (delivery > 1) ++redelivered_;
    if (received_[id]) ++duplicates_;
    received_[id] = true;
  }

  void probe_confirmed(std::uint32_t code) {
    std::lock_guard lock{m_};
    probe_code_ = code;
    cv_.notify_all();
  }

  /// Until the probe is confirmed; its code (or -1 on timeout).
  std::int64_t wait_probe(steady::time_point deadline) {
    std::unique_lock lock{m_};
    cv_.wait_until(lock, deadline, [&] { return probe_code_ >= 0; });
    return probe_code_;
  }

  /// Until every id is confirmed (true), a CONFIRM failed (throws) or the deadline.
  bool wait_all(steady::time_point deadline) {
    std::unique_lock lock{m_};
    cv_.wait_until(lock, deadline,
                   [&] { return !failure_.empty() || n_confirmed_ == confirmed_.size(); });
    if (!failure_.empty()) throw std::runtime_error(failure_);
    return n_confirmed_ == confirmed_.size();
  }

  std::size_t confirmed() {
    std::lock_guard lock{m_};
    return n_confirmed_;
  }

  storm_figures figures(steady::time_point kill) {
    std::lock_guard lock{m_};
    storm_figures f;
    f.detect_ms = ms_between(kill, first_redelivery_);
    f.drain_ms = ms_between(first_redelivery_, last_confirm_);
    f.storm_ms = ms_between(kill, last_confirm_);
    f.drain_rate = f.drain_ms > 0 ? static_cast<double>(confirmed_.size()) / (f.drain_ms / 1000) : 0;
    f.redelivered = redelivered_;
    f.duplicates = duplicates_;
    return f;
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<bool> confirmed_, received_;
  std::size_t n_confirmed_ = 0, redelivered_ = 0, duplicates_ = 0;
  std::int64_t probe_code_ = -1;
  steady::time_point first_redelivery_{}, last_confirm_{};
  std::string failure_;
};

bool holds_all(const std::filesystem::path& log) {
  return tail_of(log, 256).find("held ") != std::string::npos;
}

storm_figures storm_once(const std::string& endpoint, std::size_t count) {
  client_options o;
  o.endpoint = endpoint;
  storm_state state{count};

  // The survivor joins first, without credit: it gets nothing until the
  // member holds everything.
  plexus::client survivor{o};
  subscribe_options so;
  so.queue = std::string{group};
  so.acked = true;
  so.credit = 0;
  const auto sid = survivor.subscribe_batch(topic, [&](std::span<const message_view> batch) {
    for (const auto& m : batch) {
      state.survivor_got(parse_id(m.payload), m.delivery);
      survivor.ack(m.sid, m.seq);
    }
    survivor.grant_credit(batch.front().sid, static_cast<std::uint32_t>(batch.size()));
  }, so);
  if (!survivor.flush(5s)) throw std::runtime_error("the survivor's SUB was not sent within 5 s");

  scratch_dir dir{"plexus-bench-storm-"};
  const auto log = dir.path() / "member.log";
  child_process member{{self_executable().string(), "--child",
                        "redelivery-storm:" + endpoint + "|" + std::to_string(count)},
                       log};
  plexus::client pub{o};

  // The member's membership is live once a probe it ACKs is confirmed
  // (the survivor has no credit, so only the member can take it).
  pub.publish_confirmed(topic, std::string(payload_bytes, probe),
                        [&](std::uint32_t code) { state.probe_confirmed(code); });
  if (auto code = state.wait_probe(steady::now() + 10s); code != 0)
    throw std::runtime_error("the member did not take a probe within 10 s (" +
                             (code < 0 ? std::string{"no CONFIRM"} : std::string{status_text(static_cast<std::uint32_t>(code))}) +
                             "); its log:\n" + tail_of(log));

  for (std::size_t id = 0; id < count; ++id)
    pub.publish_confirmed(topic, payload_of(id),
                          [&state, id](std::uint32_t code) { state.confirm(id, code); });
  const auto held_by = steady::now() + held_within;
  while (!holds_all(log)) {
    if (!member.running())
      throw std::runtime_error("the member " + member.describe() + "; its log:\n" + tail_of(log));
    if (steady::now() >= held_by)
      throw std::runtime_error("the member did not hold all " + std::to_string(count) +
                               " messages within 30 s");
    std::this_thread::sleep_for(1ms); // a poll of its output, with a deadline
  }
  if (auto c = state.confirmed(); c != 0)
    throw std::runtime_error(std::to_string(c) + " messages were confirmed before the kill; the member ACKs none");

  survivor.grant_credit(sid, static_cast<std::uint32_t>(count));
  const auto kill_at = steady::now();
  if (::kill(member.pid(), SIGKILL) != 0) throw std::runtime_error("cannot kill the member");
  if (!state.wait_all(kill_at + storm_within))
    throw std::runtime_error("lost: " + std::to_string(count - state.confirmed()) + " of " +
                             std::to_string(count) + " messages not confirmed within " +
                             std::to_string(storm_within.count()) + " s of the kill");
  member.terminate();
  return state.figures(kill_at);
}

void run_storm(const run_config& cfg, recorder& rec) {
  const auto count = cfg.quick ? quick_count : full_count;
  const int runs = cfg.quick ? quick_runs : cfg.runs;
  rec.note(std::to_string(runs) + " runs, fresh broker each: a member killed (-9) holding " +
           std::to_string(count) + " unacked messages");
  std::vector<double> detect, drain, storm, rate;
  const auto name = std::to_string(count) + "-unacked";
  for (int run = 0; run < runs; ++run) {
    storm_figures f;
    with_plexus_broker([&](const std::string& endpoint) { f = storm_once(endpoint, count); });
    rec.note("run " + std::to_string(run + 1) + ": 0 lost, " + std::to_string(f.redelivered) +
             " redelivered, " + std::to_string(f.duplicates) + " duplicates at the survivor");
    detect.push_back(f.detect_ms);
    drain.push_back(f.drain_ms);
    storm.push_back(f.storm_ms);
    rate.push_back(f.drain_rate);
  }
  rec.add(name, system_name, "detect_ms", "ms", detect);
  rec.add(name, system_name, "drain_ms", "ms", drain);
  rec.add(name, system_name, "storm_ms", "ms", storm);
  rec.add(name, system_name, "drain_msgs_per_s", "msg/s", rate);
}

const registration storm_registration{
  {"redelivery-storm",
   "an acked member killed (-9) holding 10k unacked: time until all are redelivered and ACKed",
   &run_storm, &run_member}};

} // namespace

} // namespace plexus::bench
