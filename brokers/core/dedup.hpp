// SPDX-License-Identifier: Apache-2.0
#pragma once

// The dedup window: msg ids seen within `window` (and at most `max_entries`
// of them, oldest evicted first). A re-sent message inside the window is
// dropped and confirmed again instead of delivered twice.

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core.hpp"

namespace plexus::broker {

struct message;

class dedup_window {
public:
  struct entry {
    time_point at{};
    std::weak_ptr<message> msg; // alive while deliveries are unsettled
    status outcome = status::ok;
    bool settled = false;
    // Settled without reaching anyone (no interest, overloaded, expired,
    // peer lost): a re-send is a new attempt, not a duplicate.
    bool undelivered = false;
  };

  dedup_window(milliseconds window, std::size_t max_entries)
    : window_(window), max_entries_(max_entries) {}

  /// The entry of a message seen (and not undelivered), or null.
  [[nodiscard]] entry* find(std::string_view id) {
    auto it = entries_.find(id);
    return it == entries_.end() || it->second.undelivered ? nullptr : &it->second;
  }

  void insert(std::string_view id, time_point at, std::weak_ptr<message> msg) {
    if (max_entries_ == 0) return;
    while (entries_.size() >= max_entries_) evict_oldest();
    auto [it, fresh] = entries_.try_emplace(std::string{id});
    it->second = entry{at, std::move(msg), status::ok, false};
    if (fresh) order_.push_back(&it->first);
  }

  void expire(time_point now) {
    while (!order_.empty() && entries_.at(*order_.front()).at + window_ <= now) evict_oldest();
  }

  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

private:
  void evict_oldest() {
    auto it = entries_.find(*order_.front());
    order_.pop_front();
    entries_.erase(it);
  }

  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };

  milliseconds window_;
  std::size_t max_entries_;
  std::unordered_map<std::string, entry, string_hash, std::equal_to<>> entries_;
  std::deque<const std::string*> order_; // keys of entries_, oldest first (node-stable)
};

} // namespace plexus::broker
