// SPDX-License-Identifier: Apache-2.0
#pragma once

// One encoded envelope on its way from a caller's thread to the broker,
// and what the connector must remember about it (a confirm's handler, a
// request's deadline). The outbox carries them to the I/O thread, the
// connector core queues and writes them.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "plexus/client.hpp"

namespace plexus::detail {

/// What only confirmed publishes and requests carry.
struct envelope_extras {
  std::string msg_id; // confirmed PUBs: the key for CONFIRM
  client::confirm_handler on_confirm;
  client::reply_handler on_reply;
  std::uint64_t request_id = 0;
  std::chrono::steady_clock::time_point request_deadline{};
  std::uint32_t unkept_retries = 0; // CONFIRMs that said 115 or 116 so far
};

/// One encoded envelope: header and payload in one buffer, plus what the
/// I/O thread must remember about it.
struct envelope {
  wire::op kind = wire::op::pub;
  std::uint32_t header_size = 0;
  std::string bytes; // the encoded header, then the payload (PUB only)
  bool counted = false; // came through the outbox: counts for flush()
  std::uint16_t session = 0; // ACK/NACK: the session of the delivery they settle
  std::unique_ptr<envelope_extras> extras;

  [[nodiscard]] bool settles() const noexcept {
    return kind == wire::op::ack || kind == wire::op::nack;
  }
  [[nodiscard]] std::string_view header() const noexcept { return {bytes.data(), header_size}; }
  [[nodiscard]] std::string_view payload() const noexcept {
    return std::string_view{bytes}.substr(header_size);
  }
  [[nodiscard]] envelope copy() const {
    envelope e;
    e.kind = kind;
    e.header_size = header_size;
    e.bytes = bytes;
    return e;
  }
};

/// The calling thread's buffer for its next envelope, when it has one:
/// push() hands it one the I/O thread has sent and given back (see take).
/// A thread that keeps publishing reuses buffers; one allocated per publish
/// and freed on the I/O thread took malloc's slow path on both threads.
inline thread_local std::optional<std::string> spare_envelope_buffer;

/// An empty buffer for a new envelope: the thread's spare, else a new one.
inline std::string envelope_buffer() {
  if (!spare_envelope_buffer) return {};
  auto b = std::move(*spare_envelope_buffer);
  spare_envelope_buffer.reset();
  b.clear();
  return b;
}

/// The envelope of header `h` (and `payload`, for the ops that carry one),
/// in the thread's spare buffer when it has one.
inline envelope make_envelope(const wire::header& h, std::string_view payload = {}) {
  envelope e;
  e.kind = h.kind;
  e.bytes = envelope_buffer();
  bool with_payload = wire::carries_payload(h.kind);
  e.bytes.reserve(64 + h.topic.size() + h.reply_to.size() + h.headers.raw().size()
                  + h.traceparent.size() + h.msg_id.size() + (with_payload ? payload.size() : 0));
  wire::encode_header(h, e.bytes);
  e.header_size = static_cast<std::uint32_t>(e.bytes.size());
  if (with_payload) e.bytes.append(payload);
  return e;
}

} // namespace plexus::detail
