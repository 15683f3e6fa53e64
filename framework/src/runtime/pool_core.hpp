// SPDX-License-Identifier: Apache-2.0
#pragma once

// A function pool's logic, sans-IO, in the broker core's style: it is fed
// inputs (a batch arrived, a run is done, an instance ended, a tick with
// the time, a confirm settled a reliable invocation, stop, ...) and answers
// with commands in order (ack, nack, grant or set credit, spawn or retire
// an instance, hand a run to an instance, an event, ...). No CAF, no
// sockets, no clock of its own: the pool actor (function_pool.cpp) is a
// thin shell that feeds it and carries the commands out, and tests drive
// it with a fake clock.
//
// What it decides: runs of waiting messages for idle instances; one
// broker credit back per finished message (in batches); ACK, NACK or
// quarantine by the outcome; restarts as the service's supervisor core
// decides; scaling as the autoscaler decides; what goes back to the
// broker at a stop, an escalation or the function's end.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "autoscaler.hpp"
#include "plexus/node.hpp"
#include "plexus/wire.hpp"
#include "pool_types.hpp"
#include "supervisor.hpp"

namespace plexus::detail {

/// An instance, as the core knows it (the shell maps it to an actor).
using instance_id = std::uint64_t;

/// Where a pool is in its life.
enum class pool_phase : std::uint8_t {
  running,    // takes work
  wound_down, // escalated (waits for a revival) or ended for good: takes none
  stopping,   // the node stops: what runs finishes, then the pool quits
  past_grace, // ... and what waits for its publishes' confirms waits no more
};

namespace pool_cmd {
struct ack {
  std::uint32_t sid = 0;
  std::uint64_t seq = 0;
  std::uint32_t count = 1;
};
struct nack {
  std::uint32_t sid = 0;
  std::uint64_t seq = 0;
  wire::nack_action action = wire::nack_action::requeue;
  std::uint32_t delay_ms = 0;
  std::string reason;
};
struct grant_credit { // the broker may send `n` more
  std::uint32_t sid = 0, n = 0;
};
struct set_credit { // the credit becomes `n` (0: withdrawn)
  std::uint32_t sid = 0, n = 0;
};
struct unsubscribe {
  std::uint32_t sid = 0;
};
struct subscribe {}; // again, after a revival that had left: answer with subscribed()
struct spawn {
  instance_id id = 0;
};
struct retire { // told to exit; its end is the core's own doing
  instance_id id = 0;
};
struct run {
  instance_id id = 0;
  work_run_ptr work;
};
struct event { // $SYS.supervisor.<kind>...: the shell adds the node
  supervisor_event e;
};
struct scaled { // announced at the next tick, off the hot path
  scale_event e;
};
struct recovered {}; // to the service: a revived service works again
struct escalate {    // to the service: past the restart intensity
  std::string why;
  std::uint32_t intensity = 0;
};
struct recycle_siblings { // to the service: replace these functions' instances
  std::vector<std::size_t> functions;
  std::string why;
};
struct restart_later { // a restart after a backoff: answer with restart_due(epoch)
  std::chrono::milliseconds delay{0};
  std::uint64_t epoch = 0;
};
struct quit {};
struct refuse { // answer a request with the failure `rejected` (overload) now
  std::string reply_to, why;
};
struct probe_downstream { // after `delay`: is `topic` still paused? answer with downstream_probed
  std::chrono::milliseconds delay{0};
  std::string topic;
  std::uint64_t episode = 0;
};
} // namespace pool_cmd

using pool_command =
  std::variant<pool_cmd::ack, pool_cmd::nack, pool_cmd::grant_credit, pool_cmd::set_credit,
               pool_cmd::unsubscribe, pool_cmd::subscribe, pool_cmd::spawn, pool_cmd::retire,
               pool_cmd::run, pool_cmd::event, pool_cmd::scaled, pool_cmd::recovered,
               pool_cmd::escalate, pool_cmd::recycle_siblings, pool_cmd::restart_later,
               pool_cmd::quit, pool_cmd::refuse, pool_cmd::probe_downstream>;

/// How often a pool whose downstream is paused asks whether it still is.
inline constexpr std::chrono::milliseconds downstream_probe_every{20};

struct pool_core_spec {
  std::string service, function; // names
  std::size_t index = 0;         // the function's among its service's
  function_options opts;
  std::shared_ptr<pool_counters> counters;
  std::shared_ptr<shared_supervisor> sup; // the service's decisions
  /// Draws in [0, 1) for the retries' jitter (one a run); empty: a
  /// generator of the core's own. Tests inject theirs.
  std::function<double()> random{};
};

class pool_core {
public:
  using clock = std::chrono::steady_clock;

