// SPDX-License-Identifier: Apache-2.0
// Scenario `failover`: what a broker's death costs a running stream. Three
// plexus-broker processes in a full mesh on 127.0.0.1 (b1, b2, b3); a
// publisher (plexus::client) on b1 publishes confirmed messages at a steady
// rate, each payload its id; two acking members of one queue group, on b2
// and on b3, record every id they get. Mid-stream one broker is killed
// (-9), each run with fresh processes:
//
// - kill-publisher-broker: b1 dies. The client notices, fails over to a
//   broker WELCOME named, subscribes again and re-sends what was not
//   confirmed. first_confirm_ms: the kill -> the first CONFIRM "ok" from
//   the new broker; flow_ms: the kill -> the first delivery of a message
//   published after it; resent: the client's count of re-sent publishes.
// - kill-consumer-broker: b2 dies. b1 routes the group's messages to b3 and
//   re-routes what b2 held; the member on b2 fails over and joins again.
//   flow_ms as above; rejoin_ms: the kill -> the first message that member
//   gets through its new broker.
//
// The publisher keeps each id until it is confirmed "ok" and publishes it
// again (a new msg id) on any other outcome, as an application would; the
// stream goes on until the cluster has recovered (plus a tail), then every
// id must be confirmed and received, else the run fails: lost must be 0.
// Duplicates (at least once) and lost are counts that may be 0, which the
// report's sanity rule does not take as a result, so they are notes.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "plexus/client.hpp"
#include "scenario.hpp"
#include "systems/cluster.hpp"

