// SPDX-License-Identifier: Apache-2.0
#include "supervisor.hpp"

#include <algorithm>

namespace plexus::detail {

// ---------------------------------------------------------------- backoff

backoff::backoff(std::chrono::milliseconds first, std::chrono::milliseconds initial,
                 std::chrono::milliseconds max, std::uint64_t seed)
  : first_(first), initial_(initial), max_(std::max(max, initial)), rng_(seed) {}

std::chrono::milliseconds backoff::next() {
  auto step = steps_++;
  if (step == 0) return first_;
  auto d = initial_;
  for (std::uint32_t i = 1; i < step && d < max_; ++i) d *= 2;
  d = std::min(d, max_);
  if (d.count() <= 1) return d;
  std::uniform_int_distribution<std::int64_t> jitter{d.count() / 2, d.count()};
  return std::chrono::milliseconds{jitter(rng_)};
}

// ---------------------------------------------------------------- supervisor

supervisor::supervisor(service_options opts, std::vector<restart_type> restarts, std::uint64_t seed)
  : opts_(opts), restarts_(std::move(restarts)),
    backoff_(std::chrono::milliseconds{0}, opts.backoff_initial, opts.backoff_max, seed) {}

std::vector<std::size_t> supervisor::scope(std::size_t function) const {
  std::vector<std::size_t> out;
  switch (opts_.strategy) {
    case one_for_one: break;
    case one_for_all:
      for (std::size_t i = 0; i < restarts_.size(); ++i) out.push_back(i);
      break;
    case rest_for_one:
      for (std::size_t i = function; i < restarts_.size(); ++i) out.push_back(i);
      break;
  }
  return out;
}

supervisor_plan supervisor::crashed(const crash_report& c, steady::time_point now) {
  supervisor_plan plan;
  if (escalated_) return plan; // stopped: nothing restarts until the root says so
  while (!window_.empty() && now - window_.front().first > opts_.within) window_.pop_front();
  if (c.delivery == 1 && std::none_of(window_.begin(), window_.end(),
                                      [&](const auto& e) { return e.second == c.key; }))
    window_.emplace_back(now, c.key);
  plan.intensity = static_cast<std::uint32_t>(window_.size());
  if (window_.size() > opts_.max_restarts) {
    escalated_ = true;
    plan.escalate = true;
    return plan;
  }
  plan.restart = c.function < restarts_.size() && restarts_[c.function] != temporary;
  if (plan.restart) plan.delay = backoff_.next();
  plan.recycle = scope(c.function);
  return plan;
}

supervisor_plan supervisor::exited(std::size_t function) const {
  supervisor_plan plan;
  plan.restart = !escalated_ && function < restarts_.size() && restarts_[function] == permanent;
  return plan;
}

void supervisor::succeeded() noexcept {
  window_.clear();
  backoff_.reset();
}

void supervisor::reset() noexcept {
  succeeded();
  escalated_ = false;
}

// ---------------------------------------------------------------- root

root_supervisor::root_supervisor(node_options::failure_policy policy,
                                 std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                 std::size_t services, std::uint64_t seed)
  : policy_(policy) {
  backoff_.reserve(services);
  for (std::size_t i = 0; i < services; ++i)
    backoff_.emplace_back(std::min(initial, max), std::min(initial * 2, max), max,
                          seed + i); // initial, then doubling, never past max
}

root_supervisor::decision root_supervisor::escalated(std::size_t service) {
  decision d;
  if (policy_ == node_options::failure_policy::stop_node || service >= backoff_.size()) {
    d.stop_node = true;
    return d;
  }
  d.delay = backoff_[service].next();
  d.attempt = backoff_[service].steps();
  return d;
}

void root_supervisor::recovered(std::size_t service) noexcept {
  if (service < backoff_.size()) backoff_[service].reset();
}

} // namespace plexus::detail
