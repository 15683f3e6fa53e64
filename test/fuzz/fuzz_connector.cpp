// SPDX-License-Identifier: Apache-2.0
// Fuzz target: a client connector's core (connector_core.hpp) driven through
// the unit tests' rig (a model of its shell and socket) from random input
// sequences: publishes plain and confirmed (msg ids from a small set, so
// some repeat), requests, ACKs of this session and of an earlier one, a
// socket with or without room, a broker that welcomes, confirms, refuses,
// pings, says BYE, forgets the session (108), drops messages (112),
// pauses and resumes groups (flow control), refuses a confirmed publish
// with 103 (sent again) or vanishes, replies, handlers that return late,
// time passing.
//
// Invariants, after every step: each confirm handler and each request
// handler runs at most once; a CONFIRM settles every publish of its msg id
// taken before it; the confirm window's slots in use are the core's
// unconfirmed entries; a request is answered by its deadline; the session
// number is never 0; on every link HELLO is the first frame, and nothing
// but HELLO goes out before WELCOME; an ACK goes out only in the session of
// the delivery it settles; outbox envelopes written or dropped never exceed
// those taken. At the end (close, write, finish): every request answered,
// every outbox envelope written or dropped (flush() returns).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "check.hpp"
#include "connector_rig.hpp"

using namespace plexus;
using namespace std::chrono_literals;

namespace {

using plexus::fuzz::input;
using plexus::test::connector_rig;

struct model {
  connector_rig r;
  std::vector<int> confirm_calls;                   // per confirm handler
  std::map<std::string, std::vector<std::size_t>> by_id; // msg id -> its handlers
  std::vector<int> reply_calls;                     // per request
  std::map<std::uint64_t, plexus::test::connector_time> deadlines;
  plexus::test::connector_time ticked{}; // the last tick's time
  std::uint64_t next_request = 1;
  std::size_t checked = 0; // frames of r.out already checked
  std::size_t dials_seen = 0;
  // The broker's view: a HELLO it may answer, a session it welcomed.
  bool hello_on_link = false, awaiting_welcome = false, welcome_on_link = false;
  std::uint16_t session = 0, last_session = 0; // the core's now, and before

  void check_frames() {
    if (r.dialed.size() != dials_seen) { // a new link since the last look
      dials_seen = r.dialed.size();
      hello_on_link = awaiting_welcome = welcome_on_link = false;
    }
    for (; checked < r.out.size(); ++checked) {
      auto& w = r.out[checked];
      if (!hello_on_link) PLEXUS_FUZZ_CHECK(w.kind == wire::op::hello);
      if (w.kind == wire::op::hello) {
        hello_on_link = awaiting_welcome = true;
        welcome_on_link = false; // a new session's HELLO
        continue;
      }
      PLEXUS_FUZZ_CHECK(welcome_on_link);
      if (w.kind == wire::op::ack) PLEXUS_FUZZ_CHECK(w.seq >> 32 == r.core.session());
    }
  }

  void check() {
    PLEXUS_FUZZ_CHECK(r.core.session() != 0);
    PLEXUS_FUZZ_CHECK(r.slots == r.core.unconfirmed());
    PLEXUS_FUZZ_CHECK(r.finished <= r.taken_counted);
    for (auto n : confirm_calls) PLEXUS_FUZZ_CHECK(n <= 1);
    for (auto n : reply_calls) PLEXUS_FUZZ_CHECK(n <= 1);
    for (auto& [id, at] : deadlines)
      if (at <= ticked) PLEXUS_FUZZ_CHECK(reply_calls[id] == 1);
    check_frames();
    if (r.core.session() != session) {
      last_session = session;
      session = r.core.session();
    }
  }

  void advance(std::chrono::milliseconds dt) {
    r.advance(dt);
    ticked = r.now;
  }

