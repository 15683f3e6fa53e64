// SPDX-License-Identifier: Apache-2.0
// Scenario `codec`: the envelope codec on a typical PUB (20-char topic,
// 16-byte msg id, traceparent, 3 user headers, deadline, confirm flag,
// 128 B payload), with msgpack-c's object-tree unpack as the baseline.

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include "plexus/wire.hpp"
#include "scenario.hpp"
#include "timing.hpp"

namespace plexus::bench {

namespace {

namespace wire = plexus::wire;

constexpr std::string_view plexus_system = "plexus";
constexpr std::string_view object_system = "msgpack-object";
constexpr std::string_view metric = "ns_per_msg";
constexpr std::string_view unit = "ns";
constexpr std::size_t payload_bytes = 128;
constexpr std::size_t batch_size = 64;

const std::vector<std::pair<std::string_view, std::string_view>> user_headers{
  {"content-type", "application/json"}, {"tenant", "acme-eu"}, {"priority", "high"}};

// ---------------------------------------------------------------- the envelope

/// The envelope under test and the storage its views point into; neither
/// copied nor moved, so the views stay valid.
class envelope {
public:
  envelope() : msg_id_(16, '\0'), payload_(payload_bytes, '\0') {
    for (std::size_t i = 0; i < msg_id_.size(); ++i)
      msg_id_[i] = static_cast<char>(0xa0 + i); // binary, as a UUID would be
    for (std::size_t i = 0; i < payload_.size(); ++i)
      payload_[i] = static_cast<char>('a' + i % 26);
    h.kind = wire::op::pub;
    h.topic = "orders.eu.de.shipped";
    h.msg_id = msg_id_;
    h.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    h.headers = wire::pack_string_map(user_headers, headers_);
    h.deadline_ns = 1'767'225'600'000'000'000; // 2026-01-01T00:00:00Z
    h.flags = wire::flag_confirm;
    wire::encode_header(h, frame_);
  }
  envelope(const envelope&) = delete;
  envelope& operator=(const envelope&) = delete;

