// SPDX-License-Identifier: Apache-2.0
// The file drop's actor: feeds the core (drop_core) with what the inotify
// watcher and directory scans see, runs the steps it asks for (reads and
// moves on a detached I/O actor, publishes through the node's client), and
// wakes for retries.
#include "plexus/actors/files.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/response_promise.hpp>
#include <caf/result.hpp>
#include <caf/send.hpp>
#include <caf/spawn_options.hpp>
#include <caf/timespan.hpp>
#include <sodium.h>

#include "drop_core.hpp"
#include "file_io.hpp"
#include "actor_support.hpp"
#include "plexus/actor.hpp"
#include "plexus/wire.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::actors::detail::scan_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::actors::detail::read_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::actors::detail::move_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(plexus::actors::detail::destination)

namespace plexus::actors {

namespace {

using namespace std::chrono;
using namespace detail;

using seen_atom = caf::atom_constant<caf::atom("fd_seen")>;
using lost_atom = caf::atom_constant<caf::atom("fd_lost")>;
using rescan_atom = caf::atom_constant<caf::atom("fd_rescan")>;
using confirm_atom = caf::atom_constant<caf::atom("fd_conf")>;
using wake_atom = caf::atom_constant<caf::atom("fd_wake")>;
using rewatch_atom = caf::atom_constant<caf::atom("fd_rewatch")>;
using prepare_atom = caf::atom_constant<caf::atom("fd_prep")>;
using scan_atom = caf::atom_constant<caf::atom("fd_scan")>;
using read_atom = caf::atom_constant<caf::atom("fd_read")>;
using move_atom = caf::atom_constant<caf::atom("fd_move")>;
using stop_atom = caf::atom_constant<caf::atom("fd_stop")>;

constexpr std::size_t max_name = 20; // "<name>:<32 hex>#<10 digits>" fits 64 bytes
constexpr std::uint64_t max_content_limit = 1 << 20; // a typed handler decodes strings up to 1 MiB
constexpr milliseconds rewatch_min{1000}, rewatch_max{30000};

struct config {
  file_drop_options o;
  drop_paths paths;
  std::string who; // "<service>.files-<name>", for the log
};

using detail::log_line;

// The blocking file work, on a thread of its own (detached), in order.
caf::behavior file_worker(caf::event_based_actor* self, std::shared_ptr<const config> cfg) {
  return {
    [cfg](prepare_atom) { return prepare_dirs(cfg->paths).value_or(std::string{}); },
    [cfg](scan_atom) { return scan_dir(cfg->paths, cfg->o.pattern); },
    [cfg](read_atom, const std::string& name, std::uint64_t max_payload) {
      return read_event(cfg->paths, name, cfg->o.max_content, max_payload);
    },
    [cfg](move_atom, const std::string& name, destination to, const std::string& reason, std::uint64_t size,
          std::int64_t mtime_ns) { return move_file(cfg->paths, name, to, reason, size, mtime_ns); },
    [self](stop_atom) { self->quit(); },
  };
}

// One instance's state: fresh after a restart (the directory is scanned again).
struct drop_state {
  std::shared_ptr<const config> cfg;
  caf::event_based_actor* self = nullptr;
  client* conn = nullptr;
  caf::actor io;
  std::unique_ptr<dir_watcher> watch;
  drop_core core;
  std::optional<drop_clock::time_point> armed; // the wake sent, and its generation
  std::uint64_t wake_gen = 0;
  milliseconds rewatch_delay = rewatch_min;
  bool scanning = false, scan_again = false, said_no_interest = false;
  std::vector<caf::response_promise> next_scan, this_scan; // rescan triggers
  explicit drop_state(std::shared_ptr<const config> c)
    : cfg(std::move(c)), core(cfg->o.name, cfg->o.topic, {.max_in_flight = cfg->o.max_in_flight}) {}
};
using state_ptr = std::shared_ptr<drop_state>;

void pump(const state_ptr& st);

void publish(const state_ptr& st, const drop_step& s) {
  publish_options po;
  po.msg_id = s.msg_id;
  po.shared_id = true; // a restarted node's re-publish meets the first in the dedup window
  auto addr = st->self->address();
  // Runs on the client's I/O thread (or here): only a message goes back.
  st->conn->publish_confirmed(st->cfg->o.topic, st->core.payload(s.name),
                              [addr, name = s.name, token = s.token](std::uint32_t code) {
                                if (auto a = caf::actor_cast<caf::actor>(addr))
                                  caf::anon_send(a, confirm_atom::value, name, token, code);
                              },
                              po);
}

void read(const state_ptr& st, const drop_step& s) {
  st->self->request(st->io, caf::infinite, read_atom::value, s.name, st->conn->max_payload())
    .then([st, name = s.name, token = s.token](read_result& r) {
      if (r.outcome == read_outcome::failed) log_line("error", st->cfg->who, name, r.why);
      st->core.read(name, token, r.outcome, std::move(r.payload), std::move(r.base), r.size, r.mtime_ns, r.why);
      pump(st);
    });
}

void move(const state_ptr& st, const drop_step& s) {
  auto id = st->core.identity(s.name).value_or(listed_file{});
  st->self->request(st->io, caf::infinite, move_atom::value, s.name, s.to, s.reason, id.size, id.mtime_ns)
    .then([st, s](move_result& m) {
      if (m.outcome == move_outcome::failed)
        log_line("error", st->cfg->who, s.name, "cannot move it (tried again later): " + m.why);
      else if (m.outcome == move_outcome::moved && s.to == destination::failed)
        log_line("warn", st->cfg->who, s.name, "moved to " + m.where + ": " + s.reason.substr(0, s.reason.find('\n')));
      else if (m.outcome == move_outcome::changed)
        log_line("info", st->cfg->who, s.name, "changed since it was published: published again");
      st->core.moved(s.name, s.token, m.outcome, drop_clock::now());
      pump(st);
    });
}

// Runs what the core asks for now, and arms a wake for its next retry.
void pump(const state_ptr& st) {
  auto now = drop_clock::now();
  for (auto& s : st->core.next(now)) {
    switch (s.kind) {
      case drop_step::read: read(st, s); break;
      case drop_step::publish: publish(st, s); break;
      case drop_step::move: move(st, s); break;
    }
  }
  // One wake armed at a time, for the earliest retry: an earlier retry
  // arms a new one, and the one it supersedes is ignored (its generation).
  auto at = st->core.next_wake();
  if (!at || (st->armed && *st->armed <= *at)) return;
  st->armed = *at;
  st->self->delayed_send(st->self, std::max<drop_clock::duration>(*at - now, {}), wake_atom::value,
                         ++st->wake_gen);
}

void scan(const state_ptr& st) {
  if (st->scanning) { // one listing at a time: the next starts when this one ends
    st->scan_again = true;
    return;
  }
  st->scanning = true;
  st->scan_again = false;
  st->this_scan = std::move(st->next_scan);
  st->next_scan.clear();
  st->self->request(st->io, caf::infinite, scan_atom::value).then([st](scan_result& r) {
    st->scanning = false;
    if (!r.error.empty()) log_line("error", st->cfg->who, "-", r.error);
    st->core.listed(std::move(r.files));
    for (auto& rp : st->this_scan)
      rp.deliver(r.error.empty() ? result<void>{} : result<void>{reject{r.error}});
    st->this_scan.clear();
    if (st->scan_again) scan(st);
    pump(st);
  });
}

// Prepares the directories, sets the watch, then scans: a file closed
// after the watch is seen by it, one before by the scan (or both: the
// core takes a name once).
void watch(const state_ptr& st) {
  st->self->request(st->io, caf::infinite, prepare_atom::value).then([st](std::string& problem) {
    std::string why = problem;
    if (why.empty()) {
      auto addr = st->self->address();
      auto to_self = [addr](auto... xs) {
        if (auto a = caf::actor_cast<caf::actor>(addr)) caf::anon_send(a, xs...);
      };
      st->watch = dir_watcher::start(st->cfg->paths.dir, st->cfg->o.pattern,
                                     {[to_self](std::string name) { to_self(seen_atom::value, std::move(name)); },
                                      [to_self] { to_self(rescan_atom::value); },
                                      [to_self](std::string w) { to_self(lost_atom::value, std::move(w)); }},
                                     why);
    }
    if (!st->watch) {
      log_line("error", st->cfg->who, "-",
               "cannot watch " + st->cfg->paths.dir + " (trying again in " +
                 std::to_string(st->rewatch_delay.count()) + " ms): " + why);
      st->self->delayed_send(st->self, st->rewatch_delay, rewatch_atom::value);
      st->rewatch_delay = std::min(st->rewatch_delay * 2, rewatch_max);
      return;
    }
    st->rewatch_delay = rewatch_min;
    scan(st);
  });
}

void on_confirm(const state_ptr& st, const std::string& name, std::uint64_t token, std::uint32_t code) {
  const auto& c = *st->cfg;
  auto v = st->core.confirmed(name, token, code, drop_clock::now());
  if (v.kind == verdict::done) st->said_no_interest = false;
  if (v.kind == verdict::retry && code == code_of(status::no_interest) && !st->said_no_interest) {
    st->said_no_interest = true;
    log_line("info", c.who, name,
             "nobody subscribes to " + c.o.topic + ": files stay and are published again (said once)");
  } else if (v.kind == verdict::retry && code != code_of(status::no_interest) && v.attempt == 1) {
    log_line("warn", c.who, name,
             std::string{"not published: "} + status_text(code) + " (" + std::to_string(code) +
               "): tried again with backoff");
  }
  pump(st);
}

caf::behavior drop_actor(caf::event_based_actor* self, client& conn, std::shared_ptr<const config> cfg) {
  auto st = std::make_shared<drop_state>(std::move(cfg));
  st->self = self;
  st->conn = &conn;
  st->io = self->spawn<caf::detached>(file_worker, st->cfg);
  // The watcher's thread ends (joined) with the instance, as does the worker.
  self->attach_functor([st] {
    st->watch.reset();
    caf::anon_send(st->io, stop_atom::value);
  });
  watch(st);
  return {
    [st](seen_atom, const std::string& name) {
      st->core.seen(name);
      pump(st);
    },
    [st](rescan_atom) { scan(st); },
    [st](lost_atom, const std::string& why) {
      log_line("error", st->cfg->who, "-", "stopped watching " + st->cfg->paths.dir + ": " + why);
      st->watch.reset();
      watch(st);
    },
    [st](rewatch_atom) { watch(st); },
    [st](wake_atom, std::uint64_t gen) {
      if (gen != st->wake_gen) return;
      st->armed.reset();
      pump(st);
    },
    [st](confirm_atom, const std::string& name, std::uint64_t token, std::uint32_t code) {
      on_confirm(st, name, token, code);
    },
    // A message on the rescan topic: waiting files go now, the directory
    // is listed again; ACKed once the listing is in.
    [st](handle_atom, const envelope&) -> caf::result<result<void>> {
      auto rp = st->self->make_response_promise();
      st->next_scan.push_back(rp);
      st->core.retry_now(drop_clock::now());
      scan(st);
      pump(st);
      return rp;
    },
  };
}

std::shared_ptr<const config> check(const service& svc, file_drop_options o) {
  std::string problems;
  auto bad = [&](const std::string& what) { detail::add_problem(problems, what); };
  if (!detail::valid_token(o.name, max_name)) bad("name \"" + o.name + "\": 1-20 letters, digits, '_' or '-'");
  if (auto why = detail::topic_problem("topic", o.topic); !why.empty()) bad(why);
  if (o.max_content > max_content_limit)
    bad("max_content " + std::to_string(o.max_content) + ": at most 1048576 (a typed handler decodes "
        "strings up to 1 MiB; bigger files go by path)");
  if (o.pattern.find('/') != std::string::npos) bad("pattern \"" + o.pattern + "\": a file name glob, no '/'");
  if (o.max_in_flight == 0 || o.max_in_flight > 65536)
    bad("max_in_flight " + std::to_string(o.max_in_flight) + ": 1 to 65536");
  drop_paths paths;
  if (o.dir.empty()) {
    bad("dir: empty (the directory to watch)");
  } else {
    std::error_code ec;
    auto dir = std::filesystem::absolute(o.dir, ec).lexically_normal();
    if (!dir.has_filename()) dir = dir.parent_path(); // "x/" -> "x"
    paths = {dir.string(), (dir / "done").string(), (dir / "failed").string()};
    if (auto why = prepare_dirs(paths)) bad(*why);
  }
  if (!problems.empty()) throw std::invalid_argument("file drop \"" + o.name + "\": " + problems);
  if (sodium_init() < 0) throw std::runtime_error("file drop \"" + o.name + "\": libsodium failed to start");
  auto who = svc.name() + "." + file_drop_function_name(o.name);
  return std::make_shared<const config>(config{std::move(o), std::move(paths), std::move(who)});
}

} // namespace

std::string file_drop_function_name(std::string_view name) { return "files-" + std::string{name}; }

std::string file_drop_rescan_topic(std::string_view name) { return "_plexus.files." + std::string{name}; }

function_builder& add_file_drop(service& svc, file_drop_options o) {
  auto cfg = check(svc, std::move(o));
  return detail::add_singleton(svc, file_drop_function_name(cfg->o.name), file_drop_rescan_topic(cfg->o.name),
                               [cfg](caf::event_based_actor* self, client& conn) {
                                 return drop_actor(self, conn, cfg);
                               });
}

} // namespace plexus::actors
