// SPDX-License-Identifier: Apache-2.0
#include "autoscaler.hpp"

#include <algorithm>
#include <cmath>

namespace plexus::detail {

autoscaler::autoscaler(const scale_options& o) : o_(o) {
  o_.max = std::max(o_.max, o_.min);
  if (!(o_.target > 0)) o_.target = 1.0;
  o_.panic_window = std::min(o_.panic_window, o_.stable_window);
}

double autoscaler::average(clock::duration window, clock::time_point now) const {
  std::uint64_t sum = 0;
  std::size_t n = 0;
  for (auto it = samples_.rbegin(); it != samples_.rend() && now - it->first < window; ++it) {
    sum += it->second;
    ++n;
  }
  return n ? static_cast<double>(sum) / static_cast<double>(n) : 0.0;
}

autoscaler::decision autoscaler::sample(std::uint32_t current, std::uint32_t demand,
                                        clock::time_point now) {
  last_ = now;
  samples_.emplace_back(now, demand);
  while (!samples_.empty() && now - samples_.front().first >= o_.stable_window) samples_.pop_front();
  if (demand > 0) {
    last_demand_ = now;
    seen_demand_ = true;
  }
  auto want = [&](double avg) {
    return static_cast<std::uint32_t>(std::min<double>(std::ceil(avg / o_.target), o_.max));
  };
  auto stable = want(average(o_.stable_window, now));
  // Down only to the most wanted over the last panic window (Knative's
  // scale-down delay): a load hovering at n.0 would flap n <-> n+1.
  wanted_.emplace_back(now, stable);
  while (wanted_.size() > 1 && now - wanted_.front().first >= o_.panic_window) wanted_.pop_front();
  if (stable < current)
    for (auto& w : wanted_) stable = std::max(stable, w.second);
  auto panic = want(average(o_.panic_window, now));

  decision d;
  // A burst: the short window wants panic_threshold times what runs. Scale
  // up at once, and hold (never down) until a stable window without one.
  if (panic > 0 && static_cast<double>(panic) >= o_.panic_threshold * static_cast<double>(std::max(current, 1u)))
    panic_until_ = now + o_.stable_window;
  if (panic_until_ > now) {
    d.instances = std::max({current, panic, stable});
    d.why = "burst";
  } else {
    d.instances = stable;
    d.why = stable > current ? "load" : "steady";
  }
  // Idle: down to zero only after idle_grace without any demand; until
  // then, one instance stays warm.
  if (d.instances == 0 && (!seen_demand_ || now - last_demand_ < o_.idle_grace) && current > 0) {
    d.instances = 1;
    d.why = "steady";
  }
  if (d.instances == 0) d.why = "idle";
  if (d.instances < o_.min) {
    d.instances = o_.min;
    d.why = "min";
  }
  if (d.instances > o_.max) {
    d.instances = o_.max;
    d.why = "max";
  }
  return d;
}

} // namespace plexus::detail
