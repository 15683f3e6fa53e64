// SPDX-License-Identifier: Apache-2.0
// The timer's actor: arms CAF delayed messages for the schedule's next
// fire (read from the wall clock), publishes each fire confirmed with a
// shared msg id, and keeps the last fire time on disk for catch_up.
#include "plexus/actors/timer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/response_promise.hpp>
#include <caf/result.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>

#include "actor_support.hpp"
#include "plexus/actor.hpp"
#include "plexus/wire.hpp"

namespace plexus::actors {

namespace {

using namespace std::chrono;

using wake_atom = caf::atom_constant<caf::atom("tmr_wake")>;
using confirm_atom = caf::atom_constant<caf::atom("tmr_conf")>;
using retry_atom = caf::atom_constant<caf::atom("tmr_retry")>;
using write_atom = caf::atom_constant<caf::atom("tmr_write")>;
using stop_atom = caf::atom_constant<caf::atom("tmr_stop")>;

// Long waits are armed in slices: a step of the wall clock is seen within one.
constexpr milliseconds max_slice = minutes{1};
constexpr std::uint32_t max_attempts = 4;
constexpr milliseconds first_retry{250};
constexpr std::size_t max_name = 40, max_msg_id = 64; // wire::limits::max_msg_id_bytes

struct config {
  timer_options o;
  schedule sched;
  std::string who;        // "<service>.timer-<name>", for the log
  std::string state_path; // empty: none kept
};

instant wall_now() { return time_point_cast<milliseconds>(system_clock::now()); }

std::int64_t ms_of(instant t) { return t.time_since_epoch().count(); }

using detail::log_line;

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// tmp + fsync + rename + fsync of the directory: after a crash the file
// holds the old time or the new one, never a torn line.
std::optional<std::string> write_last_fire(const std::string& path, instant t) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_text("open " + tmp);
  auto line = std::to_string(ms_of(t)) + " " + iso8601_utc(t) + "\n";
  std::size_t done = 0;
  while (done < line.size()) {
    auto n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto why = errno_text("write " + tmp);
      ::close(fd);
      return why;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto why = errno_text("fsync " + tmp);
    ::close(fd);
    return why;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_text("rename to " + path);
  auto dir = std::filesystem::path{path}.parent_path().string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno_text("open " + dir);
  bool synced = ::fsync(dfd) == 0;
  auto why = synced ? std::string{} : errno_text("fsync " + dir);
  ::close(dfd);
  if (!synced) return why;
  return std::nullopt;
}

std::optional<instant> read_last_fire(const config& c) {
  std::error_code ec;
  if (!std::filesystem::exists(c.state_path, ec)) return std::nullopt; // a first start
  std::ifstream in{c.state_path};
  long long ms = 0;
  if (in >> ms) return instant{milliseconds{ms}};
  log_line("warn", c.who, "-", "state file " + c.state_path + " holds no fire time: ignored");
  return std::nullopt;
}

// Writes the state file off the scheduler's threads (detached: a thread of
// its own), in the order the times come.
caf::behavior state_writer(caf::event_based_actor* self, std::string path, std::string who) {
  auto failing = std::make_shared<bool>(false);
  return {
    [=](write_atom, std::int64_t ms) {
      auto why = write_last_fire(path, instant{milliseconds{ms}});
      if (why && !*failing)
        log_line("error", who, "-", "cannot keep the last fire time (said once until it works): " + *why);
      if (!why && *failing) log_line("info", who, "-", "the last fire time is kept again in " + path);
      *failing = why.has_value();
    },
    [self](stop_atom) { self->quit(); },
  };
}

// One instance's state: fresh after a restart.
struct timer_state {
  std::shared_ptr<const config> cfg;
  caf::event_based_actor* self = nullptr;
  client* conn = nullptr;
  caf::actor writer;                  // null: no state file
  instant cursor{};                   // fires up to here are handled
  std::optional<instant> next;        // the fire armed; none: never again
  instant kept{};                     // the latest time sent to the writer
  bool said_no_interest = false;
  std::multimap<std::string, caf::response_promise> fire_now; // by base id
};
using state_ptr = std::shared_ptr<timer_state>;

// A trigger id too long to quote, shortened the same way on every node.
std::string fnv1a_hex(std::string_view s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string attempt_id(const std::string& base, std::uint32_t attempt) {
  return attempt == 1 ? base : base + "#" + std::to_string(attempt);
}

void publish_fire(const state_ptr& st, instant t, bool scheduled, const std::string& base,
                  std::uint32_t attempt) {
  auto id = attempt_id(base, attempt);
  publish_options po;
  po.msg_id = id;
  po.shared_id = true;
  auto addr = st->self->address();
  auto ms = ms_of(t);
  // Runs on the client's I/O thread: only a message goes back to the actor.
  st->conn->publish_confirmed(st->cfg->o.topic, encode_payload(make_tick(st->cfg->o.name, t)),
                              [addr, base, ms, attempt, scheduled](std::uint32_t code) {
                                if (auto a = caf::actor_cast<caf::actor>(addr))
                                  caf::anon_send(a, confirm_atom::value, base, ms, attempt, scheduled, code);
                              },
                              po);
}

void fire(const state_ptr& st, instant t) { publish_fire(st, t, true, fire_id(st->cfg->o.name, t), 1); }

void arm(const state_ptr& st, instant now) {
  if (!st->next) {
    log_line("warn", st->cfg->who, "-", "the schedule never fires again");
    return;
  }
  auto wait = std::clamp<milliseconds>(*st->next - now, milliseconds{0}, max_slice);
  st->self->delayed_send(st->self, wait, wake_atom::value);
}

void fire_plan_of(const state_ptr& st, const fire_plan& plan, std::optional<instant> last) {
  const auto& o = st->cfg->o;
  if (plan.missed > 0)
    log_line("info", st->cfg->who, "-",
             std::to_string(plan.missed) + " fire(s) missed since " + iso8601_utc(*last) + ": " +
               std::to_string(plan.missed - plan.dropped) + " caught up (missed " +
               (o.missed.action == on_missed::skip ? "skip" : "catch_up") + ")");
  for (auto t : plan.due) fire(st, t);
}

// After fires up to `now` are handled: the next one after both the cursor
// and now (a wall clock set back never fires a time twice).
void advance(const state_ptr& st, instant now) {
  st->cursor = std::max(st->cursor, now);
  st->next = st->cfg->sched.next_after(st->cursor);
  arm(st, now);
}

void start(const state_ptr& st) {
  auto now = wall_now();
  std::optional<instant> last;
  if (st->writer) last = read_last_fire(*st->cfg);
  fire_plan_of(st, plan_fires(st->cfg->sched, last, now, st->cfg->o.missed), last);
  st->kept = last.value_or(instant{});
  st->cursor = last ? std::max(*last, now) : now;
  advance(st, now);
}

void on_wake(const state_ptr& st) {
  auto now = wall_now();
  if (!st->next) return;
  if (now < *st->next) return arm(st, now); // a slice of a long wait, or the clock went back
  // The fire waited for goes out however late the wake; later ones as the policy says.
  fire(st, *st->next);
  fire_plan_of(st, plan_fires(st->cfg->sched, *st->next, now, st->cfg->o.missed), st->next);
  advance(st, now);
}

void settle(const state_ptr& st, const std::string& base, instant t, bool scheduled,
            std::optional<std::string> failure) {
  if (scheduled) {
    if (st->writer && t > st->kept) {
      st->kept = t;
      st->self->send(st->writer, write_atom::value, ms_of(t));
    }
    return;
  }
  auto [from, to] = st->fire_now.equal_range(base);
  for (auto it = from; it != to; ++it)
    it->second.deliver(failure ? result<void>{reject{*failure}} : result<void>{});
  st->fire_now.erase(from, to);
}

void on_confirm(const state_ptr& st, const std::string& base, std::int64_t ms, std::uint32_t attempt,
                bool scheduled, std::uint32_t code) {
  const auto& c = *st->cfg;
  instant t{milliseconds{ms}};
  if (code == code_of(status::no_interest) && !st->said_no_interest) {
    st->said_no_interest = true;
    log_line("info", c.who, attempt_id(base, attempt),
             "nobody subscribes to " + c.o.topic + ": fires count as fired (said once)");
  }
  if (code == 0 || code == code_of(status::no_interest)) return settle(st, base, t, scheduled, {});
  const auto* info = find_status(code);
  if (info && info->retryable && attempt < max_attempts) {
    st->self->delayed_send(st->self, first_retry * (1u << (attempt - 1)), retry_atom::value, base, ms,
                           attempt + 1, scheduled);
    return;
  }
  auto why = "tick for " + iso8601_utc(t) + " not published after " + std::to_string(attempt) +
             " attempt(s): " + status_text(code) + " (" + std::to_string(code) + ")";
  log_line("error", c.who, attempt_id(base, attempt), why);
  settle(st, base, t, scheduled, why);
}

caf::behavior timer_actor(caf::event_based_actor* self, client& conn, std::shared_ptr<const config> cfg) {
  auto st = std::make_shared<timer_state>();
  st->cfg = std::move(cfg);
  st->self = self;
  st->conn = &conn;
  if (!st->cfg->state_path.empty()) {
    st->writer = self->spawn<caf::detached>(state_writer, st->cfg->state_path, st->cfg->who);
    self->attach_functor([w = st->writer] { caf::anon_send(w, stop_atom::value); });
  }
  start(st);
  return {
    [st](wake_atom) { on_wake(st); },
    [st](confirm_atom, const std::string& base, std::int64_t ms, std::uint32_t attempt, bool scheduled,
         std::uint32_t code) { on_confirm(st, base, ms, attempt, scheduled, code); },
    [st](retry_atom, const std::string& base, std::int64_t ms, std::uint32_t attempt, bool scheduled) {
      publish_fire(st, instant{milliseconds{ms}}, scheduled, base, attempt);
    },
    // Fire now: a tick for this moment; the trigger is answered once it is confirmed.
    [st](handle_atom, const envelope& e) -> caf::result<result<void>> {
      auto now = wall_now();
      auto base = st->cfg->o.name + "@now.";
      auto suffix = e.msg_id.empty() ? std::to_string(ms_of(now)) : e.msg_id;
      if (base.size() + suffix.size() + 2 > max_msg_id) // room for "#4"
        suffix = fnv1a_hex(suffix);
      base += suffix;
      auto rp = st->self->make_response_promise();
      st->fire_now.emplace(base, rp);
      publish_fire(st, now, false, base, 1);
      return rp;
    },
  };
}

std::shared_ptr<const config> check(const service& svc, timer_options o) {
  std::string problems;
  auto bad = [&](const std::string& what) { detail::add_problem(problems, what); };
  if (!detail::valid_token(o.name, max_name))
    bad("name \"" + o.name + "\": 1-40 letters, digits, '_' or '-'");
  if (auto why = detail::topic_problem("topic", o.topic); !why.empty()) bad(why);
  time_zone zone;
  try {
    zone = time_zone::locate(o.zone);
  } catch (const std::invalid_argument& e) {
    bad(std::string{"zone: "} + e.what());
  }
  std::optional<schedule> sched;
  try {
    sched.emplace(o.schedule, zone);
    if (!sched->next_after(wall_now())) bad("schedule \"" + o.schedule + "\": never fires");
  } catch (const std::invalid_argument& e) {
    bad(std::string{"schedule: "} + e.what());
  }
  std::string path;
  if (o.state_dir.empty()) {
    if (o.missed.action == on_missed::catch_up)
      bad("missed: catch_up needs state_dir (where the last fire time is kept across restarts; "
          "without it nothing tells what was missed)");
  } else {
    std::error_code ec;
    std::filesystem::create_directories(o.state_dir, ec);
    if (ec) bad("state_dir \"" + o.state_dir + "\": " + ec.message());
    else if (::access(o.state_dir.c_str(), W_OK) != 0) bad(errno_text("state_dir \"" + o.state_dir + "\""));
    path = timer_state_path(o.state_dir, o.name);
  }
  if (!problems.empty()) throw std::invalid_argument("timer \"" + o.name + "\": " + problems);
  auto who = svc.name() + "." + function_name(o.name);
  return std::make_shared<const config>(config{std::move(o), std::move(*sched), std::move(who), std::move(path)});
}

} // namespace

std::string function_name(std::string_view name) { return "timer-" + std::string{name}; }

std::string fire_now_topic(std::string_view name) { return "_plexus.timer." + std::string{name}; }

std::string timer_state_path(std::string_view state_dir, std::string_view name) {
  return (std::filesystem::path{state_dir} / (std::string{name} + ".last")).string();
}

function_builder& add_timer(service& svc, timer_options o) {
  auto cfg = check(svc, std::move(o));
  return detail::add_singleton(svc, function_name(cfg->o.name), fire_now_topic(cfg->o.name),
                               [cfg](caf::event_based_actor* self, client& conn) {
                                 return timer_actor(self, conn, cfg);
                               });
}

} // namespace plexus::actors
