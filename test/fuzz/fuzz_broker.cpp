// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the broker core fed sequences of frames from several
// connections, with clock ticks, disconnects and a transport that takes
// only part of what is queued. Half the steps are raw bytes through the
// codec (as the server does), half are well-formed envelopes built from
// the input, so the fuzzer reaches groups, acks, redelivery and dead letters.
// Invariants: no crash or UB; every output encodes to a frame that decodes;
// queues stay within their bounds.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "check.hpp"
#include "core.hpp"
#include "plexus/wire.hpp"

using namespace plexus;
using namespace std::chrono_literals;

namespace {

using plexus::fuzz::input;

constexpr std::array<const char*, 8> patterns{"a", "a.b", "a.*", "a.>", ">", "$DLQ.>", "b.c", "*.c"};
constexpr std::array<const char*, 5> topics{"a", "a.b", "a.c", "b.c", "_INBOX.n.1"};
constexpr std::array<wire::op, 16> kinds{
  wire::op::hello, wire::op::sub, wire::op::unsub, wire::op::pub, wire::op::ack,
  wire::op::nack, wire::op::credit, wire::op::ping, wire::op::bye, wire::op::msg,
  wire::op::pause, // the broker's to send: a client's is a protocol violation
  // the mesh: a connection may turn out to be a peer broker's link
  wire::op::peer_hello, wire::op::interest_add, wire::op::interest_remove, wire::op::fwd,
  wire::op::confirm_relay};

constexpr std::string_view fuzz_secret = "the fuzzer's cluster secret";

wire::header structured(input& in, std::string& storage, std::string& proof) {
  wire::header h;
  h.kind = kinds[in.byte() % kinds.size()];
  auto b = in.byte();
  h.sid = 1 + (b & 3);
  h.node = "n";
  h.topic = wire::carries_payload(h.kind) ? topics[(b >> 2) % topics.size()]
                                          : patterns[(b >> 2) % patterns.size()];
  auto c = in.byte();

  if (c & 2) h.ack = wire::ack_mode::explicit_ack;
  h.credit = (c >> 2) & 7;
  h.max_deliver = 1 + ((c >> 5) & 3);
  auto d = in.byte();
  if (c & 1) h.queue = (d & 2) ? "h" : "g"; // "g" is the durable; "h" a plain group (flow control)
  h.seq = 1 + (d & 15);
  h.action = static_cast<wire::nack_action>((d >> 4) % 3);
  h.delay_ms = (d >> 6) * 100;
  auto e = in.byte();
  if (e & 1) {
    storage = "id" + std::to_string(e >> 1 & 7);
    h.msg_id = storage;
    if (e & 16) h.flags = wire::flag_confirm;
  }
  if (e & 32) h.reply_to = "_INBOX.n.1";
  if (e & 64) h.deadline_ns = 1'700'000'000'000'000'000ull + (e & 128 ? 10'000'000'000ull : 0);
  h.ack_wait_ms = 200;
  if (h.kind == wire::op::hello && (d & 1)) h.flags = wire::flag_flow_control; // PAUSE/RESUME
  if (h.kind == wire::op::peer_hello) {
    h.node = (b & 1) ? "peer" : "broker"; // "broker": the core itself (a self link)
    h.delivery = 1 + (d & 3);             // the hello's number
    h.seq = 1 + (e & 1);                  // the incarnation: 2 is a restart
    // Mostly the proof a peer gives; sometimes a forged one, refused.
    proof = broker::peer_hello_proof(fuzz_secret, h.node, h.seq, h.delivery);
    if (c & 128) proof[0] = static_cast<char>(proof[0] ^ 1);
    h.auth = proof;
  }
  if (h.kind == wire::op::fwd) h.delivery = d & 3;
  return h;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  broker::config cfg;
  cfg.max_pending_msgs = 32;
  cfg.max_pending_bytes = 64 * 1024;
  cfg.group_queue_msgs = 16;
  cfg.error_budget = 6;
  cfg.dedup_entries = 16;
  cfg.heartbeat = 100ms;
  cfg.stats_interval = 500ms;
  cfg.limits.max_payload_bytes = 4096;
  cfg.limits.max_batch_bytes = 16 * 1024;
  cfg.cluster_secret = std::string{fuzz_secret};
  // A durable queue on some of the topics; the fuzzer's group "g" is it.
  cfg.durables = {{"g", {"a.*", "b.>"}, 8, 2048, std::chrono::milliseconds{3000}, {}}};
  broker::core core{cfg};
  broker::time_point now{std::chrono::seconds{1'700'000'000}};
  core.tick(now);
  // The store as the core sees it: appends come with increasing ids, an
  // ack names a live one; what is appended is made durable at once.
  std::set<std::uint64_t> live;
  std::uint64_t last_append = 0;
  auto apply_store = [&] {
    for (auto& op : core.take_store_ops()) {
      if (op.op == broker::store_op::kind::append) {
        PLEXUS_FUZZ_CHECK((op.id > last_append) && "store ids did not increase");
        last_append = op.id;
        live.insert(op.id);
      } else {
        PLEXUS_FUZZ_CHECK((live.erase(op.id) == 1) && "an ack for an id not live in the store");
      }
    }
    core.stored(last_append, now);
    PLEXUS_FUZZ_CHECK((live.size() <= 8) && "a durable kept more than max_msgs");
  };
  input in{data, size};
  std::vector<wire::entry> batch;
  std::string storage, proof, encoded, check_bytes, shell_bytes;
  constexpr std::size_t conns = 4;

  auto flush = [&](std::size_t budget) {
    core.flush([&](broker::conn_id, std::span<const broker::output> outs) {
      auto n = std::min(budget, outs.size());
      for (std::size_t i = 0; i < n; ++i) {
        check_bytes.clear();
        wire::encode_header(outs[i].header(), check_bytes);
        wire::header back;
        auto err = wire::decode_header(check_bytes, {}, back);
        PLEXUS_FUZZ_CHECK((err.ok()) && "the core produced an envelope that does not decode");
        PLEXUS_FUZZ_CHECK((back.kind == outs[i].kind) && "op changed in the round trip");
        shell_bytes.clear();
        outs[i].encode_header(shell_bytes);
        PLEXUS_FUZZ_CHECK((shell_bytes == check_bytes)
                          && "the shell's encoding is not encode_header's");
      }
      return n;
    });
    (void)core.take_closed();
    (void)core.take_gone();
  };

  while (!in.done()) {
    auto step = in.byte();
    broker::conn_id c = 1 + (step & 3);
    switch ((step >> 2) & 7) {
      case 0: { // raw bytes as one header frame (+ a payload frame)
        auto head = in.bytes(in.byte());
        auto body = in.bytes(in.byte() & 31);
        std::array<std::string_view, 2> frames{head, body};
        wire::entry e;
        auto n = (step & 32) ? 2u : 1u;
        auto err = wire::decode_message(std::span{frames.data(), n}, cfg.limits, e);
        if (err) core.reject(c, err, now);
        else core.receive(c, e, now);
        break;
      }
      case 1: { // raw bytes as a batch frame
        auto frame = in.bytes(in.byte() * 2u);
        auto err = wire::decode_batch(frame, cfg.limits, batch);
        if (err) core.reject(c, err, now);
        else for (auto& e : batch) core.receive(c, e, now);
        break;
      }
      case 2:
        now += std::chrono::milliseconds{in.byte() * 8};
        core.tick(now);
        break;
      case 3:
        if (step & 32) core.dial(c, now); // the shell dialed a seed on c
        else core.disconnected(c, now);
        break;
      case 4:
        apply_store();
        flush(in.byte() & 7);
        break;
      default: { // a well-formed envelope, through the codec
        auto h = structured(in, storage, proof);
        encoded.clear();
        wire::encode_header(h, encoded);
        std::array<std::string_view, 2> frames{encoded, "payload"};
        wire::entry e;
        auto n = wire::carries_payload(h.kind) ? 2u : 1u;
        auto err = wire::decode_message(std::span{frames.data(), n}, cfg.limits, e);
        PLEXUS_FUZZ_CHECK((err.ok()) && "a well-formed envelope did not decode");
        core.receive(c, e, now);
        break;
      }
    }
    auto g = core.current();
    // Each queue may exceed its bound by the BYE and one control reply.
    PLEXUS_FUZZ_CHECK((g.pending_msgs <= (conns + 1) * (cfg.max_pending_msgs + 2)) && "outbound queues grew past their bound");
    PLEXUS_FUZZ_CHECK((g.group_queued <= 8 * cfg.group_queue_msgs) && "group queues grew past their bound");
    PLEXUS_FUZZ_CHECK((g.dedup_entries <= cfg.dedup_entries) && "dedup window grew past its bound");
    for (auto& cs : core.connections()) // paused at most once per group
      PLEXUS_FUZZ_CHECK((cs.paused <= g.groups) && "a connection paused twice on a group");
  }
  core.shutdown(now);
  apply_store();
  flush(~std::size_t{0});
  return 0;
}