  explicit pool_core(pool_core_spec spec);

  // ------------------------------------------------------------ inputs

  /// Spawns the function's `scale.min` instances. The shell subscribes
  /// with the credit initial_credit() and says subscribed().
  void start(clock::time_point now);
  [[nodiscard]] std::uint32_t initial_credit() const noexcept;
  void subscribed(std::uint32_t sid);
  /// Deliveries from the broker, in order. `now` paces a rate-limited
  /// function (without it: the time of the core's last input).
  void take(const delivery_batch& b, clock::time_point now);
  void take(const delivery_batch& b) { take(b, last_now_); }
  /// An instance finished the run it was handed (its `crash`: the handler
  /// threw on items[finished], and the instance lives on).
  void run_done(instance_id id, clock::time_point now);
  /// An instance ended: crashed (`crash` says why) or quit.
  void instance_down(instance_id id, const std::optional<std::string>& crash, clock::time_point now);
  /// The autoscaler's sample, every scale.tick.
  void tick(clock::time_point now);
  /// The last confirm of a reliable invocation's publishes is in.
  void published(const publish_tracker* t);
  void restart_due(std::uint64_t epoch);
  /// The service replaces (or, temporary, ends) every instance.
  void recycle(bool replace);
  /// The service is past its intensity (a sibling escalated).
  void escalate();
  void revive();
  void stop();
  void grace_over();
  /// The answer to probe_downstream (`still`: the topic is paused yet).
  void downstream_probed(std::uint64_t episode, bool still, clock::time_point now);

  // ------------------------------------------------------------ outputs

  /// The commands since the last call, in order.
  [[nodiscard]] std::vector<pool_command> take_commands();

  [[nodiscard]] pool_phase phase() const noexcept { return phase_; }
  [[nodiscard]] bool quit() const noexcept { return quit_; }
  /// What the core holds: waiting, at work (in runs), deferred.
  [[nodiscard]] std::size_t waiting() const noexcept { return waiting_.size(); }
  [[nodiscard]] std::size_t busy() const noexcept { return busy_.size(); }
  /// The run instance `id` has in hand; null when it has none.
  [[nodiscard]] const work_run* run_of(instance_id id) const noexcept {
    auto it = busy_.find(id);
    return it == busy_.end() ? nullptr : it->second.get();
  }
  [[nodiscard]] std::size_t deferred() const noexcept { return deferred_.size(); }
  [[nodiscard]] std::size_t live() const noexcept { return born_.size(); }
  [[nodiscard]] std::uint32_t target() const noexcept { return target_; }
  /// A handler found this topic paused: the pool holds its credit back
  /// (takes no more work) until the broker resumes it.
  [[nodiscard]] bool downstream_paused() const noexcept { return downstream_paused_; }
  [[nodiscard]] const std::string& paused_topic() const noexcept { return paused_topic_; }

private:
  [[nodiscard]] bool live_phase() const noexcept { return phase_ == pool_phase::running; }
  [[nodiscard]] bool stopping() const noexcept {
    return phase_ == pool_phase::stopping || phase_ == pool_phase::past_grace;
  }
  void emit(pool_command c) { out_.push_back(std::move(c)); }
  supervisor_event make_event(std::string kind, std::string reason) const;