  wire::header h;
  [[nodiscard]] std::string_view payload() const noexcept { return payload_; }
  /// The encoded header frame.
  [[nodiscard]] std::string_view frame() const noexcept { return frame_; }

private:
  std::string msg_id_;
  std::string payload_;
  std::string headers_;
  std::string frame_;
};

/// What both decoders must get out of the envelope, folded into one number
/// per message: summed over a loop it proves every decode read the fields.
struct decoded_fields {
  std::string_view topic;
  std::string_view msg_id;
  std::string_view traceparent;
  std::string_view payload;
  std::uint64_t deadline_ns = 0;
  std::uint32_t flags = 0;
  std::uint32_t header_count = 0;
};

// Last byte of a string, 0 if empty: reading it means the bytes were there.
std::uint64_t last_byte(std::string_view s) noexcept {
  return s.empty() ? 0 : static_cast<unsigned char>(s.back());
}

std::uint64_t fingerprint(const decoded_fields& d) noexcept {
  return d.deadline_ns + d.flags + d.topic.size() + (d.msg_id.size() << 8) +
         (std::uint64_t{d.traceparent.size()} << 16) + (std::uint64_t{d.header_count} << 24) +
         (std::uint64_t{d.payload.size()} << 32) + (last_byte(d.topic) << 40) +
         (last_byte(d.msg_id) << 48) + (last_byte(d.traceparent) << 56);
}

decoded_fields fields_of(const wire::header& h, std::string_view payload) noexcept {
  return {h.topic, h.msg_id, h.traceparent, payload, h.deadline_ns, h.flags, h.headers.size()};
}

[[noreturn]] void fail(std::string_view case_name, std::string_view what) {
  throw std::runtime_error(std::string{case_name} + ": " + std::string{what});
}

[[noreturn]] void decode_failed(std::string_view case_name, const wire::decode_error& e) {
  fail(case_name, "plexus decode failed: " + wire::to_string(e));
}

/// Checks a decode against the envelope field by field, once, before timing.
void expect_envelope(std::string_view case_name, const envelope& env, const wire::header& h,
                     std::string_view payload) {
  if (h.kind != wire::op::pub || h.topic != env.h.topic || h.msg_id != env.h.msg_id ||
      h.traceparent != env.h.traceparent || h.deadline_ns != env.h.deadline_ns ||
      h.flags != env.h.flags || h.headers.items() != user_headers || payload != env.payload())
    fail(case_name, "plexus decoded fields that differ from the envelope");
}

/// A loop's checksum must be its call count times one message's fingerprint.
void expect_checksum(std::string_view case_name, std::uint64_t sum, std::uint64_t messages,
                     std::uint64_t expected_each) {
  if (messages == 0 || sum != messages * expected_each)
    fail(case_name, "checksum mismatch: a decode returned wrong fields");
}

// ---------------------------------------------------------------- plexus cases

void encode_case(const run_config& cfg, recorder& rec, const envelope& env) {
  constexpr std::string_view name = "encode-128B";
  std::string frame, body; // reused: the two frames a sender hands to the socket
  auto samples = ns_per_op(cfg, 1, [&] {
    frame.clear();
    wire::encode_header(env.h, frame);
    body.assign(env.payload());
    do_not_optimize(frame.data());
    do_not_optimize(body.data());
  });
  if (frame != env.frame() || body != env.payload()) fail(name, "encoder output changed");
  rec.add(name, plexus_system, metric, unit, samples);
}

void decode_case(const run_config& cfg, recorder& rec, const envelope& env,
                 const wire::limits& lim) {
  constexpr std::string_view name = "decode-128B";
  const std::array<std::string_view, 2> frames{env.frame(), env.payload()};
  wire::entry out;
  std::uint64_t sum = 0, calls = 0;
  auto samples = ns_per_op(cfg, 1, [&] {
    if (auto e = wire::decode_message(frames, lim, out)) [[unlikely]] decode_failed(name, e);
    sum += fingerprint(fields_of(out.h, out.payload));
    ++calls;
    do_not_optimize(sum);
  });
  expect_envelope(name, env, out.h, out.payload);
  expect_checksum(name, sum, calls, fingerprint(fields_of(env.h, env.payload())));
  rec.add(name, plexus_system, metric, unit, samples);
}

void roundtrip_case(const run_config& cfg, recorder& rec, const envelope& env,
                    const wire::limits& lim) {
  constexpr std::string_view name = "roundtrip-128B";
  std::string frame, body;
  wire::entry out;
  std::uint64_t sum = 0, calls = 0;
  auto samples = ns_per_op(cfg, 1, [&] {
    frame.clear();
    wire::encode_header(env.h, frame);
    body.assign(env.payload());
    const std::array<std::string_view, 2> frames{frame, body};
    if (auto e = wire::decode_message(frames, lim, out)) [[unlikely]] decode_failed(name, e);
    sum += fingerprint(fields_of(out.h, out.payload));
    ++calls;
    do_not_optimize(sum);
  });
  expect_envelope(name, env, out.h, out.payload);
  expect_checksum(name, sum, calls, fingerprint(fields_of(env.h, env.payload())));
  rec.add(name, plexus_system, metric, unit, samples);
}

void batch_case(const run_config& cfg, recorder& rec, const envelope& env,
                const wire::limits& lim) {
  constexpr std::string_view name = "batch-64x128B";
  std::string frame;
  std::vector<wire::entry> entries;
  std::uint64_t sum = 0, messages = 0;
  auto samples = ns_per_op(cfg, batch_size, [&] {
    frame.clear();
    wire::batch_writer w{frame};
    w.begin();
    for (std::size_t i = 0; i < batch_size; ++i) w.add(env.h, env.payload());
    w.finish();
    if (auto e = wire::decode_batch(frame, lim, entries)) [[unlikely]] decode_failed(name, e);
    if (entries.size() != batch_size) [[unlikely]] fail(name, "decode_batch lost entries");
    for (const auto& en : entries) sum += fingerprint(fields_of(en.h, en.payload));
    messages += entries.size();
    do_not_optimize(sum);
  });
  for (const auto& en : entries) expect_envelope(name, env, en.h, en.payload);
  expect_checksum(name, sum, messages, fingerprint(fields_of(env.h, env.payload())));
  rec.add(name, plexus_system, metric, unit, samples);
}

// ---------------------------------------------------------------- baseline

// msgpack-c's object tree: unpack into a zone (strings copied, its
// default), then read the fields a receiver needs, checking their types.

std::string_view as_string(const msgpack::object& o) {
  if (o.type == msgpack::type::STR) return {o.via.str.ptr, o.via.str.size};
  if (o.type == msgpack::type::BIN) return {o.via.bin.ptr, o.via.bin.size};
  throw std::runtime_error("msgpack-object: expected a string");
}

std::uint64_t as_uint(const msgpack::object& o) {
  if (o.type != msgpack::type::POSITIVE_INTEGER)
    throw std::runtime_error("msgpack-object: expected an unsigned integer");
  return o.via.u64;
}

std::uint32_t count_string_pairs(const msgpack::object& o) {
  if (o.type != msgpack::type::MAP) throw std::runtime_error("msgpack-object: expected a map");
  std::span<const msgpack::object_kv> pairs{o.via.map.ptr, o.via.map.size};
  for (const auto& kv : pairs) {
    as_string(kv.key);
    as_string(kv.val);
  }
  return o.via.map.size;
}

decoded_fields read_object(const msgpack::object& o) {
  if (o.type != msgpack::type::MAP) throw std::runtime_error("msgpack-object: not a map");
  decoded_fields d;
  std::span<const msgpack::object_kv> pairs{o.via.map.ptr, o.via.map.size};
  for (const auto& kv : pairs) {
    switch (static_cast<wire::field>(as_uint(kv.key))) {
      case wire::field::version: as_uint(kv.val); break;
      case wire::field::op: as_uint(kv.val); break;
      case wire::field::topic: d.topic = as_string(kv.val); break;
      case wire::field::msg_id: d.msg_id = as_string(kv.val); break;
      case wire::field::traceparent: d.traceparent = as_string(kv.val); break;
      case wire::field::headers: d.header_count = count_string_pairs(kv.val); break;
      case wire::field::deadline: d.deadline_ns = as_uint(kv.val); break;
      case wire::field::flags: d.flags = static_cast<std::uint32_t>(as_uint(kv.val)); break;
      default: break;
    }
  }
  return d;
}

/// The same bounds as plexus's decoder limits, as msgpack-c expresses them.
msgpack::unpack_limit object_limits(const wire::limits& lim) {
  return msgpack::unpack_limit{lim.max_array_size, lim.max_map_size, lim.max_text_bytes,
                               lim.max_msg_id_bytes, 0, lim.max_depth};
}

void object_decode_case(const run_config& cfg, recorder& rec, const envelope& env,
                        const wire::limits& lim) {
  constexpr std::string_view name = "decode-128B";
  const auto limit = object_limits(lim);
  const auto frame = env.frame();
  const auto payload = env.payload();
  std::uint64_t sum = 0, calls = 0;
  // The fields are views into the handle's zone: read them while it lives.
  auto decode_and_read = [&] {
    auto handle = msgpack::unpack(frame.data(), frame.size(), nullptr, nullptr, limit);
    auto d = read_object(handle.get());
    d.payload = payload; // the payload frame, taken as is, as decode_message does
    return fingerprint(d);
  };
  auto samples = ns_per_op(cfg, 1, [&] {
    sum += decode_and_read();
    ++calls;
    do_not_optimize(sum);
  });
  expect_checksum(name, sum, calls, fingerprint(fields_of(env.h, env.payload())));
  rec.add(name, object_system, metric, unit, samples);
}

// ---------------------------------------------------------------- scenario

void run_codec(const run_config& cfg, recorder& rec) {
  const envelope env;
  const wire::limits lim;
  rec.note("envelope: PUB header " + std::to_string(env.frame().size()) + " B + payload " +
           std::to_string(env.payload().size()) + " B");
  encode_case(cfg, rec, env);
  decode_case(cfg, rec, env, lim);
  object_decode_case(cfg, rec, env, lim);
  roundtrip_case(cfg, rec, env, lim);
  batch_case(cfg, rec, env, lim);
}

const registration codec_registration{
  {"codec", "envelope encode/decode/batch vs msgpack-c object unpack", &run_codec}};

} // namespace

} // namespace plexus::bench
