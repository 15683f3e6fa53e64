// SPDX-License-Identifier: Apache-2.0
#include "drop_core.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <cassert>
#include <tuple>
#include <utility>

#include <sodium.h>

#include "plexus/wire.hpp"

namespace plexus::actors::detail {

void drop_core::seen(const std::string& name) {
  if (auto it = files_.find(name); it != files_.end()) {
    if (it->second.phase != file_phase::queued) it->second.again = true;
    return;
  }
  files_.emplace(name, entry{});
  queue_.push_back(name);
}

void drop_core::listed(std::vector<listed_file> files) {
  std::sort(files.begin(), files.end(), [](const listed_file& a, const listed_file& b) {
    return std::tie(a.mtime_ns, a.name) < std::tie(b.mtime_ns, b.name);
  });
  for (auto& f : files)
    if (!files_.contains(f.name)) seen(f.name); // one in flight is no news
}

std::vector<drop_step> drop_core::next(drop_clock::time_point now) {
  std::vector<drop_step> steps;
  for (auto& [name, e] : files_) {
    bool due = e.retry_at <= now;
    if (e.phase == file_phase::ready && due) {
      e.phase = file_phase::publishing;
      e.token = next_token_++;
      ++e.attempt;
      steps.push_back({.kind = drop_step::publish, .name = name, .token = e.token,
                       .msg_id = drop_msg_id(drop_, e.id_base, e.attempt)});
    } else if (e.phase == file_phase::move_wait && due) {
      e.phase = file_phase::moving;
      e.token = next_token_++;
      steps.push_back({.kind = drop_step::move, .name = name, .token = e.token, .to = e.to, .reason = e.reason});
    }
  }
  while (!queue_.empty() && in_flight_ < limits_.max_in_flight) {
    auto name = std::move(queue_.front());
    queue_.pop_front();
    auto& e = files_.at(name);
    assert(e.phase == file_phase::queued);
    e.phase = file_phase::reading;
    e.token = next_token_++;
    ++in_flight_;
    steps.push_back({.kind = drop_step::read, .name = std::move(name), .token = e.token});
  }
  return steps;
}

void drop_core::read(const std::string& name, std::uint64_t token, read_outcome r, std::string payload,
                     std::string base, std::uint64_t size, std::int64_t mtime_ns, const std::string& why) {
  auto it = files_.find(name);
  if (it == files_.end() || it->second.token != token || it->second.phase != file_phase::reading) return;
  auto& e = it->second;
  switch (r) {
    case read_outcome::gone: return finish(name);
    case read_outcome::failed:
      e.phase = file_phase::move_wait;
      e.retry_at = {};
      return send_to(e, destination::failed, "not published: cannot read it: " + why + "\n");
    case read_outcome::ok:
      e.phase = file_phase::ready;
      e.retry_at = {};
      e.payload = std::move(payload);
      e.id_base = std::move(base);
      e.size = size;
      e.mtime_ns = mtime_ns;
      return;
  }
}

verdict drop_core::confirmed(const std::string& name, std::uint64_t token, std::uint32_t code,
                             drop_clock::time_point now) {
  auto it = files_.find(name);
  if (it == files_.end() || it->second.token != token || it->second.phase != file_phase::publishing)
    return {};
  auto& e = it->second;
  verdict v{verdict::ignored, {}, e.attempt};
  const auto* info = find_status(code);
  bool retry = code == code_of(status::no_interest) ||
               (code != code_of(status::dead_lettered) && info && info->retryable);
  if (code == 0) {
    v.kind = verdict::done;
    e.phase = file_phase::move_wait;
    e.retry_at = {};
    send_to(e, destination::done, {});
  } else if (retry) {
    v.kind = verdict::retry;
    v.delay = backoff(e.attempt);
    e.phase = file_phase::ready;
    e.retry_at = now + v.delay;
  } else {
    v.kind = verdict::failed;
    e.phase = file_phase::move_wait;
    e.retry_at = {};
    send_to(e, destination::failed, reason_of(code, topic_, drop_msg_id(drop_, e.id_base, e.attempt)));
  }
  return v;
}

void drop_core::moved(const std::string& name, std::uint64_t token, move_outcome m,
                      drop_clock::time_point now) {
  auto it = files_.find(name);
  if (it == files_.end() || it->second.token != token || it->second.phase != file_phase::moving) return;
  auto& e = it->second;
  switch (m) {
    case move_outcome::moved:
    case move_outcome::gone: return finish(name);
    case move_outcome::changed: // a new version: published as one
      forget(name);
      return seen(name);
    case move_outcome::failed:
      e.phase = file_phase::move_wait;
      e.retry_at = now + backoff(++e.move_tries);
      return;
  }
}

void drop_core::retry_now(drop_clock::time_point now) {
  for (auto& [name, e] : files_)
    if (e.phase == file_phase::ready || e.phase == file_phase::move_wait) e.retry_at = std::min(e.retry_at, now);
}

std::optional<drop_clock::time_point> drop_core::next_wake() const {
  std::optional<drop_clock::time_point> at;
  for (auto& [name, e] : files_)
    if (e.phase == file_phase::ready || e.phase == file_phase::move_wait)
      if (!at || e.retry_at < *at) at = e.retry_at;
  return at;
}

std::optional<file_phase> drop_core::phase(const std::string& name) const {
  auto it = files_.find(name);
  if (it == files_.end()) return std::nullopt;
  return it->second.phase;
}

const std::string& drop_core::payload(const std::string& name) const {
  static const std::string none;
  auto it = files_.find(name);
  return it == files_.end() ? none : it->second.payload;
}

std::optional<listed_file> drop_core::identity(const std::string& name) const {
  auto it = files_.find(name);
  if (it == files_.end() || it->second.id_base.empty()) return std::nullopt;
  return listed_file{name, it->second.size, it->second.mtime_ns};
}

void drop_core::forget(const std::string& name) {
  auto it = files_.find(name);
  if (it == files_.end()) return;
  if (it->second.phase == file_phase::queued) std::erase(queue_, name);
  else --in_flight_;
  files_.erase(it);
}

void drop_core::finish(const std::string& name) {
  auto it = files_.find(name);
  bool again = it != files_.end() && it->second.again;
  forget(name);
  if (again) seen(name);
}

void drop_core::send_to(entry& e, destination d, std::string reason) {
  e.to = d;
  e.reason = std::move(reason);
  e.payload.clear(); // published: not needed any more
  e.payload.shrink_to_fit();
}

std::chrono::milliseconds drop_core::backoff(std::uint32_t tries) const {
  auto d = limits_.backoff_min;
  for (std::uint32_t i = 1; i < tries && d < limits_.backoff_max; ++i) d *= 2;
  return std::min(d, limits_.backoff_max);
}

bool wanted(std::string_view name, const std::string& pattern) {
  if (name.empty() || name.front() == '.' || name.ends_with(".tmp")) return false;
  if (pattern.empty()) return true;
  std::string n{name};
  return ::fnmatch(pattern.c_str(), n.c_str(), FNM_PERIOD) == 0;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char ch : bytes) {
    out += digits[ch >> 4];
    out += digits[ch & 15];
  }
  return out;
}