namespace plexus::bench {

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::string_view topic = "bench.failover";
constexpr std::string_view group = "workers";
constexpr std::string_view system_name = "plexus";
constexpr std::string_view kill_publisher_case = "kill-publisher-broker";
constexpr std::string_view kill_consumer_case = "kill-consumer-broker";

constexpr double rate = 5000;          // messages per second offered
constexpr std::uint64_t pace_every = 5; // messages per pacing step: 1 ms at 5000/s
constexpr std::uint32_t credit = 256;  // per member, granted back as it consumes
constexpr auto warm_within = 10s;      // both members get a warm-up message
constexpr auto recover_within = 30s;   // from the kill, else the run fails
constexpr auto settle_within = 60s;    // every id confirmed and received, after the stream
constexpr int quick_runs = 3;          // the fewest the report takes as a result

struct run_sizes {
  std::chrono::milliseconds before_kill; // of the stream, before the kill
  std::chrono::milliseconds tail;        // of the stream, once recovered
};
constexpr run_sizes full_sizes{2000ms, 1000ms};
constexpr run_sizes quick_sizes{400ms, 200ms};

double ms_between(steady::time_point from, steady::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

/// A payload: the id in decimal, or 'w' and a number for a warm-up message.
std::optional<std::uint64_t> parse_id(std::string_view payload) {
  std::uint64_t id = 0;
  auto [end, ec] = std::from_chars(payload.data(), payload.data() + payload.size(), id);
  if (ec != std::errc{} || end != payload.data() + payload.size()) return std::nullopt;
  return id;
}

/// What the members received, by id. Each member's handler runs on its
/// client's I/O thread.
class deliveries {
public:
  explicit deliveries(std::size_t members) : warm_(members, false) {}

  /// A member's message; `moved` if it came through another broker than the
  /// member's first.
  void on_message(std::size_t member, std::string_view payload, bool moved) {
    const auto now = steady::now();
    std::lock_guard lock{mutex_};
    if (payload.starts_with('w')) {
      warm_.at(member) = true;
      changed_.notify_all();
      return;
    }
    auto id = parse_id(payload);
    if (!id) {
      ++malformed_;
      return;
    }
    if (*id >= count_.size()) count_.resize(std::max<std::size_t>(*id + 1, count_.size() * 2), 0);
    if (count_[*id]++ == 0) ++distinct_; // ids are published from 0 up, none skipped
    if (!kill_at_) return;
    if (!flow_at_ && *id >= first_after_kill_) flow_at_ = now;
    if (!rejoin_at_ && moved) rejoin_at_ = now;
    changed_.notify_all();
  }

  /// Every member has received a warm-up message, within `deadline`.
  [[nodiscard]] bool wait_warm(steady::time_point deadline) {
    std::unique_lock lock{mutex_};
    return changed_.wait_until(lock, deadline, [&] {
      return std::all_of(warm_.begin(), warm_.end(), [](bool w) { return w; });
    });
  }

  /// From now on, ids from `first_after` were published after the kill.
  void mark_kill(steady::time_point at, std::uint64_t first_after) {
    std::lock_guard lock{mutex_};
    kill_at_ = at;
    first_after_kill_ = first_after;
  }
  [[nodiscard]] std::optional<steady::time_point> flow_at() {
    std::lock_guard lock{mutex_};
    return flow_at_;
  }
  [[nodiscard]] std::optional<steady::time_point> rejoin_at() {
    std::lock_guard lock{mutex_};
    return rejoin_at_;
  }

  /// Ids 0 .. n - 1 (all that were published) received at least once,
  /// within `deadline`.
  [[nodiscard]] bool wait_all(std::uint64_t n, steady::time_point deadline) {
    std::unique_lock lock{mutex_};
    return changed_.wait_until(lock, deadline, [&] { return distinct_ >= n; });
  }

  struct tally {
    std::uint64_t lost = 0;         // ids never received
    std::uint64_t duplicated = 0;   // ids received more than once
    std::uint64_t extra = 0;        // deliveries beyond each id's first
    std::uint64_t malformed = 0;
  };
  [[nodiscard]] tally count(std::uint64_t n) {
    std::lock_guard lock{mutex_};
    tally t;
    t.malformed = malformed_;
    for (std::uint64_t id = 0; id < n; ++id) {
      auto c = id < count_.size() ? count_[id] : 0;
      if (c == 0) ++t.lost;
      if (c > 1) {
        ++t.duplicated;
        t.extra += c - 1;
      }
    }
    return t;
  }

private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<bool> warm_;
  std::vector<std::uint32_t> count_; // deliveries per id
  std::uint64_t distinct_ = 0, malformed_ = 0;
  std::optional<steady::time_point> kill_at_, flow_at_, rejoin_at_;
  std::uint64_t first_after_kill_ = 0;
};

/// One acking member of the group on broker `home`.
std::unique_ptr<plexus::client> start_member(const broker_process& home, deliveries& got,
                                             std::size_t index) {
  client_options o;
  o.endpoint = home.endpoint();
  o.node_id = "member" + std::to_string(index);
  auto c = std::make_unique<plexus::client>(o);
  auto& cr = *c;
  subscribe_options so;
  so.queue = group;
  so.acked = true;
  so.credit = credit;
  cr.subscribe_batch(topic, [&cr, &got, index, first = home.id()](std::span<const message_view> batch) {
    const bool moved = cr.broker_id() != first;
    for (const auto& m : batch) {
      got.on_message(index, m.payload, moved); // recorded before the ACK: at least once
      cr.ack(m.sid, m.seq);
    }
    cr.grant_credit(batch.front().sid, static_cast<std::uint32_t>(batch.size()));
  }, so);
  return c;
}

/// Publishes ids with confirms, keeps each until it is confirmed "ok", and
/// publishes it again (a new msg id) on any other outcome.
class publisher {
public:
  explicit publisher(const broker_process& home) : first_broker_(home.id()) {
    client_options o;
    o.endpoint = home.endpoint();
    o.node_id = "publisher";
    client_ = std::make_unique<plexus::client>(o);
  }

  void publish(std::uint64_t id) {
    {
      std::lock_guard lock{mutex_};
      if (id >= ok_.size()) ok_.resize(std::max<std::size_t>(id + 1, ok_.size() * 2), false);
    }
    client_->publish_confirmed(topic, std::to_string(id),
                               [this, id](std::uint32_t code) { on_confirm(id, code); });
  }

  /// A warm-up message; its outcome does not matter.
  void publish_warmup(std::uint64_t n) {
    client_->publish_confirmed(topic, "w" + std::to_string(n), [](std::uint32_t) {});
  }

  /// Publishes again each id whose outcome was not "ok"; how many.
  std::size_t republish_failed() {
    std::vector<std::uint64_t> again;
    {
      std::lock_guard lock{mutex_};
      again.swap(retry_);
    }
    for (auto id : again) publish(id);
    return again.size();
  }

  void mark_kill(steady::time_point at) {
    std::lock_guard lock{mutex_};
    kill_at_ = at;
  }
  /// The first "ok" after the kill from another broker than the first.
  [[nodiscard]] std::optional<steady::time_point> first_confirm_after_kill() {
    std::lock_guard lock{mutex_};
    return first_after_kill_;
  }

  /// Every id below `n` confirmed "ok", re-publishing what fails, within
  /// `deadline`.
  [[nodiscard]] bool settle(std::uint64_t n, steady::time_point deadline) {
    for (;;) {
      republish_failed();
      std::unique_lock lock{mutex_};
      changed_.wait_until(lock, std::min(deadline, steady::now() + 100ms),
                          [&] { return !retry_.empty() || ok_count_ >= n; });
      if (ok_count_ >= n) return true;
      if (steady::now() >= deadline) return false;
    }
  }

  [[nodiscard]] std::uint64_t confirmed() {
    std::lock_guard lock{mutex_};
    return ok_count_;
  }
  [[nodiscard]] std::uint64_t not_ok() {
    std::lock_guard lock{mutex_};
    return not_ok_;
  }
  [[nodiscard]] client_stats stats() const { return client_->stats(); }
  /// When each id was first confirmed "ok", in that order.
  [[nodiscard]] std::vector<steady::time_point> confirm_times() {
    std::lock_guard lock{mutex_};
    return ok_at_;
  }

private:
  // On the client's I/O thread.
  void on_confirm(std::uint64_t id, std::uint32_t code) {
    const auto now = steady::now();
    // Which broker answered: WELCOME sets it on this same thread.
    const bool moved = code == 0 && client_->broker_id() != first_broker_;
    {
      std::lock_guard lock{mutex_};
      if (code != 0) {
        ++not_ok_;
        retry_.push_back(id);
      } else if (!ok_[id]) {
        ok_[id] = true;
        ++ok_count_;
        ok_at_.push_back(now);
      }
      if (code == 0 && kill_at_ && moved && !first_after_kill_) first_after_kill_ = now;
    }
    changed_.notify_all();
  }

  std::string first_broker_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<bool> ok_;
  std::uint64_t ok_count_ = 0, not_ok_ = 0;
  std::vector<std::uint64_t> retry_;
  std::vector<steady::time_point> ok_at_;
  std::optional<steady::time_point> kill_at_, first_after_kill_;
  std::unique_ptr<plexus::client> client_; // last: its I/O thread stops before the state above goes
};

enum class victim { publisher_broker, consumer_broker };

/// One run's figures.
struct run_figures {
  double first_confirm_ms = 0; // kill-publisher-broker only
  double flow_ms = 0;
  double rejoin_ms = 0; // kill-consumer-broker only
  std::uint64_t ids = 0, killed_after = 0, resent = 0, reconnects = 0, republished = 0,
                duplicated = 0, extra_deliveries = 0;
  std::vector<double> confirms_ms; // each first "ok", ms from the kill (negative: before)
};

/// --data-dir: confirmed messages per ms in 10 ms bins around the kill, one
/// gnuplot index (block) per case: "t_ms confirmed_per_ms".
constexpr double timeline_bin_ms = 10;

void write_timeline(std::ofstream& out, std::string_view case_name,
                    const std::vector<double>& confirms_ms) {
  out << "# " << case_name << ": t_ms (from the kill) confirmed_per_ms\n";
  if (confirms_ms.empty()) {
    out << "0 0\n\n\n";
    return;
  }
  const auto [lo, hi] = std::minmax_element(confirms_ms.begin(), confirms_ms.end());
  const auto first = std::floor(*lo / timeline_bin_ms);
  std::vector<std::size_t> bins(static_cast<std::size_t>(std::floor(*hi / timeline_bin_ms) - first) + 1);
  for (double t : confirms_ms) ++bins[static_cast<std::size_t>(std::floor(t / timeline_bin_ms) - first)];
  for (std::size_t i = 0; i < bins.size(); ++i)
    out << (first + static_cast<double>(i)) * timeline_bin_ms << ' '
        << static_cast<double>(bins[i]) / timeline_bin_ms << '\n';
  out << "\n\n";
}

run_figures failover_once(victim v, const run_sizes& sizes) {
  broker_mesh mesh{3};
  deliveries got{2};
  // Declared after what their handlers use: they stop first.
  std::vector<std::unique_ptr<plexus::client>> members;
  members.push_back(start_member(mesh[1], got, 0));
  members.push_back(start_member(mesh[2], got, 1));
  publisher pub{mesh[0]};
  auto& dead = v == victim::publisher_broker ? mesh[0] : mesh[1];

  // Until both members get messages, b1 has not heard the group's interest
  // from both peers.
  const auto warm_by = steady::now() + warm_within;
  for (std::uint64_t n = 0; !got.wait_warm(steady::now() + 1ms); ++n) {
    if (steady::now() >= warm_by)
      throw std::runtime_error("the members on b2 and b3 got no warm-up message within " +
                               std::to_string(warm_within.count()) + " s");
    pub.publish_warmup(n);
  }

  // The stream: paced at `rate`; the kill after `before_kill` of it; on
  // until the cluster recovered, then `tail` more.
  const auto kill_after = static_cast<std::uint64_t>(
    rate * std::chrono::duration<double>(sizes.before_kill).count());
  const auto recovered = [&] {
    return v == victim::publisher_broker
             ? pub.first_confirm_after_kill() && got.flow_at()
             : got.rejoin_at() && got.flow_at();
  };
  std::optional<steady::time_point> kill_at, recovered_at;
  const auto start = steady::now();
  std::uint64_t id = 0;
  for (;; ++id) {
    if (id % pace_every == 0) {
      // Offered load: a load generator's pacing, not a wait for anything.
      std::this_thread::sleep_until(start + std::chrono::duration_cast<steady::duration>(
                                              std::chrono::duration<double>(id / rate)));
      pub.republish_failed();
      if (kill_at) {
        auto now = steady::now();
        if (!recovered_at && recovered()) recovered_at = now;
        if (recovered_at && now >= *recovered_at + sizes.tail) break;
        if (!recovered_at && now >= *kill_at + recover_within)
          throw std::runtime_error(
            "not recovered " + std::to_string(recover_within.count()) + " s after kill -9 " +
            dead.id() + ": " +
            (v == victim::publisher_broker
               ? std::string{"an \"ok\" from another broker: "} +
                   (pub.first_confirm_after_kill() ? "yes" : "none")
               : std::string{"the member on it received again: "} +
                   (got.rejoin_at() ? "yes" : "no")) +
            "; a message published after the kill delivered: " + (got.flow_at() ? "yes" : "none"));
      }
    }
    pub.publish(id);
    if (id == kill_after) {
      // Marked first: a confirm already on its way is not "after".
      kill_at = steady::now();
      got.mark_kill(*kill_at, id + 1);
      pub.mark_kill(*kill_at);
      dead.kill();
    }
  }
  const std::uint64_t ids = id; // 0 .. id - 1 were published

  const auto settle_by = steady::now() + settle_within;
  if (!pub.settle(ids, settle_by))
    throw std::runtime_error("kill -9 " + dead.id() + ": " + std::to_string(pub.confirmed()) +
                             " of " + std::to_string(ids) + " ids confirmed \"ok\" within " +
                             std::to_string(settle_within.count()) + " s of the stream's end");
  // A member records an id before it ACKs it, so a confirmed id has
  // arrived; waited for all the same, with the same deadline.
  (void)got.wait_all(ids, settle_by);
  auto tally = got.count(ids);
  if (tally.malformed != 0)
    throw std::runtime_error(std::to_string(tally.malformed) +
                             " messages arrived with a payload not sent");
  if (tally.lost != 0)
    throw std::runtime_error("kill -9 " + dead.id() + ": " + std::to_string(tally.lost) + " of " +
                             std::to_string(ids) +
                             " ids were confirmed \"ok\" but never received: lost");

  run_figures f;
  f.ids = ids;
  f.killed_after = kill_after + 1;
  f.flow_ms = ms_between(*kill_at, *got.flow_at());
  if (v == victim::publisher_broker)
    f.first_confirm_ms = ms_between(*kill_at, *pub.first_confirm_after_kill());
  else
    f.rejoin_ms = ms_between(*kill_at, *got.rejoin_at());
  const auto st = pub.stats();
  f.resent = st.resent;
  f.reconnects = st.reconnects;
  f.republished = pub.not_ok();
  f.duplicated = tally.duplicated;
  f.extra_deliveries = tally.extra;
  for (auto t : pub.confirm_times()) f.confirms_ms.push_back(ms_between(*kill_at, t));
  return f;
}

std::string run_note(std::string_view case_name, int run, const run_figures& f) {
  return std::string{case_name} + " run " + std::to_string(run + 1) + ": " +
         std::to_string(f.ids) + " ids, the kill after " + std::to_string(f.killed_after) +
         "; publisher re-sent " + std::to_string(f.resent) + " (" + std::to_string(f.reconnects) +
         " reconnects), published again after an outcome not ok " +
         std::to_string(f.republished) + "; ids received more than once " +
         std::to_string(f.duplicated) + " (" + std::to_string(f.extra_deliveries) +
         " extra deliveries), lost 0";
}

void run_failover(const run_config& cfg, recorder& rec) {
  const auto& sizes = cfg.quick ? quick_sizes : full_sizes;
  const int runs = cfg.quick ? quick_runs : cfg.runs;
  rec.note(std::to_string(runs) + " runs per case, fresh brokers each; " +
           std::to_string(static_cast<int>(rate)) + " confirmed msgs/s, the kill after " +
           std::to_string(sizes.before_kill.count()) + " ms of them");

  // The first run of each case is the one plotted.
  std::ofstream timeline;
  if (!cfg.data_dir.empty()) {
    timeline.open(cfg.data_dir + "/failover-timeline.dat", std::ios::trunc);
    if (!timeline) throw std::runtime_error("cannot write " + cfg.data_dir + "/failover-timeline.dat");
  }
  std::vector<double> confirm_ms, flow_ms, resent;
  for (int run = 0; run < runs; ++run) {
    auto f = failover_once(victim::publisher_broker, sizes);
    rec.note(run_note(kill_publisher_case, run, f));
    if (run == 0 && timeline.is_open()) write_timeline(timeline, kill_publisher_case, f.confirms_ms);
    confirm_ms.push_back(f.first_confirm_ms);
    flow_ms.push_back(f.flow_ms);
    resent.push_back(static_cast<double>(f.resent));
  }
  rec.add(kill_publisher_case, system_name, "first_confirm_ms", "ms", confirm_ms);
  rec.add(kill_publisher_case, system_name, "flow_ms", "ms", flow_ms);
  rec.add(kill_publisher_case, system_name, "resent", "msgs", resent);

  std::vector<double> rejoin_ms;
  flow_ms.clear();
  for (int run = 0; run < runs; ++run) {
    auto f = failover_once(victim::consumer_broker, sizes);
    rec.note(run_note(kill_consumer_case, run, f));
    if (run == 0 && timeline.is_open()) write_timeline(timeline, kill_consumer_case, f.confirms_ms);
    flow_ms.push_back(f.flow_ms);
    rejoin_ms.push_back(f.rejoin_ms);
  }
  rec.add(kill_consumer_case, system_name, "flow_ms", "ms", flow_ms);
  rec.add(kill_consumer_case, system_name, "rejoin_ms", "ms", rejoin_ms);
}

const registration failover_registration{
  {"failover",
   "3 plexus-broker processes, confirmed publishes at 5000/s to an acked queue group: "
   "kill -9 the publisher's broker, then a member's; time to recover, re-sent, duplicates",
   &run_failover}};

} // namespace

} // namespace plexus::bench
