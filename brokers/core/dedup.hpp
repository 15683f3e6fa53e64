// SPDX-License-Identifier: Apache-2.0
#pragma once

// The dedup window: message ids seen within `window`, each scoped to its
// publisher (see dedup_key), at most `max_entries` of them and at most
// `max_bytes` of keys and bookkeeping, oldest evicted first. A re-sent
// message inside the window is dropped and confirmed again instead of
// delivered twice.
//
// An entry keeps an id and an outcome, never a payload: while its message
// is in flight it points at it (a weak pointer, to move the CONFIRM to a
// publisher that failed over), and settling lets go of it. A weak pointer
// kept longer would pin the message's whole allocation, payload included,
// for the length of the window.

#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core.hpp"

namespace plexus::broker {

struct message;

/// The dedup key of a message: its publisher's scope (no NUL inside), a
/// NUL, then the msg id. Two publishers that number their ids alike never
/// meet here. Writes into `out` (reused) and returns it.
inline std::string_view dedup_key(std::string_view scope, std::string_view msg_id,
                                  std::string& out) {
  out.assign(scope);
  out += '\0';
  out += msg_id;
  return out;
}

class dedup_window {
public:
  struct entry {
    time_point at{};
    std::weak_ptr<message> msg; // only while deliveries are unsettled
    status outcome = status::ok;
    bool settled = false;
    // Settled without reaching anyone (no interest, overloaded, expired,
    // peer lost): a re-send is a new attempt, not a duplicate.
    bool undelivered = false;
  };

  /// What one entry costs besides its key: the hash node, the entry, the
  /// order queue's pointer (measured with glibc on x86-64, rounded up).
  static constexpr std::size_t entry_overhead = 128;

  dedup_window(milliseconds window, std::size_t max_entries, std::size_t max_bytes)
    : window_(window), max_entries_(max_entries), max_bytes_(max_bytes) {}

  /// The entry of a message seen (and not undelivered), or null.
  [[nodiscard]] entry* find(std::string_view key) {
    auto it = entries_.find(key);
    return it == entries_.end() || it->second.undelivered ? nullptr : &it->second;
  }

  /// Remembers `key`; returns how many older entries it evicted before
  /// their window ended (a re-send of one of those would be delivered
  /// again: a duplicate, never a loss).
  std::size_t insert(std::string_view key, time_point at, std::weak_ptr<message> msg) {
    auto cost = key.size() + entry_overhead;
    if (max_entries_ == 0 || cost > max_bytes_) return 0;
    if (auto it = entries_.find(key); it != entries_.end()) { // an undelivered one again
      it->second = entry{at, std::move(msg), status::ok, false, false};
      return 0;
    }
    std::size_t evicted = 0;
    for (; !order_.empty() && (entries_.size() >= max_entries_ || bytes_ + cost > max_bytes_);
         ++evicted)
      evict_oldest();
    auto it = entries_.try_emplace(std::string{key}).first;
    it->second = entry{at, std::move(msg), status::ok, false, false};
    order_.push_back(&it->first);
    bytes_ += cost;
    return evicted;
  }

  /// Remembers `key` as settled already with `outcome` (a message the
  /// store gave back, first kept `at`): one lookup, no message to point at.
  std::size_t insert_settled(std::string_view key, time_point at, status outcome) {
    auto cost = key.size() + entry_overhead;
    if (max_entries_ == 0 || cost > max_bytes_) return 0;
    std::size_t evicted = 0;
    for (; !order_.empty() && (entries_.size() >= max_entries_ || bytes_ + cost > max_bytes_);
         ++evicted)
      evict_oldest();
    auto [it, fresh] = entries_.try_emplace(std::string{key});
    it->second = entry{at, {}, outcome, true, false};
    if (fresh) {
      order_.push_back(&it->first);
      bytes_ += cost;
    }
    return evicted;
  }

  /// The message of `e` reached its outcome: keep the outcome, let go of
  /// the message.
  static void settle(entry& e, status outcome, bool undelivered) {
    e.settled = true;
    e.outcome = outcome;
    e.undelivered = undelivered;
    e.msg.reset();
  }

  void expire(time_point now) {
    while (!order_.empty() && entries_.at(*order_.front()).at + window_ <= now) evict_oldest();
  }

  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

private:
  void evict_oldest() {
    auto it = entries_.find(*order_.front());
    order_.pop_front();
    bytes_ -= it->first.size() + entry_overhead;
    entries_.erase(it);
  }

  // Not noexcept on purpose: libstdc++ then keeps each key's hash in its
  // node (as it does for std::hash<std::string>), so a rehash or a walk
  // down a bucket does not hash every key again.
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  milliseconds window_;
  std::size_t max_entries_, max_bytes_;
  std::size_t bytes_ = 0;
  std::unordered_map<std::string, entry, string_hash, std::equal_to<>> entries_;
  std::deque<const std::string*> order_; // keys of entries_, oldest first (node-stable)
};

} // namespace plexus::broker