std::string id_base(std::string_view name, std::uint64_t size, std::int64_t mtime_ns) {
  std::string key{name};
  key += '\n';
  key += std::to_string(size);
  key += '\n';
  key += std::to_string(mtime_ns);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  return to_hex({reinterpret_cast<const char*>(digest), 16});
}

std::string drop_msg_id(std::string_view drop, std::string_view base, std::uint32_t attempt) {
  std::string id{drop};
  if (!id.empty()) id += ':';
  id += base;
  if (attempt > 1) id += "#" + std::to_string(attempt);
  return id;
}

std::string clash_name(const std::string& name, unsigned n) {
  auto dot = name.rfind('.');
  auto suffix = "." + std::to_string(n);
  if (dot == std::string::npos || dot == 0) return name + suffix;
  return name.substr(0, dot) + suffix + name.substr(dot);
}

std::string reason_of(std::uint32_t code, std::string_view topic, std::string_view msg_id) {
  const auto* info = find_status(code);
  std::string text = std::to_string(code) + " " + (info ? std::string{info->name} : "error") + ": " +
                     status_text(code) + "\n";
  if (!topic.empty()) text += "topic: " + std::string{topic} + "\n";
  if (!msg_id.empty()) text += "msg id: " + std::string{msg_id} + "\n";
  return text;
}

} // namespace plexus::actors::detail
