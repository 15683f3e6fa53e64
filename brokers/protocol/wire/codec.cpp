// SPDX-License-Identifier: Apache-2.0
#include <array>
#include <cassert>
#include <cstring>

#include <msgpack.hpp>

#include "plexus/wire.hpp"
#include "reader.hpp"

namespace plexus::wire {

using detail::reader;
using detail::scalar;
using kind = scalar::kind;

// ---------------------------------------------------------------- per-op rules

namespace {

constexpr std::uint32_t bit(field f) { return 1u << static_cast<unsigned>(f); }

// Fields an op must carry (besides version and op). The encoder always
// writes these, even when zero; every other field only when non-zero.
constexpr std::uint32_t required(op o) noexcept {
  switch (o) {
    case op::hello: return bit(field::node);
    case op::welcome: return bit(field::node) | bit(field::heartbeat) | bit(field::max_payload);
    case op::sub: return bit(field::sid) | bit(field::topic);
    case op::unsub: return bit(field::sid);
    case op::pub: return bit(field::topic);
    case op::msg: return bit(field::sid) | bit(field::topic);
    case op::ack: return bit(field::sid) | bit(field::seq);
    case op::nack: return bit(field::sid) | bit(field::seq);
    case op::credit: return bit(field::sid) | bit(field::credit);
    case op::confirm: return bit(field::msg_id);
    case op::ping: return 0;
    case op::pong: return 0;
    case op::err: return bit(field::code);
    case op::bye: return 0;
    case op::pause: return bit(field::topic);
    case op::resume: return bit(field::topic);
    case op::peer_hello: return bit(field::node);
    case op::interest_add: return bit(field::topic);
    case op::interest_remove: return bit(field::topic);
    case op::fwd: return bit(field::topic) | bit(field::node);
    case op::confirm_relay: return bit(field::seq) | bit(field::node);
  }
  return 0;
}

bool known_op(std::uint64_t v) noexcept {
  return (v >= 1 && v <= 14) || v == 16 || v == 17 || (v >= 32 && v <= 36);
}

enum class topic_kind { none, topic, pattern };

topic_kind topic_rule(op o) noexcept {
  switch (o) {
    case op::pub: case op::msg: case op::fwd: return topic_kind::topic;
    case op::sub: case op::unsub: case op::interest_add: case op::interest_remove:
    case op::pause: case op::resume:
      return topic_kind::pattern;
    default: return topic_kind::none;
  }
}

decode_error fail(errc c, field f = field::none, topic_errc t = topic_errc::ok) noexcept {
  return {c, f, t, 0, false};
}

// Field readers. Each checks msgpack type and limits.

decode_error read_uint(reader& r, field f, std::uint64_t max, std::uint64_t& out) noexcept {
  scalar s;
  if (auto e = r.next(s); e != errc::ok) return fail(e, f);
  if (s.type != kind::uint) return fail(errc::wrong_type, f);
  if (s.u > max) return fail(errc::value_out_of_range, f);
  out = s.u;
  return {};
}

template <class T>
decode_error read_uint_as(reader& r, field f, std::uint64_t max, T& out) noexcept {
  std::uint64_t v = 0;
  auto e = read_uint(r, f, max, v);
  if (!e) out = static_cast<T>(v);
  return e;
}

decode_error read_str(reader& r, field f, std::size_t max, std::string_view& out,
                      bool allow_bin = false) noexcept {
  scalar s;
  if (auto e = r.next(s); e != errc::ok) return fail(e, f);
  if (s.type != kind::str && !(allow_bin && s.type == kind::bin))
    return fail(errc::wrong_type, f);
  if (s.s.size() > max) return fail(errc::string_too_long, f);
  out = s.s;
  return {};
}

decode_error read_string_map(reader& r, const limits& lim, string_map_view& out) noexcept {
  auto start = r.offset();
  scalar s;
  if (auto e = r.next(s); e != errc::ok) return fail(e, field::headers);
  if (s.type != kind::map) return fail(errc::wrong_type, field::headers);
  if (s.u > lim.max_headers) return fail(errc::too_many_headers, field::headers);
  if (lim.max_depth < 2) return fail(errc::too_deep, field::headers);
  for (std::uint64_t i = 0; i < s.u; ++i) {
    std::string_view k, v;
    if (auto e = read_str(r, field::headers, lim.max_header_key_bytes, k)) return e;
    if (auto e = read_str(r, field::headers, lim.max_header_value_bytes, v)) return e;
  }
  out = string_map_view{r.span(start), static_cast<std::uint32_t>(s.u)};
  return {};
}

decode_error read_string_list(reader& r, const limits& lim, string_list_view& out) noexcept {
  auto start = r.offset();
  scalar s;
  if (auto e = r.next(s); e != errc::ok) return fail(e, field::brokers);
  if (s.type != kind::array) return fail(errc::wrong_type, field::brokers);
  if (s.u > lim.max_array_size) return fail(errc::array_too_large, field::brokers);
  if (lim.max_depth < 2) return fail(errc::too_deep, field::brokers);
  for (std::uint64_t i = 0; i < s.u; ++i) {
    std::string_view v;
    if (auto e = read_str(r, field::brokers, lim.max_name_bytes, v)) return e;
  }
  out = string_list_view{r.span(start), static_cast<std::uint32_t>(s.u)};
  return {};
}

constexpr std::uint64_t u32_max = 0xffffffffu;
constexpr std::uint64_t u64_max = ~std::uint64_t{0};

decode_error read_field(reader& r, field f, const limits& lim, header& h,
                        std::uint64_t& op_value) noexcept {
  switch (f) {
    case field::version: return read_uint_as(r, f, u32_max, h.version);
    case field::op: return read_uint(r, f, u64_max, op_value);
    case field::sid: return read_uint_as(r, f, u32_max, h.sid);
    case field::topic: return read_str(r, f, lim.topic.max_bytes, h.topic);
    case field::queue: return read_str(r, f, lim.max_name_bytes, h.queue);
    case field::msg_id: return read_str(r, f, lim.max_msg_id_bytes, h.msg_id, true);
    case field::reply_to: return read_str(r, f, lim.topic.max_bytes, h.reply_to);
    case field::headers: return read_string_map(r, lim, h.headers);
    case field::deadline: return read_uint(r, f, u64_max, h.deadline_ns);
    case field::traceparent: return read_str(r, f, lim.max_name_bytes, h.traceparent);
    case field::flags: return read_uint_as(r, f, u32_max, h.flags);
    case field::seq: return read_uint(r, f, u64_max, h.seq);
    case field::delivery: return read_uint_as(r, f, u32_max, h.delivery);
    case field::credit: return read_uint_as(r, f, u32_max, h.credit);
    case field::ack_mode: return read_uint_as(r, f, 1, h.ack);
    case field::ack_wait: return read_uint_as(r, f, u32_max, h.ack_wait_ms);
    case field::max_deliver: return read_uint_as(r, f, u32_max, h.max_deliver);
    case field::action: return read_uint_as(r, f, 2, h.action);
    case field::delay: return read_uint_as(r, f, u32_max, h.delay_ms);
    case field::code: return read_uint_as(r, f, u32_max, h.code);
    case field::text: return read_str(r, f, lim.max_text_bytes, h.text);
    case field::node: return read_str(r, f, lim.max_name_bytes, h.node);
    case field::heartbeat: return read_uint_as(r, f, u32_max, h.heartbeat_ms);
    case field::brokers: return read_string_list(r, lim, h.brokers);
    case field::max_payload: return read_uint(r, f, u64_max, h.max_payload);
    case field::count: return read_uint_as(r, f, u32_max, h.count);
    case field::publisher: return read_str(r, f, lim.max_name_bytes + 32, h.publisher);
    case field::auth: return read_str(r, f, 64, h.auth, true);
    case field::user: return read_str(r, f, lim.max_name_bytes, h.user);
    default: break;
  }
  assert(false && "read_field called with a non-key field");
  return fail(errc::malformed, f);
}

// Decodes the header map at the reader's position; the reader ends after it.
// `h` must hold a default header{} (decode_batch's fresh entries do).
decode_error decode_fresh_header_at(reader& r, const limits& lim, header& h) noexcept {
  scalar s;
  if (auto e = r.next(s); e != errc::ok) return fail(e, field::frame);
  if (s.type != kind::map) return fail(errc::not_a_map, field::frame);
  if (s.u > lim.max_map_size) return fail(errc::map_too_large, field::frame);
  std::uint32_t seen = 0;
  std::uint64_t op_value = 0;
  for (std::uint64_t i = 0; i < s.u; ++i) {
    scalar key;
    if (auto e = r.next(key); e != errc::ok) return fail(e, field::key);
    if (key.type != kind::uint) return fail(errc::wrong_type, field::key);
    if (key.u >= field_count) { // a later version's field: skip it, bounded
      if (auto e = r.skip(2, lim); e != errc::ok) return fail(e, field::unknown);
      continue;
    }
    auto f = static_cast<field>(key.u);
    if (seen & bit(f)) return fail(errc::duplicate_field, f);
    seen |= bit(f);
    if (auto e = read_field(r, f, lim, h, op_value)) return e;
  }
  if (!(seen & bit(field::version))) return fail(errc::missing_field, field::version);
  if (h.version != protocol_version) return fail(errc::bad_version, field::version);
  if (!(seen & bit(field::op))) return fail(errc::missing_field, field::op);
  if (!known_op(op_value)) return fail(errc::unknown_op, field::op);
  h.kind = static_cast<op>(op_value);
  if (auto missing = required(h.kind) & ~seen) {
    for (std::size_t k = 0; k < field_count; ++k)
      if (missing & (1u << k)) return fail(errc::missing_field, static_cast<field>(k));
  }
  if (h.kind == op::pub && (h.flags & flag_confirm) && h.msg_id.empty())
    return fail(errc::missing_field, field::msg_id);
  switch (topic_rule(h.kind)) {
    case topic_kind::topic:
      if (auto t = validate_topic(h.topic, lim.topic); t != topic_errc::ok)
        return fail(errc::bad_topic, field::topic, t);
      break;
    case topic_kind::pattern:
      if (seen & bit(field::topic))
        if (auto t = validate_pattern(h.topic, lim.topic); t != topic_errc::ok)
          return fail(errc::bad_pattern, field::topic, t);
      break;
    case topic_kind::none: break;
  }
  if (!h.reply_to.empty())
    if (auto t = validate_topic(h.reply_to, lim.topic); t != topic_errc::ok)
      return fail(errc::bad_topic, field::reply_to, t);
  return {};
}

decode_error decode_header_at(reader& r, const limits& lim, header& h) noexcept {
  h = header{};
  return decode_fresh_header_at(r, lim, h);
}

} // namespace

// ---------------------------------------------------------------- decode

decode_error decode_header(std::string_view bytes, const limits& lim, header& out) noexcept {
  if (bytes.size() > lim.max_header_bytes) return fail(errc::header_too_large, field::frame);
  reader r{bytes};
  if (auto e = decode_header_at(r, lim, out)) return e;
  if (!r.at_end()) return fail(errc::trailing_bytes, field::frame);
  return {};
}

bool is_batch_frame(std::string_view frame) noexcept {
  if (frame.empty()) return false;
  auto b = static_cast<unsigned char>(frame[0]);
  return (b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd;
}

decode_error decode_message(std::span<const std::string_view> frames, const limits& lim,
                            entry& out) noexcept {
  if (frames.empty()) return fail(errc::truncated, field::frame);
  if (frames.size() > 2) return fail(errc::too_many_frames, field::frame);
  if (auto e = decode_header(frames[0], lim, out.h)) return e;
  out.payload = {};
  if (carries_payload(out.h.kind)) {
    if (frames.size() < 2) return fail(errc::missing_payload, field::payload);
    if (frames[1].size() > lim.max_payload_bytes)
      return fail(errc::payload_too_large, field::payload);
    out.payload = frames[1];
  } else if (frames.size() > 1) {
    return fail(errc::unexpected_payload, field::payload);
  }
  return {};
}

decode_error decode_batch(std::string_view frame, const limits& lim,
                          std::vector<entry>& out) noexcept {
  out.clear();
  auto result = [&]() noexcept -> decode_error {
    if (frame.size() > lim.max_batch_bytes) return fail(errc::batch_too_large, field::batch);
    reader r{frame};
    scalar s;
    if (auto e = r.next(s); e != errc::ok) return fail(e, field::batch);
    if (s.type != kind::array) return fail(errc::bad_batch, field::batch);
    if (s.u % 2 != 0 || s.u == 0) return fail(errc::bad_batch, field::batch);
    auto n = s.u / 2;
    if (n > lim.max_batch_count) return fail(errc::batch_too_many, field::batch);
    // Every entry costs at least 3 bytes; a count the frame cannot hold is a
    // lie, rejected before reserve() believes it.
    if (n > frame.size() / 3) return fail(errc::truncated, field::batch);
    try {
      out.resize(n); // default entries: their headers need no reset
    } catch (...) {
      return fail(errc::batch_too_many, field::batch);
    }
    for (std::uint64_t i = 0; i < n; ++i) {
      auto& en = out[i];
      auto start = r.offset();
      auto e = decode_fresh_header_at(r, lim, en.h);
      if (!e && r.offset() - start > lim.max_header_bytes)
        e = fail(errc::header_too_large, field::frame);
      if (!e) {
        scalar p;
        if (auto pe = r.next(p); pe != errc::ok) {
          e = fail(pe, field::payload);
        } else if (carries_payload(en.h.kind)) {
          if (p.type != kind::bin) e = fail(errc::missing_payload, field::payload);
          else if (p.s.size() > lim.max_payload_bytes)
            e = fail(errc::payload_too_large, field::payload);
          else en.payload = p.s;
        } else {
          en.payload = {};
          if (p.type != kind::nil) e = fail(errc::unexpected_payload, field::payload);
        }
      }
      if (e) {
        e.index = static_cast<std::uint32_t>(i);
        e.in_batch = true;
        return e;
      }
    }
    if (!r.at_end()) return fail(errc::trailing_bytes, field::batch);
    return {};
  }();
  if (result) out.clear();
  return result;
}

// ---------------------------------------------------------------- views

namespace {
// Calls fn(string) for each string of an encoded map or array until fn
// returns false. The bytes were validated when they were decoded.
template <class Fn>
void walk_strings(std::string_view raw, Fn&& fn) {
  reader r{raw};
  scalar s;
  if (r.next(s) != errc::ok) return;
  auto n = s.type == kind::map ? s.u * 2 : s.u;
  for (std::uint64_t i = 0; i < n; ++i) {
    scalar v;
    if (r.next(v) != errc::ok || v.type != kind::str) return;
    if (!fn(v.s)) return;
  }
}
} // namespace

std::vector<std::pair<std::string_view, std::string_view>> string_map_view::items() const {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  out.reserve(count_);
  bool key = true;
  walk_strings(raw_, [&](std::string_view s) {
    if (key) out.emplace_back(s, std::string_view{});
    else out.back().second = s;
    key = !key;
    return true;
  });
  return out;
}

std::string_view string_map_view::find(std::string_view k) const noexcept {
  std::string_view found;
  bool is_key = true;
  bool hit = false;
  walk_strings(raw_, [&](std::string_view s) {
    if (!is_key && hit) {
      found = s;
      return false;
    }
    if (is_key) hit = s == k;
    is_key = !is_key;
    return true;
  });
  return found;
}

std::vector<std::string_view> string_list_view::items() const {
  std::vector<std::string_view> out;
  out.reserve(count_);
  walk_strings(raw_, [&](std::string_view s) {
    out.push_back(s);
    return true;
  });
  return out;
}

// ---------------------------------------------------------------- encode

namespace {

struct string_sink {
  std::string& s;
  void write(const char* p, std::size_t n) { s.append(p, n); }
};

using packer = msgpack::packer<string_sink>;

// Writes into space already reserved: one resize per header instead of a
// std::string::append per msgpack token (measured: ~25% of encode time).
struct cursor_sink {
  char* p;
  void write(const char* d, std::size_t n) {
    std::memcpy(p, d, n);
    p += n;
  }
};

template <class Packer>
void pack_sv(Packer& pk, std::string_view v) {
  pk.pack_str(static_cast<std::uint32_t>(v.size()));
  pk.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
}

// Writes header fields at `at` (room reserved by the caller), each the one
// way the encoder ever writes it: a 1-byte key, then the value in msgpack's
// most compact form; a field only when its value is not zero, or when
// `required`. encode_header and the MSG fast path (encode_msg_fields,
// encode_msg_header) both write through it: the same fields give the same
// bytes. Strings and maps come back as views of where they were written
// (empty when not written).
class field_writer {
public:
  explicit field_writer(char* at) noexcept : sink_{at}, pk_{sink_} {}
  field_writer(const field_writer&) = delete; // pk_ refers to sink_
  field_writer& operator=(const field_writer&) = delete;

  [[nodiscard]] char* end() const noexcept { return sink_.p; }
  [[nodiscard]] std::uint32_t fields() const noexcept { return fields_; }

  void map(std::uint32_t n) { pk_.pack_map(n); }
  void uint(field f, std::uint64_t v, bool required) {
    if (v == 0 && !required) return;
    key(f);
    pk_.pack_uint64(v);
  }
  std::string_view str(field f, std::string_view v, bool required) {
    if (v.empty() && !required) return {};
    key(f);
    pk_.pack_str(static_cast<std::uint32_t>(v.size()));
    return body(v);
  }
  std::string_view bin(field f, std::string_view v, bool required) {
    if (v.empty() && !required) return {};
    key(f);
    pk_.pack_bin(static_cast<std::uint32_t>(v.size()));
    return body(v);
  }
  string_map_view strings(field f, const string_map_view& v, bool required) {
    if (v.empty() && !required) return {};
    key(f);
    if (v.raw().empty()) {
      pk_.pack_map(0);
      return {};
    }
    return {body(v.raw()), v.size()};
  }
  void strings(field f, const string_list_view& v, bool required) {
    if (v.empty() && !required) return;
    key(f);
    if (v.raw().empty()) pk_.pack_array(0);
    else sink_.write(v.raw().data(), v.raw().size());
  }
  /// Fields another field_writer wrote, `count` of them.
  void encoded(std::string_view bytes, std::uint32_t count) {
    sink_.write(bytes.data(), bytes.size());
    fields_ += count;
  }

private:
  void key(field f) {
    pk_.pack_uint8(static_cast<std::uint8_t>(f));
    ++fields_;
  }
  std::string_view body(std::string_view v) {
    auto* at = sink_.p;
    if (!v.empty()) sink_.write(v.data(), v.size()); // an empty view's data may be null
    return {at, v.size()};
  }

  cursor_sink sink_;
  msgpack::packer<cursor_sink> pk_;
  std::uint32_t fields_ = 0;
};

// The sizes field_writer's values take (msgpack-c's packer picks the same).
constexpr std::size_t uint_bytes(std::uint64_t v) noexcept {
  return v < 0x80 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffff ? 5 : 9;
}
constexpr std::size_t str_bytes(std::size_t n) noexcept {
  return n + (n < 32 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5);
}
constexpr std::size_t bin_bytes(std::size_t n) noexcept {
  return n + (n <= 0xff ? 2 : n <= 0xffff ? 3 : 5);
}

constexpr bool requires_field(op o, field f) noexcept { return (required(o) & bit(f)) != 0; }

} // namespace

string_map_view pack_string_map(
  const std::vector<std::pair<std::string_view, std::string_view>>& items, std::string& out) {
  auto start = out.size();
  string_sink sink{out};
  packer pk{sink};
  pk.pack_map(static_cast<std::uint32_t>(items.size()));
  for (auto& [k, v] : items) {
    pack_sv(pk, k);
    pack_sv(pk, v);
  }
  return {std::string_view{out}.substr(start), static_cast<std::uint32_t>(items.size())};
}

string_list_view pack_string_list(const std::vector<std::string_view>& items, std::string& out) {
  auto start = out.size();
  string_sink sink{out};
  packer pk{sink};
  pk.pack_array(static_cast<std::uint32_t>(items.size()));
  for (auto v : items) pack_sv(pk, v);
  return {std::string_view{out}.substr(start), static_cast<std::uint32_t>(items.size())};
}

void encode_header(const header& h, std::string& out) {
  auto must = [&](field f) { return requires_field(h.kind, f); };
  auto want = [&](field f, bool nonzero) { return nonzero || must(f); };
  // Count first: the map header comes before the fields.
  std::uint32_t n = 2;
  n += want(field::sid, h.sid != 0);
  n += want(field::topic, !h.topic.empty());
  n += want(field::queue, !h.queue.empty());
  n += want(field::msg_id, !h.msg_id.empty());
  n += want(field::reply_to, !h.reply_to.empty());
  n += want(field::headers, !h.headers.empty());
  n += want(field::deadline, h.deadline_ns != 0);
  n += want(field::traceparent, !h.traceparent.empty());
  n += want(field::flags, h.flags != 0);
  n += want(field::seq, h.seq != 0);
  n += want(field::delivery, h.delivery != 0);
  n += want(field::credit, h.credit != 0);
  n += want(field::ack_mode, h.ack != ack_mode::none);
  n += want(field::ack_wait, h.ack_wait_ms != 0);
  n += want(field::max_deliver, h.max_deliver != 0);
  n += want(field::action, h.action != nack_action::requeue);
  n += want(field::delay, h.delay_ms != 0);
  n += want(field::code, h.code != 0);
  n += want(field::text, !h.text.empty());
  n += want(field::node, !h.node.empty());
  n += want(field::heartbeat, h.heartbeat_ms != 0);
  n += want(field::brokers, !h.brokers.empty());
  n += want(field::max_payload, h.max_payload != 0);
  n += want(field::count, h.count != 0);
  n += want(field::publisher, !h.publisher.empty());
  n += want(field::auth, !h.auth.empty());
  n += want(field::user, !h.user.empty());

  // An upper bound: map header 5 bytes; per field a 1-byte key and a value
  // of at most 9 bytes (uint64) or a 5-byte string header plus the bytes.
  const std::size_t bound = 5 + 15 * std::size_t{n} + h.topic.size() + h.queue.size()
                            + h.msg_id.size() + h.reply_to.size() + h.headers.raw().size()
                            + h.traceparent.size() + h.text.size() + h.node.size()
                            + h.brokers.raw().size() + h.publisher.size() + h.auth.size()
                            + h.user.size();
  const auto start = out.size();
  out.resize(start + bound);
  field_writer w{out.data() + start};
  w.map(n);
  w.uint(field::version, h.version, true);
  w.uint(field::op, static_cast<std::uint8_t>(h.kind), true);
  w.uint(field::sid, h.sid, must(field::sid));
  w.str(field::topic, h.topic, must(field::topic));
  w.str(field::queue, h.queue, must(field::queue));
  w.bin(field::msg_id, h.msg_id, must(field::msg_id));
  w.str(field::reply_to, h.reply_to, must(field::reply_to));
  w.strings(field::headers, h.headers, must(field::headers));
  w.uint(field::deadline, h.deadline_ns, must(field::deadline));
  w.str(field::traceparent, h.traceparent, must(field::traceparent));
  w.uint(field::flags, h.flags, must(field::flags));
  w.uint(field::seq, h.seq, must(field::seq));
  w.uint(field::delivery, h.delivery, must(field::delivery));
  w.uint(field::credit, h.credit, must(field::credit));
  w.uint(field::ack_mode, static_cast<std::uint64_t>(h.ack), must(field::ack_mode));
  w.uint(field::ack_wait, h.ack_wait_ms, must(field::ack_wait));
  w.uint(field::max_deliver, h.max_deliver, must(field::max_deliver));
  w.uint(field::action, static_cast<std::uint64_t>(h.action), must(field::action));
  w.uint(field::delay, h.delay_ms, must(field::delay));
  w.uint(field::code, h.code, must(field::code));
  w.str(field::text, h.text, must(field::text));
  w.str(field::node, h.node, must(field::node));
  w.uint(field::heartbeat, h.heartbeat_ms, must(field::heartbeat));
  w.strings(field::brokers, h.brokers, must(field::brokers));
  w.uint(field::max_payload, h.max_payload, must(field::max_payload));
  w.uint(field::count, h.count, must(field::count));
  w.str(field::publisher, h.publisher, must(field::publisher));
  w.bin(field::auth, h.auth, must(field::auth));
  w.str(field::user, h.user, must(field::user));
  assert(w.fields() == n);
  assert(static_cast<std::size_t>(w.end() - out.data()) <= start + bound);
  out.resize(static_cast<std::size_t>(w.end() - out.data()));
}

std::size_t encoded_size(const msg_fields& f) noexcept {
  auto must = [](field k) { return requires_field(op::msg, k); };
  std::size_t n = 0;
  auto add = [&](field k, bool nonzero, std::size_t value_bytes) {
    if (nonzero || must(k)) n += 1 + value_bytes;
  };
  add(field::topic, !f.topic.empty(), str_bytes(f.topic.size()));
  add(field::msg_id, !f.msg_id.empty(), bin_bytes(f.msg_id.size()));
  add(field::reply_to, !f.reply_to.empty(), str_bytes(f.reply_to.size()));
  add(field::headers, !f.headers.empty(), f.headers.raw().empty() ? 1 : f.headers.raw().size());
  add(field::deadline, f.deadline_ns != 0, uint_bytes(f.deadline_ns));
  add(field::traceparent, !f.traceparent.empty(), str_bytes(f.traceparent.size()));
  return n;
}

encoded_msg_fields encode_msg_fields(msg_fields& f, char* out) {
  // In key order, between the sid and the seq: where encode_header puts them.
  auto must = [](field k) { return requires_field(op::msg, k); };
  field_writer w{out};
  f.topic = w.str(field::topic, f.topic, must(field::topic));
  f.msg_id = w.bin(field::msg_id, f.msg_id, must(field::msg_id));
  f.reply_to = w.str(field::reply_to, f.reply_to, must(field::reply_to));
  f.headers = w.strings(field::headers, f.headers, must(field::headers));
  w.uint(field::deadline, f.deadline_ns, must(field::deadline));
  f.traceparent = w.str(field::traceparent, f.traceparent, must(field::traceparent));
  assert(static_cast<std::size_t>(w.end() - out) == encoded_size(f)); // same lengths
  return {{out, static_cast<std::size_t>(w.end() - out)}, w.fields()};
}

namespace {

// A MSG header, or a MSG run's (op msg_run_op, with seq always and count).
void encode_msg_like(std::uint8_t op_value, std::uint32_t sid, const encoded_msg_fields& shared,
                     std::uint64_t seq, std::uint32_t delivery, std::uint32_t count,
                     std::string& out) {
  auto must = [](field f) { return requires_field(op::msg, f); };
  const bool run = op_value == msg_run_op;
  const auto n = 3 + shared.count + (seq != 0 || must(field::seq) || run ? 1u : 0u)
                 + (delivery != 0 || must(field::delivery) ? 1u : 0u) + (run ? 1u : 0u);
  // Map header 5 bytes, version and op 2 each, sid 6, seq 10, delivery 6,
  // count 6.
  const std::size_t bound = 37 + shared.bytes.size();
  const auto start = out.size();
  out.resize(start + bound);
  field_writer w{out.data() + start};
  w.map(n);
  w.uint(field::version, protocol_version, true);
  w.uint(field::op, op_value, true);
  w.uint(field::sid, sid, must(field::sid));
  w.encoded(shared.bytes, shared.count);
  w.uint(field::seq, seq, must(field::seq) || run);
  w.uint(field::delivery, delivery, must(field::delivery));
  if (run) w.uint(field::count, count, true);
  assert(w.fields() == n);
  out.resize(static_cast<std::size_t>(w.end() - out.data()));
}

} // namespace

void encode_msg_header(std::uint32_t sid, const encoded_msg_fields& shared, std::uint64_t seq,
                       std::uint32_t delivery, std::string& out) {
  encode_msg_like(static_cast<std::uint8_t>(op::msg), sid, shared, seq, delivery, 0, out);
}

void encode_msg_run_header(std::uint32_t sid, const encoded_msg_fields& shared,
                           std::uint64_t first_seq, std::uint32_t delivery, std::uint32_t count,
                           std::string& out) {
  encode_msg_like(msg_run_op, sid, shared, first_seq, delivery, count, out);
}

void batch_writer::begin() {
  start_ = out_.size();
  count_ = 0;
  // array32 with a placeholder count, patched by finish()
  const char head[5] = {static_cast<char>(0xdd), 0, 0, 0, 0};
  out_.append(head, sizeof head);
}

void batch_writer::add(const header& h, std::string_view payload) {
  encode_header(h, out_);
  add_payload(h.kind, payload);
}

void batch_writer::add_msg(std::uint32_t sid, const encoded_msg_fields& shared,
                           std::uint64_t seq, std::uint32_t delivery, std::string_view payload) {
  encode_msg_header(sid, shared, seq, delivery, out_);
  add_payload(op::msg, payload);
}

void batch_writer::begin_msg_run(std::uint32_t sid, const encoded_msg_fields& shared,
                                 std::uint64_t first_seq, std::uint32_t delivery,
                                 std::uint32_t count) {
  encode_msg_run_header(sid, shared, first_seq, delivery, count, out_);
  string_sink sink{out_};
  packer pk{sink};
  pk.pack_array(count);
  ++count_;
}

void batch_writer::add_run_payload(std::string_view payload) {
  string_sink sink{out_};
  packer pk{sink};
  pk.pack_bin(static_cast<std::uint32_t>(payload.size()));
  pk.pack_bin_body(payload.data(), static_cast<std::uint32_t>(payload.size()));
}

void batch_writer::add_encoded(std::string_view header_bytes, op o, std::string_view payload) {
  out_.append(header_bytes);
  add_payload(o, payload);
}

void batch_writer::add_payload(op o, std::string_view payload) {
  string_sink sink{out_};
  packer pk{sink};
  if (carries_payload(o)) {
    pk.pack_bin(static_cast<std::uint32_t>(payload.size()));
    pk.pack_bin_body(payload.data(), static_cast<std::uint32_t>(payload.size()));
  } else {
    assert(payload.empty() && "only PUB, MSG and FWD carry a payload");
    pk.pack_nil();
  }
  ++count_;
}

void batch_writer::finish() noexcept {
  auto n = static_cast<std::uint32_t>(count_ * 2);
  auto* p = out_.data() + start_ + 1;
  p[0] = static_cast<char>(n >> 24);
  p[1] = static_cast<char>(n >> 16);
  p[2] = static_cast<char>(n >> 8);
  p[3] = static_cast<char>(n);
}

} // namespace plexus::wire
