// SPDX-License-Identifier: Apache-2.0
#include "handshakes.hpp"

namespace plexus::broker {

void handshake_gate::forget_old(clock::time_point now) {
  while (!open_.empty() && now - open_.front() > horizon_) open_.pop_front();
}

bool handshake_gate::accepted(clock::time_point now) {
  forget_old(now);
  if (cap_ != 0 && open_.size() >= cap_) {
    ++refused_;
    ++owed_;
    return false;
  }
  open_.push_back(now);
  return true;
}

void handshake_gate::finished(bool failed, clock::time_point now) {
  forget_old(now);
  if (failed && owed_ > 0) { // most likely a refused one's end: not one we admitted
    --owed_;
    return;
  }
  ++(failed ? failed_ : succeeded_);
  // Which admitted one ended is not said; the count is what matters.
  if (!open_.empty()) open_.pop_front();
}

std::size_t handshake_gate::in_progress(clock::time_point now) {
  forget_old(now);
  return open_.size();
}

} // namespace plexus::broker
