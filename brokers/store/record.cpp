// SPDX-License-Identifier: Apache-2.0
#include "record.hpp"

#include <cassert>

#include "crc32c.hpp"

namespace plexus::broker::store {

namespace {

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }

void put_u16(std::string& out, std::uint16_t v) {
  for (int i = 0; i < 2; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

template <class T>
T get_le(const char* p) noexcept {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(static_cast<T>(static_cast<unsigned char>(p[i])) << (8 * i));
  return v;
}

// Reserves the record header, returns where it starts; seal() fills it in
// once the payload follows.
std::size_t open_record(std::string& out) {
  auto at = out.size();
  out.append(record_header_size, '\0');
  return at;
}

void seal(std::string& out, std::size_t at) {
  auto payload = std::string_view{out}.substr(at + record_header_size);
  auto len = static_cast<std::uint32_t>(payload.size());
  auto crc = crc32c(payload);
  for (std::size_t i = 0; i < 4; ++i) {
    out[at + i] = static_cast<char>((len >> (8 * i)) & 0xFFu);
    out[at + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFFu);
  }
}

} // namespace

void encode_file_header(std::string& out) {
  out += file_magic;
  put_u32(out, format_version);
  put_u32(out, 0);
}

void encode_message(std::string& out, std::uint64_t id, std::string_view group,
                    std::string_view body) {
  assert(group.size() <= max_group_size);
  out.reserve(out.size() + message_record_size(group.size(), body.size()));
  auto at = open_record(out);
  put_u8(out, static_cast<std::uint8_t>(record_kind::message));
  put_u64(out, id);
  put_u16(out, static_cast<std::uint16_t>(group.size()));
  out += group;
  out += body;
  seal(out, at);
}

void encode_ack(std::string& out, std::uint64_t id) {
  auto at = open_record(out);
  put_u8(out, static_cast<std::uint8_t>(record_kind::ack));
  put_u64(out, id);
  seal(out, at);
}

void encode_ack_range(std::string& out, std::uint64_t first, std::uint32_t count) {
  auto at = open_record(out);
  put_u8(out, static_cast<std::uint8_t>(record_kind::ack_range));
  put_u64(out, first);
  put_u32(out, count);
  seal(out, at);
}

header_status check_file_header(std::string_view bytes) noexcept {
  if (bytes.size() < file_header_size) return header_status::truncated;
  if (bytes.substr(0, file_magic.size()) != file_magic) return header_status::bad_magic;
  if (get_le<std::uint32_t>(bytes.data() + 8) != format_version) return header_status::bad_version;
  return header_status::ok;
}

std::string_view to_string(header_status s) noexcept {
  switch (s) {
    case header_status::ok: return "ok";
    case header_status::truncated: return "truncated file header";
    case header_status::bad_magic: return "not a store segment (bad magic)";
    case header_status::bad_version: return "unknown format version";
  }
  return "?";
}

std::string_view to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::none: return "none";
    case stop_reason::end: return "end";
    case stop_reason::truncated: return "truncated";
    case stop_reason::bad_crc: return "bad crc";
    case stop_reason::bad_length: return "bad length";
    case stop_reason::bad_kind: return "bad kind";
  }
  return "?";
}

std::optional<record> decoder::next() noexcept {
  if (stopped_ != stop_reason::none) return std::nullopt;
  auto left = bytes_.size() - offset_;
  if (left == 0) return stop(stop_reason::end);
  if (left < record_header_size) return stop(stop_reason::truncated);
  const char* p = bytes_.data() + offset_;
  auto len = get_le<std::uint32_t>(p);
  auto crc = get_le<std::uint32_t>(p + 4);
  if (len == 0 || len > max_record_) return stop(stop_reason::bad_length);
  if (left - record_header_size < len) return stop(stop_reason::truncated);
  auto payload = bytes_.substr(offset_ + record_header_size, len);
  if (crc32c(payload) != crc) return stop(stop_reason::bad_crc);

  record r;
  r.offset = offset_;
  r.size = record_header_size + len;
  const char* q = payload.data();
  switch (static_cast<record_kind>(static_cast<std::uint8_t>(q[0]))) {
    case record_kind::message: {
      if (len < 1 + 8 + 2) return stop(stop_reason::bad_length);
      r.kind = record_kind::message;
      r.id = get_le<std::uint64_t>(q + 1);
      auto group_len = get_le<std::uint16_t>(q + 9);
      if (std::size_t{len} - 11 < group_len) return stop(stop_reason::bad_length);
      r.group = payload.substr(11, group_len);
      r.body = payload.substr(11 + std::size_t{group_len});
      break;
    }
    case record_kind::ack:
      if (len != 1 + 8) return stop(stop_reason::bad_length);
      r.kind = record_kind::ack;
      r.id = get_le<std::uint64_t>(q + 1);
      break;
    case record_kind::ack_range:
      if (len != 1 + 8 + 4) return stop(stop_reason::bad_length);
      r.kind = record_kind::ack_range;
      r.id = get_le<std::uint64_t>(q + 1);
      r.count = get_le<std::uint32_t>(q + 9);
      break;
    default: return stop(stop_reason::bad_kind);
  }
  offset_ += r.size;
  return r;
}

} // namespace plexus::broker::store