  void spawn_instance();
  void retire(instance_id id);
  void note_gauges();
  void dispatch();
  void freed(instance_id id);
  void maybe_quit();
  void give_credit();
  void finished(const delivery& d);
  void credit_if_dry();
  void hand_back(const delivery& d, const char* why);
  enum class group_stay : bool { leave, stay };
  void wind_down(const char* why, group_stay group);
  void requeue_unstarted(const work_run& run, bool died_on_one);
  void settle_finished(const work_run& run);
  void succeeded();
  void unconfirmed_publish(const delivery& d, std::uint32_t code);
  void settle_crashed(const delivery& d, const std::string& why);
  void recycle_instances(bool replace);
  void run_ended(const work_run_ptr& run, const std::optional<std::string>& why,
                 std::optional<instance_id> survivor, const std::string& source,
                 clock::time_point now);
  void scale_to(std::uint32_t to, const char* why);
  void cold_start();
  [[nodiscard]] double draw();
  void settle_failed(const work_run& run, std::size_t i);
  void settle_overloaded(const work_run& run, std::size_t i);
  void hold_credit(const std::string& topic);
  void release_credit();
  void forget_pause();
  [[nodiscard]] bool admit(const delivery& d, clock::time_point now);
  [[nodiscard]] bool shed(const delivery& d);

  pool_core_spec spec_;
  pool_phase phase_ = pool_phase::running;
  bool quit_ = false;
  std::vector<pool_command> out_;
  instance_id next_id_ = 1;
  std::vector<instance_id> idle_;
  std::unordered_map<instance_id, work_run_ptr> busy_;
  // Live instances by the generation they were spawned in: a recycle or a
  // wind-down starts a new one, and older instances retire once idle.
  std::unordered_map<instance_id, std::uint64_t> born_;
  std::unordered_set<instance_id> retired_; // told to exit by the core
  std::deque<delivery_ptr> waiting_;
  std::size_t handed_ = 0; // messages in the runs of busy instances (the gauges)
  // Reliable functions: messages whose handler succeeded, waiting for the
  // confirms of what it published before they are ACKed (their credit is
  // held meanwhile, so at most `prefetch` wait).
  std::unordered_map<const publish_tracker*, delivery_ptr> deferred_;
  std::uint64_t generation_ = 0;
  std::uint64_t epoch_ = 0; // bumped when the function winds down: pending restarts lapse
  bool replace_retired_ = true; // false: a temporary function winding down
  std::uint32_t sid_ = 0;
  std::uint32_t owed_credit_ = 0; // finished messages not yet credited back
  std::uint32_t owed_sid_ = 0;    // the subscription they came through
  bool crashed_since_ok_ = false; // the service hears of the next success
  std::optional<autoscaler> scaler_;
  std::uint32_t target_ = 0;
  std::uint32_t credit_debt_ = 0; // scaled down: finished messages not credited back
  bool cold_pending_ = false;     // the next run is the first after a cold start
  std::uint64_t taken_since_tick_ = 0; // messages taken in since the last demand sample
  std::vector<scale_event> unannounced_; // announced at the next tick
  clock::time_point last_now_{};          // the time of the last input that said it
  std::uint64_t rng_ = 0;                 // the core's own jitter draws (splitmix64)
  // The rate limit, a token bucket as GCRA (the ATM cell-rate algorithm):
  // the theoretical arrival time tat_ moves on by interval_ per message
  // admitted, a message conforms when tat_ - now <= tolerance_ (burst - 1
  // intervals). One over the rate is NACKed with the delay to its slot,
  // which is reserved for it (tat_ moves on): when it comes back it is
  // admitted without a token, so it is deferred once, not again and again.
  bool rate_limited_ = false;
  clock::duration interval_{}, tolerance_{};
  clock::time_point tat_{};
  std::unordered_map<std::string, clock::time_point> reserved_; // message key -> its slot
  std::size_t sweep_at_ = 1024;
  // Flow control downstream: a handler published to a queue group the
  // broker had paused. Until it is resumed the pool holds no credit and
  // starts nothing (what it took in waits here, within ack_wait).
  bool downstream_paused_ = false;
  std::string paused_topic_;
  std::uint64_t pause_episode_ = 0; // probes of an earlier pause lapse
  clock::time_point paused_since_{};
};

} // namespace plexus::detail
