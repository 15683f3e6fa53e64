// SPDX-License-Identifier: Apache-2.0
#include "pg_io.hpp"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#include "pg_core.hpp"

namespace plexus::actors::detail {

namespace {

using namespace std::chrono;

constexpr int connect_timeout_ms = 10000; // a server that accepts and then says nothing

// libpq's messages end in newlines and may span lines: one line of text.
std::string one_line(std::string_view s) {
  std::string line;
  for (char ch : s) {
    bool space = ch == '\n' || ch == '\t' || ch == ' ';
    if (!space) line += ch;
    else if (!line.empty() && line.back() != ' ') line += ' ';
  }
  if (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

std::string error_of(PGconn* c, const std::string& notice) {
  auto why = one_line(c ? PQerrorMessage(c) : "out of memory");
  if (!notice.empty()) why = notice + (why.empty() ? "" : " (" + why + ")");
  return why.empty() ? "connection closed" : why;
}

struct conn_closer {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_closer>;

} // namespace

std::string conninfo_problem(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  std::string why;
  if (!opts) why = err ? one_line(err) : "cannot be parsed (out of memory)";
  if (err) PQfreemem(err);
  if (opts) PQconninfoFree(opts);
  return why;
}

std::unique_ptr<pg_listener> pg_listener::start(std::string conninfo, std::vector<std::string> channels,
                                                bool connected_before, callbacks cb, std::string& why) {
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    why = std::string{"eventfd: "} + std::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<pg_listener> l{new pg_listener{wake}};
  l->thread_ = std::thread{[raw = l.get(), conninfo = std::move(conninfo), sql = listen_statement(channels),
                            connected_before, cb = std::move(cb)]() mutable {
    raw->run(std::move(conninfo), std::move(sql), connected_before, std::move(cb));
  }};
  return l;
}

void pg_listener::reconnect_now() {
  std::uint64_t one = 1;
  if (::write(wake_, &one, sizeof one) < 0) std::perror("postgres listener: eventfd write");
}

pg_listener::~pg_listener() {
  stop_ = true;
  reconnect_now();
  if (thread_.joinable()) thread_.join();
  ::close(wake_);
}

pg_listener::waited pg_listener::wait(int fd, short events, int timeout_ms) {
  pollfd fds[2] = {{wake_, POLLIN, 0}, {fd, events, 0}};
  for (;;) {
    if (stop_) return waited::stop;
    int n = ::poll(fds, fd < 0 ? 1 : 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return waited::failed;
    if (n == 0) return waited::timeout;
    if (fds[0].revents) {
      std::uint64_t v = 0;
      if (::read(wake_, &v, sizeof v) < 0 && errno != EAGAIN) return waited::failed;
      return stop_ ? waited::stop : waited::woken;
    }
    return waited::ready;
  }
}

void pg_listener::run(std::string conninfo, std::string listen_sql, bool again, callbacks cb) {
  backoff delays;
  std::string notice; // the last notice: a server's FATAL on shutdown arrives as one
  auto on_notice = [](void* arg, const char* text) { *static_cast<std::string*>(arg) = one_line(text); };

  // Connects without blocking on the socket; null and `why` when it fails.
  auto connect = [&](std::string& why) -> conn_ptr {
    conn_ptr c{PQconnectStart(conninfo.c_str())};
    if (!c || PQstatus(c.get()) == CONNECTION_BAD) {
      why = error_of(c.get(), {});
      return nullptr;
    }
    PQsetNoticeProcessor(c.get(), on_notice, &notice);
    auto state = PGRES_POLLING_WRITING;
    auto deadline = steady_clock::now() + milliseconds{connect_timeout_ms};
    while (state != PGRES_POLLING_OK) {
      if (state == PGRES_POLLING_FAILED) {
        why = error_of(c.get(), {});
        return nullptr;
      }
      auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
      auto w = wait(PQsocket(c.get()), state == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                    static_cast<int>(std::max<long long>(left, 0)));
      if (w == waited::stop) return nullptr;
      if (w == waited::timeout) {
        why = "no answer within " + std::to_string(connect_timeout_ms / 1000) + " s";
        return nullptr;
      }
      if (w == waited::failed) {
        why = std::string{"poll: "} + std::strerror(errno);
        return nullptr;
      }
      if (w == waited::ready) state = PQconnectPoll(c.get());
    }
    if (PQsetnonblocking(c.get(), 1) != 0) {
      why = error_of(c.get(), {});
      return nullptr;
    }
    return c;
  };

  // Reads until libpq has a whole result (or the connection fails).
  auto read_ready = [&](PGconn* c, std::string& why) {
    while (PQisBusy(c)) {
      auto w = wait(PQsocket(c), POLLIN, -1);
      if (w == waited::stop) return false;
      if (w == waited::failed || (w == waited::ready && !PQconsumeInput(c))) {
        why = error_of(c, notice);
        return false;
      }
    }
    return true;
  };

  // LISTEN on every channel (one simple query, one result per statement).
  auto listen = [&](PGconn* c, std::string& why) {
    if (!PQsendQuery(c, listen_sql.c_str())) {
      why = error_of(c, {});
      return false;
    }
    for (int f; (f = PQflush(c)) != 0;) {
      if (f < 0 || wait(PQsocket(c), POLLOUT | POLLIN, -1) != waited::ready || !PQconsumeInput(c)) {
        why = error_of(c, notice);
        return false;
      }
    }
    bool ok = true;
    for (;;) {
      if (!read_ready(c, why)) return false;
      PGresult* r = PQgetResult(c);
      if (!r) break;
      if (PQresultStatus(r) != PGRES_COMMAND_OK && ok) {
        why = "LISTEN failed: " + one_line(PQresultErrorMessage(r));
        ok = false;
      }
      PQclear(r);
    }
    return ok;
  };

  // Hands out notifications until the connection fails (false, `why`) or stop.
  auto pump = [&](PGconn* c, std::string& why) {
    for (;;) {
      while (PGnotify* n = PQnotifies(c)) {
        auto at = duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
        cb.notified(n->relname, n->extra ? n->extra : "", n->be_pid, at);
        PQfreemem(n);
      }
      auto w = wait(PQsocket(c), POLLIN, -1);
      if (w == waited::stop) return;
      if (w == waited::woken) continue; // reconnect_now while connected: nothing to cut short
      if (w == waited::failed || !PQconsumeInput(c) || PQstatus(c) == CONNECTION_BAD) {
        why = error_of(c, notice);
        return;
      }
    }
  };

  while (!stop_) {
    std::string why;
    notice.clear();
    bool was_up = false;
    if (auto c = connect(why)) {
      if (listen(c.get(), why)) {
        delays.reset();
        cb.connected(again);
        again = was_up = true;
        pump(c.get(), why);
      }
    }
    if (stop_) return;
    if (why.empty()) why = "connection closed";
    auto d = delays.next();
    cb.down(was_up, why, d);
    if (wait(-1, 0, static_cast<int>(d.count())) == waited::stop) return;
  }
}

} // namespace plexus::actors::detail