  void welcome() {
    if (!r.socket || !awaiting_welcome) return;
    awaiting_welcome = false;
    welcome_on_link = true;
    r.welcome("b1", {"tcp://c:3"});
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{data, size};
  model m;
  m.reply_calls.push_back(0); // ids start at 1
  m.r.start();
  m.ticked = m.r.now;
  m.check();
  static const char* ids[] = {"m0", "m1", "m2", "m3"};
  for (int step = 0; step < 400 && !in.done(); ++step) {
    auto op = in.byte() % 18;
    auto arg = in.byte();
    auto& r = m.r;
    switch (op) {
      case 0: r.take(connector_rig::pub("t", "p")); break;
      case 1: {
        auto k = m.confirm_calls.size();
        m.confirm_calls.push_back(0);
        std::string id = ids[arg % 4];
        m.by_id[id].push_back(k);
        r.take(connector_rig::confirmed("t", id, [&m, k](std::uint32_t) { ++m.confirm_calls[k]; }));
        break;
      }
      case 2: {
        auto id = m.next_request++;
        m.reply_calls.push_back(0);
        auto timeout = std::chrono::milliseconds{(arg % 16) * 100 + 1};
        m.deadlines[id] = r.now + timeout;
        r.take(r.request(id, timeout, [&m, id](reply) { ++m.reply_calls[id]; }));
        break;
      }
      case 3: { // an ACK of this session's delivery, or of the one before
        auto session = (arg & 1) ? r.core.session() : m.last_session;
        r.take(connector_rig::ack(std::uint64_t{session} << 32 | arg, session));
        break;
      }
      case 4: r.write(); break;
      case 5: r.room = arg & 1; break;
      case 6: m.welcome(); break;
      case 7: { // the broker confirms an id (it may never have seen it)
        wire::header h;
        h.kind = wire::op::confirm;
        std::string id = ids[arg % 4];
        h.msg_id = id;
        h.code = arg & 0x10 ? 104 : 0; // (103 is sent again: case 17)
        if (!r.core.in_session()) break;
        r.hear(h);
        for (auto k : m.by_id[id]) PLEXUS_FUZZ_CHECK(m.confirm_calls[k] == 1);
        break;
      }
      case 8: {
        if (!r.core.in_session()) break;
        wire::header h;
        h.kind = wire::op::err;
        std::string id, inbox;
        switch (arg % 4) {
          case 0: h.code = 105; id = ids[(arg >> 2) % 4]; break;
          case 1: h.code = 100; inbox = "_INBOX.n1." + std::to_string((arg >> 2) % m.next_request); break;
          case 2: h.code = 112; h.count = arg; break;
          case 3: h.code = 108; m.awaiting_welcome = m.welcome_on_link = false; break; // it forgot us
        }
        h.msg_id = id;
        h.reply_to = inbox;
        r.hear(h);
        if (!id.empty())
          for (auto k : m.by_id[id]) PLEXUS_FUZZ_CHECK(m.confirm_calls[k] == 1);
        break;
      }
      case 9: {
        if (!r.core.in_session()) break;
        wire::header h;
        h.kind = arg & 1 ? wire::op::ping : wire::op::pong;
        r.hear(h);
        break;
      }
      case 10: {
        if (!r.socket) break;
        wire::header h;
        h.kind = wire::op::bye;
        r.hear(h);
        break;
      }
      case 11: r.core.link_lost(); break;
      case 12: m.advance(std::chrono::milliseconds{arg * 10}); break;
      case 13: {
        if (m.next_request == 1) break;
        message_view v;
        auto id = "_INBOX.n1." + std::to_string(arg % m.next_request);
        v.topic = id;
        v.payload = "a";
        r.core.reply_arrived(v);
        r.carry_out();
        break;
      }
      case 14:
        if (!r.core.in_session()) break;
        r.core.heard(r.now);
        r.now += std::chrono::milliseconds{arg * 10};
        r.core.handler_returned(1, r.now);
        r.carry_out();
        break;
      case 15: m.advance(1ms); break;
      case 16: { // flow control: the broker pauses or resumes a group
        if (!r.core.in_session()) break;
        wire::header h;
        h.kind = arg & 1 ? wire::op::pause : wire::op::resume;
        h.topic = arg & 2 ? ">" : "t";
        r.hear(h);
        PLEXUS_FUZZ_CHECK(r.paused == r.core.paused()); // the shell's gate knows
        break;
      }
      case 17: { // a confirm saying 103: sent again later, not settled now
        if (!r.core.in_session()) break;
        wire::header h;
        h.kind = wire::op::confirm;
        std::string id = ids[arg % 4];
        h.msg_id = id;
        h.code = 103;
        r.hear(h);
        break;
      }
    }
    m.check();
  }
  auto& r = m.r;
  r.core.close();
  r.write();
  r.core.finish();
  r.carry_out();
  m.check();
  PLEXUS_FUZZ_CHECK(r.finished == r.taken_counted);
  for (std::size_t id = 1; id < m.reply_calls.size(); ++id) PLEXUS_FUZZ_CHECK(m.reply_calls[id] == 1);
  return 0;
}
