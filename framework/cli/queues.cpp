// SPDX-License-Identifier: Apache-2.0
#include "queues.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>

#include <CLI/CLI.hpp>

#include "plexus/json.hpp"
#include "plexus/client.hpp"
#include "plexus/queues.hpp"
#include "render.hpp"

namespace plexus::cli {

namespace {

using ms = std::chrono::milliseconds;
using namespace std::chrono_literals;

// A durable's counts in a broker's stats (brokers/core/stats.cpp).
constexpr std::pair<std::string_view, std::uint64_t durable_row::*> durable_fields[] = {
  {"messages", &durable_row::messages}, {"bytes", &durable_row::bytes},
  {"waiting", &durable_row::waiting},   {"members", &durable_row::members},
  {"stored", &durable_row::stored},     {"acked", &durable_row::acked},
  {"full", &durable_row::full},         {"aged_out", &durable_row::aged_out},
  {"restored", &durable_row::restored}, {"max_msgs", &durable_row::max_msgs},
  {"max_bytes", &durable_row::max_bytes}, {"max_age_ms", &durable_row::max_age_ms},
};

// ------------------------------------------------------------ text

// Display width: code points, as a terminal shows UTF-8 text.
std::size_t width(std::string_view s) {
  return static_cast<std::size_t>(
    std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; }));
}

// One table cell from bytes off the network: printable, on one line, at
// most `max` code points (cut on a code point, "..." said).
std::string cell(std::string_view bytes, std::size_t max = 0) {
  auto s = printable(bytes);
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (max && width(s) > max) {
    std::size_t n = 0, at = 0;
    for (; at < s.size(); ++at)
      if ((static_cast<unsigned char>(s[at]) & 0xc0) != 0x80 && n++ == max - 3) break;
    s.resize(at);
    s += "...";
  }
  return s.empty() ? "-" : s;
}

// Columns two spaces apart; `align` says per column 'l' or 'r'.
std::string render_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows,
                         std::string_view align) {
  std::vector<std::size_t> w(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) w[i] = width(head[i]);
  for (auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], width(r[i]));
  std::string out;
  auto line = [&](const std::vector<std::string>& r) {
    std::string l;
    for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) {
      if (i) l += "  ";
      auto pad = std::string(w[i] - width(r[i]), ' ');
      bool last = i + 1 == r.size();
      if (i < align.size() && align[i] == 'r') l += pad + r[i];
      else l += r[i] + (last ? "" : pad);
    }
    out += l;
    out += '\n';
  };
  line(head);
  for (auto& r : rows) line(r);
  return out;
}

void sort_rows(std::vector<durable_row>& rows) {
  std::sort(rows.begin(), rows.end(),
            [](auto& a, auto& b) { return std::tie(a.broker, a.name) < std::tie(b.broker, b.name); });
}

} // namespace

// ------------------------------------------------------------ durables

std::optional<std::vector<durable_row>> durables_from_stats(std::string_view json) {
  using kind = json_value::kind;
  json_value stats;
  try {
    stats = parse_json(json); // depth bounded: a payload is not trusted
  } catch (const json_error&) {
    return std::nullopt;
  }
  const auto* broker = stats.find("broker");
  if (broker == nullptr || broker->type != kind::string) return std::nullopt;
  std::vector<durable_row> rows;
  const auto* durables = stats.find("durables");
  if (durables == nullptr) return rows; // a broker from before durables
  if (durables->type != kind::array) return std::nullopt;
  for (const auto& d : durables->items) {
    if (d.type != kind::object) return std::nullopt;
    auto& row = rows.emplace_back();
    row.broker = broker->text;
    for (const auto& [key, v] : d.members) {
      if (key == "name") {
        if (v.type != kind::string) return std::nullopt;
        row.name = v.text;
        continue;
      }
      if (key == "declared" && v.type == kind::string) {
        row.declared = v.text;
        continue;
      }
      if (key == "subjects" && v.type == kind::array) {
        for (const auto& subject : v.items)
          if (subject.type == kind::string) row.subjects.push_back(subject.text);
        continue;
      }
      auto f = std::find_if(std::begin(durable_fields), std::end(durable_fields),
                            [&](auto& e) { return e.first == key; });
      if (f == std::end(durable_fields)) continue; // a field this CLI does not know
      if (auto n = v.as_uint64()) row.*(f->second) = *n; // not a count: left 0
    }
  }
  return rows;
}

std::string human_bytes(std::uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024;
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char b[32];
  std::snprintf(b, sizeof b, "%.1f %s", v, units[u]);
  return b;
}

std::string queue_table(std::vector<durable_row> rows) {
  sort_rows(rows);
  std::vector<std::vector<std::string>> cells;
  for (auto& d : rows)
    cells.push_back({d.broker, d.name, std::to_string(d.messages), human_bytes(d.bytes),
                     std::to_string(d.waiting), std::to_string(d.members), std::to_string(d.stored),
                     std::to_string(d.acked), std::to_string(d.full)});
  return render_table({"BROKER", "NAME", "MESSAGES", "BYTES", "WAITING", "MEMBERS", "STORED", "ACKED", "FULL"},
                      cells, "llrrrrrrr");
}

std::string queue_details(std::vector<durable_row> rows) {
  sort_rows(rows);
  std::string out;
  for (auto& d : rows) {
    if (!out.empty()) out += '\n';
    auto field = [&](std::string_view k, const std::string& v) {
      out += k;
      out += std::string(10 - k.size(), ' ');
      out += v;
      out += '\n';
    };
    field("broker", d.broker);
    field("name", d.name);
    std::string subjects;
    for (auto& p : d.subjects) subjects += (subjects.empty() ? "" : " ") + p;
    if (!subjects.empty()) field("subjects", subjects);
    if (!d.declared.empty()) field("declared", d.declared);
    if (d.max_msgs) field("max_msgs", std::to_string(d.max_msgs));
    if (d.max_bytes) field("max_bytes", std::to_string(d.max_bytes) + " (" + human_bytes(d.max_bytes) + ")");
    if (!d.declared.empty()) field("max_age", d.max_age_ms ? std::to_string(d.max_age_ms) + " ms" : "none");
    field("messages", std::to_string(d.messages));
    field("bytes", std::to_string(d.bytes) + " (" + human_bytes(d.bytes) + ")");
    field("waiting", std::to_string(d.waiting));
    field("members", std::to_string(d.members));
    field("stored", std::to_string(d.stored));
    field("acked", std::to_string(d.acked));
    field("full", std::to_string(d.full));
    field("aged_out", std::to_string(d.aged_out));
    field("restored", std::to_string(d.restored));
  }
  return out;
}

// ---------------------------------------------------------- dead letters

std::string_view find_header(const header_list& headers, std::string_view key) noexcept {
  for (auto& [k, v] : headers)
    if (k == key) return v;
  return {};
}

dead_letter describe_dead_letter(std::string_view dlq_topic, std::string_view msg_id,
                                 const header_list& headers, std::size_t payload_size,
                                 std::size_t position) {
  dead_letter d;
  d.id = msg_id.empty() ? "#" + std::to_string(position) : std::string{msg_id};
  d.dlq_topic = dlq_topic;
  d.topic = find_header(headers, "plexus-dlq-topic");
  constexpr std::string_view prefix = "$DLQ.";
  if (d.topic.empty()) d.topic = dlq_topic.starts_with(prefix) ? dlq_topic.substr(prefix.size()) : dlq_topic;
  d.reason = find_header(headers, "plexus-dlq-reason");
  d.deliveries = find_header(headers, "plexus-dlq-deliveries");
  d.time_ns = find_header(headers, "plexus-dlq-time");
  d.size = payload_size;
  return d;
}

std::string utc_time(std::string_view ns_text) {
  if (ns_text.empty()) return "-";
  std::uint64_t ns = 0;
  auto [p, ec] = std::from_chars(ns_text.data(), ns_text.data() + ns_text.size(), ns);
  if (ec != std::errc{} || p != ns_text.data() + ns_text.size()) return cell(ns_text);
  auto secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  if (!::gmtime_r(&secs, &tm)) return cell(ns_text);
  char b[48];
  auto n = std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(b + n, sizeof b - n, ".%03uZ", static_cast<unsigned>(ns / 1'000'000 % 1000));
  return b;
}

bool matches_filter(const dead_letter& d, std::string_view filter) noexcept {
  return filter.empty() || d.reason.find(filter) != std::string::npos
         || d.topic.find(filter) != std::string::npos;
}

header_list replay_headers(const header_list& headers, std::string_view dlq_topic) {
  header_list out;
  for (auto& [k, v] : headers)
    if (!k.starts_with(dlq_header_prefix) && k != replayed_from_header) out.emplace_back(k, v);
  out.emplace_back(std::string{replayed_from_header}, std::string{dlq_topic});
  return out;
}

std::string dead_letter_table(const std::vector<dead_letter>& rows) {
  std::vector<std::vector<std::string>> cells;
  for (auto& d : rows)
    cells.push_back({cell(d.id), cell(d.topic), cell(d.deliveries), cell(d.reason, 60), utc_time(d.time_ns),
                     std::to_string(d.size)});
  return render_table({"ID", "TOPIC", "DELIVERIES", "REASON", "TIME (UTC)", "BYTES"}, cells, "llrllr");
}

std::string payload_dump(std::string_view payload) {
  if (is_text(payload)) return std::string{payload};
  std::string out;
  if (auto json = msgpack_as_json(payload)) out += "msgpack, as JSON: " + *json + "\n";
  static constexpr char hex[] = "0123456789abcdef";
  auto shown = std::min<std::size_t>(payload.size(), 256);
  for (std::size_t at = 0; at < shown; at += 16) {
    char offset[24]; // "%08zx  " of any size_t fits
    std::snprintf(offset, sizeof offset, "%08zx  ", at);
    out += offset;
    std::string ascii;
    for (std::size_t i = at; i < at + 16; ++i) {
      if (i < shown) {
        auto c = static_cast<unsigned char>(payload[i]);
        out += hex[c >> 4];
        out += hex[c & 15];
        out += ' ';
        ascii += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.';
      } else {
        out += "   ";
      }
      if (i == at + 7) out += ' ';
    }
    out += " |" + ascii + "|\n";
  }
  if (payload.size() > shown) out += "... " + std::to_string(payload.size() - shown) + " more bytes\n";
  return out;
}

std::string dead_letter_details(const dead_letter& d, const header_list& headers, std::string_view traceparent,
                                std::string_view payload) {
  std::string out;
  auto field = [&](std::string_view k, const std::string& v) {
    out += k;
    out += std::string(13 - k.size(), ' ');
    out += v;
    out += '\n';
  };
  field("id", cell(d.id));
  field("dlq topic", cell(d.dlq_topic));
  field("topic", cell(d.topic));
  field("reason", d.reason.empty() ? "-" : printable(d.reason));
  field("deliveries", cell(d.deliveries));
  field("time", utc_time(d.time_ns) + (d.time_ns.empty() ? "" : " (" + cell(d.time_ns) + " ns)"));
  if (!traceparent.empty()) field("traceparent", cell(traceparent));
  out += "headers\n";
  for (auto& [k, v] : headers) out += "  " + printable(k) + ": " + printable(v) + "\n";
  out += "payload (" + std::to_string(payload.size()) + " bytes)\n";
  auto body = payload_dump(payload);
  out += body;
  if (!body.empty() && body.back() != '\n') out += '\n';
  return out;
}

// ------------------------------------------------------------ commands

namespace {

constexpr ms quiet_period = 500ms;       // a peek ends when nothing came for this long
constexpr ms broker_answer = 10s;        // a barrier, a leave
constexpr ms confirm_wait = 30s;         // the replays still unconfirmed at the end
constexpr std::uint32_t credit_window = 256;
constexpr std::uint64_t max_unconfirmed_replays = 1000;
// A member holding messages for inspection: the broker must neither take
// them back (ack wait) nor give up on them (max_deliver) while it looks.
constexpr std::uint32_t hold_ack_wait_ms = 24 * 3600 * 1000;
constexpr std::uint32_t hold_max_deliver = 1'000'000;

bool stopped(const std::atomic<bool>* stop) { return stop && stop->load(); }

// `$SYS.broker.<id>.stats` -> <id>.
std::string broker_of(std::string_view topic) {
  constexpr std::string_view head = "$SYS.broker.", tail = ".stats";
  if (topic.size() < head.size() + tail.size()) return std::string{topic};
  return std::string{topic.substr(head.size(), topic.size() - head.size() - tail.size())};
}

struct stats_seen {
  std::map<std::string, std::vector<durable_row>> by_broker;
  std::uint64_t unreadable = 0;
};

// Every broker's durables from the stats published within `wait`.
stats_seen collect_durables(const connect_fn& connect, ms wait, const std::atomic<bool>* stop) {
  std::mutex m;
  stats_seen seen;
  auto cl = connect(); // after what its handler touches: its I/O thread is joined first
  cl.subscribe("$SYS.broker.*.stats", [&](const plexus::message_view& v) {
    auto rows = durables_from_stats(v.payload);
    std::lock_guard lock{m};
    if (!rows) {
      ++seen.unreadable;
      return;
    }
    seen.by_broker[broker_of(v.topic)] = std::move(*rows);
  });
  auto until = std::chrono::steady_clock::now() + wait;
  while (!stopped(stop) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::min<ms>(50ms, std::chrono::duration_cast<ms>(until - std::chrono::steady_clock::now())));
  std::lock_guard lock{m};
  return seen;
}

std::string list_names(const std::set<std::string>& names) {
  std::string out;
  for (auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

int run_queue_ls(const connect_fn& connect, ms wait, const std::string& name, const std::atomic<bool>* stop) {
  auto seen = collect_durables(connect, wait, stop);
  if (seen.by_broker.empty()) {
    std::cerr << "plexus: no broker published its stats ($SYS.broker.*.stats) within " << wait.count() << " ms"
              << (seen.unreadable ? " that this plexus could read" : "") << "\n";
    return 1;
  }
  std::vector<durable_row> rows;
  std::set<std::string> names;
  for (auto& [broker, ds] : seen.by_broker)
    for (auto& d : ds) {
      names.insert(d.name);
      if (name.empty() || d.name == name) rows.push_back(d);
    }
  auto brokers = std::to_string(seen.by_broker.size()) + (seen.by_broker.size() == 1 ? " broker" : " brokers");
  if (name.empty()) {
    if (rows.empty()) std::cout << "no durable queues (" << brokers << " answered)\n";
    else std::cout << queue_table(std::move(rows));
    return 0;
  }
  if (rows.empty()) {
    std::cerr << "plexus: no durable queue '" << name << "' on " << brokers << " (durables: " << list_names(names)
              << ")\n";
    return 1;
  }
  std::cout << queue_details(std::move(rows));
  return 0;
}

// One message held unacked, copied out of the handler's views.
struct held {
  std::uint32_t sid = 0;
  std::uint64_t seq = 0;
  std::string topic, msg_id, traceparent, payload;
  std::size_t size = 0;
  header_list headers;
};

// A member of durable `queue` for one command: it holds what it is given
// unacked (for a day, and through a million deliveries: the broker neither
// takes a message back nor gives up on it while we look), takes at most
// `limit` messages, `credit_window` at a time, and leaves giving back what
// it did not ACK. Its pattern is its own inbox: a member of a durable gets
// the durable's messages whatever it subscribes, and a name that is no
// durable makes a queue group that gets nothing instead of live traffic.
class durable_member {
public:
  durable_member(const connect_fn& connect, std::string queue, std::uint64_t limit, bool payloads,
                 const std::atomic<bool>* stop)
    : queue_(std::move(queue)), limit_(limit ? limit : std::numeric_limits<std::uint64_t>::max()),
      payloads_(payloads), stop_(stop), cl_(connect()) {
    cl_.on_error([this](std::uint32_t code, std::string_view text) {
      auto what = std::string{plexus::status_text(code)} + (text.empty() ? "" : ": ") + std::string{text};
      if (code >= plexus::status_timeout) { // the client's own news: what was held went back
        std::cerr << "plexus: warning: " << what << "\n";
        return;
      }
      std::lock_guard lock{m_};
      if (!joined_ && error_.empty()) error_ = what;
    });
    plexus::subscribe_options o;
    o.queue = queue_;
    o.acked = true;
    o.credit = static_cast<std::uint32_t>(std::min<std::uint64_t>(limit_, credit_window));
    o.ack_wait_ms = hold_ack_wait_ms;
    o.max_deliver = hold_max_deliver;
    granted_ = o.credit;
    sid_ = cl_.subscribe("_INBOX." + cl_.node_id() + ".dlq", [this](const plexus::message_view& v) {
      held h;
      h.sid = v.sid;
      h.seq = v.seq;
      h.topic = v.topic;
      h.msg_id = v.msg_id;
      h.traceparent = v.traceparent;
      h.size = v.payload.size();
      if (payloads_) h.payload = v.payload;
      for (auto [k, val] : v.headers.items()) h.headers.emplace_back(k, val);
      {
        std::lock_guard lock{m_};
        inbox_.push_back(std::move(h));
      }
      cv_.notify_all();
    }, o);
  }

  durable_member(const durable_member&) = delete;
  durable_member& operator=(const durable_member&) = delete;

  [[nodiscard]] plexus::client& client() noexcept { return cl_; }

  /// Waits until the broker has the subscription; false, with why, when
  /// it refused it.
  [[nodiscard]] bool join(std::string& why) {
    barrier();
    std::lock_guard lock{m_};
    joined_ = true;
    why = error_;
    return error_.empty();
  }

  /// The next message; nothing when none came for `quiet` (and the
  /// broker, asked then, had handled our credit with nothing more to
  /// send), `limit` were taken or the command was interrupted.
  [[nodiscard]] std::optional<held> next(ms quiet) {
    std::unique_lock lock{m_};
    if (taken_ >= limit_) return std::nullopt;
    for (bool synced = false;; synced = true) {
      auto until = std::chrono::steady_clock::now() + quiet;
      while (inbox_.empty() && !stopped(stop_) && std::chrono::steady_clock::now() < until)
        cv_.wait_for(lock, std::min<ms>(100ms, std::chrono::duration_cast<ms>(until - std::chrono::steady_clock::now())));
      if (!inbox_.empty() || stopped(stop_) || synced) break;
      // A slow broker, not an empty queue? What our credit brings comes
      // before the answer to a request sent after it.
      lock.unlock();
      barrier();
      lock.lock();
      quiet = 0ms;
    }
    if (inbox_.empty() || stopped(stop_)) return std::nullopt;
    auto h = std::move(inbox_.front());
    inbox_.pop_front();
    ++taken_;
    bool grant = granted_ < limit_;
    if (grant) ++granted_;
    lock.unlock();
    if (grant) cl_.grant_credit(sid_, 1);
    return h;
  }

  [[nodiscard]] bool limit_reached() const {
    std::lock_guard lock{m_};
    return taken_ >= limit_;
  }

  /// Whether the broker this member talks to has a durable named `queue`,
  /// from its next stats; nothing when they did not come within `timeout`.
  [[nodiscard]] std::optional<bool> broker_has_durable(ms timeout) {
    cl_.subscribe("$SYS.broker." + cl_.broker_id() + ".stats", [this](const plexus::message_view& v) {
      auto rows = durables_from_stats(v.payload);
      if (!rows) return;
      {
        std::lock_guard lock{m_};
        known_ = std::any_of(rows->begin(), rows->end(), [&](auto& d) { return d.name == queue_; });
        for (auto& d : *rows) durables_.insert(d.name);
      }
      cv_.notify_all();
    });
    std::unique_lock lock{m_};
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!known_ && !stopped(stop_) && std::chrono::steady_clock::now() < until)
      cv_.wait_for(lock, std::min<ms>(100ms, std::chrono::duration_cast<ms>(until - std::chrono::steady_clock::now())));
    return known_;
  }

  [[nodiscard]] std::string durable_names() const {
    std::lock_guard lock{m_};
    return list_names(durables_);
  }

  /// Gives back what it holds unacked (the broker returns it to the
  /// durable), and waits until the broker has.
  void leave() {
    cl_.unsubscribe(sid_);
    barrier();
  }

private:
  // Everything sent before is handled once the broker answers a request
  // (a connection is FIFO); nobody serves this one, a '$' topic no
  // wildcard matches.
  void barrier() {
    auto r = cl_.request("$plexus.cli.barrier", "", broker_answer);
    if (r.code == plexus::status_timeout || r.code == plexus::status_disconnected)
      throw std::runtime_error("the broker did not answer within " + std::to_string(broker_answer.count() / 1000)
                               + " s");
  }

  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<held> inbox_;
  std::string queue_;
  std::uint64_t limit_, taken_ = 0, granted_ = 0;
  bool payloads_, joined_ = false;
  std::string error_;
  std::optional<bool> known_;
  std::set<std::string> durables_;
  const std::atomic<bool>* stop_;
  std::uint32_t sid_ = 0;
  plexus::client cl_; // last: it goes first, with the I/O thread that runs the handlers above
};

// True once the broker has the member; false after saying why not.
bool joined(durable_member& member, const std::string& queue) {
  std::string why;
  if (member.join(why)) return true;
  std::cerr << "plexus: cannot join durable queue '" << queue << "': " << why << "\n";
  return false;
}

// Nothing came: an empty durable (0), or no durable of that name (1).
int nothing_there(durable_member& member, const std::string& queue) {
  // A broker publishes its stats every second (stats_interval).
  auto known = member.broker_has_durable(2500ms);
  if (known && !*known) {
    std::cerr << "plexus: broker '" << member.client().broker_id() << "' has no durable queue '" << queue
              << "' (durables: " << member.durable_names() << ")\n";
    return 1;
  }
  std::cout << "no messages in " << queue << (known ? "" : " (or no durable queue of that name)") << "\n";
  return 0;
}

int run_dlq_ls(const connect_fn& connect, const std::string& queue, std::uint64_t count,
               const std::atomic<bool>* stop) {
  durable_member member{connect, queue, count, false, stop};
  if (!joined(member, queue)) return 1;
  std::vector<dead_letter> rows;
  while (auto h = member.next(quiet_period))
    rows.push_back(describe_dead_letter(h->topic, h->msg_id, h->headers, h->size, rows.size() + 1));
  int rc = 0;
  if (rows.empty()) rc = nothing_there(member, queue);
  member.leave();
  if (rows.empty()) return rc;
  std::cout << dead_letter_table(rows);
  std::cout.flush();
  if (member.limit_reached())
    std::cerr << "plexus: the first " << rows.size() << " messages of " << queue << " (--count shows more)\n";
  return 0;
}

int run_dlq_show(const connect_fn& connect, const std::string& queue, const std::string& id, std::uint64_t count,
                 const std::atomic<bool>* stop) {
  durable_member member{connect, queue, count, true, stop};
  if (!joined(member, queue)) return 1;
  std::optional<std::string> found;
  std::size_t position = 0;
  while (auto h = member.next(quiet_period)) {
    auto d = describe_dead_letter(h->topic, h->msg_id, h->headers, h->size, ++position);
    if (d.id != id) continue;
    found = dead_letter_details(d, h->headers, h->traceparent, h->payload);
    break;
  }
  int rc = 0;
  if (position == 0) rc = nothing_there(member, queue);
  member.leave();
  if (found) {
    std::cout << *found;
    return 0;
  }
  if (position == 0 && rc) return rc;
  std::cerr << "plexus: no message with id '" << id << "' among the " << position << " in " << queue
            << (member.limit_reached() ? " looked at (--count looks at more)" : "") << "\n";
  return 1;
}

int run_dlq_replay(const connect_fn& connect, const std::string& queue, const std::string& filter,
                   std::uint64_t count, bool dry_run, const std::atomic<bool>* stop) {
  struct tally {
    std::uint64_t seen = 0, replayed = 0, skipped = 0, failed = 0, outstanding = 0;
    bool closing = false; // past the confirm wait: a late CONFIRM acks nothing
  };
  std::mutex m;
  std::condition_variable cv;
  tally t;
  durable_member member{connect, queue, count, true, stop}; // after what its handlers touch
  if (!joined(member, queue)) return 1;
  auto& cl = member.client();
  std::set<std::string> ours; // this run's replays, should they die again while it runs
  std::vector<dead_letter> would;
  std::uint64_t next_id = 0;
  auto progress = [&] {
    std::lock_guard lock{m};
    std::cerr << "plexus: " << t.seen << " messages: " << (dry_run ? would.size() : t.replayed)
              << (dry_run ? " to replay, " : " replayed, ") << t.skipped << " skipped, " << t.failed << " failed\n";
  };
  while (auto h = member.next(quiet_period)) {
    std::unique_lock lock{m};
    auto n = ++t.seen;
    auto d = describe_dead_letter(h->topic, h->msg_id, h->headers, h->size, n);
    if (!matches_filter(d, filter) || ours.contains(h->msg_id)) {
      ++t.skipped; // left unacked: back to the durable when we leave
    } else if (dry_run) {
      would.push_back(std::move(d));
    } else {
      // At most max_unconfirmed_replays in flight; a broker that stopped
      // confirming ends the run (what is unacked stays in the queue).
      auto room = [&] { return t.outstanding < max_unconfirmed_replays || stopped(stop); };
      if (!cv.wait_for(lock, confirm_wait, room) || stopped(stop)) {
        ++t.skipped; // not sent: left in the queue
        break;
      }
      ++t.outstanding;
      lock.unlock(); // a refused publish calls back at once, on this thread
      auto headers = replay_headers(h->headers, h->topic);
      std::vector<std::pair<std::string_view, std::string_view>> items(headers.begin(), headers.end());
      std::string packed;
      plexus::publish_options o;
      o.headers = wire::pack_string_map(items, packed);
      o.traceparent = h->traceparent;
      auto msg_id = "replay." + cl.node_id() + "." + std::to_string(++next_id);
      o.msg_id = msg_id;
      ours.insert(msg_id);
      auto done = [&m, &cv, &t, &cl, sid = h->sid, seq = h->seq, id = d.id, topic = d.topic](std::uint32_t code) {
        std::lock_guard done_lock{m};
        --t.outstanding;
        cv.notify_all();
        if (t.closing) return; // already counted as unconfirmed
        if (code == 0) {
          ++t.replayed;
          cl.ack(sid, seq); // only now: the replay is the broker's
          return;
        }
        ++t.failed;
        std::cerr << "plexus: not replayed: " << cell(id) << " to " << cell(topic) << ": "
                  << plexus::status_text(code) << " (left in the queue)\n";
      };
      try {
        cl.publish_confirmed(d.topic, h->payload, done, o);
      } catch (const std::exception& e) { // a topic or payload the client refuses to send
        std::lock_guard fail_lock{m};
        --t.outstanding;
        ++t.failed;
        std::cerr << "plexus: not replayed: " << cell(d.id) << " to " << cell(d.topic) << ": " << e.what()
                  << " (left in the queue)\n";
      }
      lock.lock();
    }
    lock.unlock();
    if (n % 1000 == 0) progress();
  }
  {
    std::unique_lock lock{m};
    if (!cv.wait_for(lock, confirm_wait, [&] { return t.outstanding == 0; })) {
      std::cerr << "plexus: " << t.outstanding << " replays unconfirmed after " << confirm_wait.count() / 1000
                << " s (left in the queue; they may arrive twice)\n";
      t.failed += t.outstanding;
    }
    t.closing = true;
  }
  bool interrupted = stopped(stop);
  int rc = 0;
  if (t.seen == 0) rc = nothing_there(member, queue);
  member.leave();
  if (t.seen == 0) return rc;
  std::lock_guard lock{m};
  if (dry_run) {
    if (!would.empty()) std::cout << dead_letter_table(would);
    std::cout << "dry run: would replay " << would.size() << ", skipped " << t.skipped << " (nothing acked)";
  } else {
    std::cout << "replayed " << t.replayed << ", skipped " << t.skipped << ", failed " << t.failed;
  }
  std::cout << (interrupted ? " (interrupted)" : "") << "\n";
  return t.failed ? 1 : 0;
}

std::string require_name(const std::string& name, std::string_view what) {
  if (name.empty()) throw CLI::ValidationError(std::string{what} + ": a durable queue's name, not empty");
  return name;
}

// `queue add` / `queue rm`: one request to the broker --broker names.
int run_queue_admin(const queue_commands& q, const connect_fn& connect, const duration_fn& parse) {
  auto name = require_name(q.name, "NAME");
  plexus::queue_spec spec{name, q.subjects, q.max_msgs, q.max_bytes, {}};
  if (!q.max_age.empty()) {
    spec.max_age = parse(q.max_age);
    if (spec.max_age.count() <= 0) throw CLI::ValidationError("--max-age: a duration above 0 (e.g. 7d)");
  }
  auto cl = connect();
  try {
    auto said = *q.queue_add ? plexus::declare_queue(cl, spec) : plexus::remove_queue(cl, name);
    std::cout << "durable queue '" << name << "' on broker " << cl.broker_id() << ": " << said << "\n";
    return 0;
  } catch (const plexus::queue_error& e) {
    std::cerr << "plexus: " << e.what() << "\n";
    return 1;
  }
}

} // namespace

void add_queue_commands(CLI::App& app, queue_commands& q) {
  q.queue = app.add_subcommand("queue", "durable queues, from every broker's stats");
  q.queue->require_subcommand(1);
  q.queue_ls = q.queue->add_subcommand(
    "ls", "one row per broker and durable queue: messages, bytes, waiting, members, stored, acked, full");
  q.queue_ls->add_option("--wait", q.wait, "listen to the brokers' stats for this long")
    ->type_name("DURATION")
    ->capture_default_str();
  q.queue_info = q.queue->add_subcommand("info", "every field of one durable queue, on each broker that has it");
  q.queue_info->add_option("NAME", q.name, "the durable queue")->required();
  q.queue_info->add_option("--wait", q.wait, "listen to the brokers' stats for this long")
    ->type_name("DURATION")
    ->capture_default_str();
  q.queue_add = q.queue->add_subcommand(
    "add", "declare durable queue NAME on the broker: from then on it keeps every message matching "
           "its subjects, on disk, until a member (a SUB with queue group NAME) ACKs it; the broker "
           "needs --store, and keeps the declaration there");
  q.queue_add->add_option("NAME", q.name, "the durable queue (its members' queue group)")->required();
  q.queue_add->add_option("--subject", q.subjects, "a subject pattern whose messages it keeps; repeat for more")
    ->type_name("PATTERN")
    ->required();
  q.queue_add->add_option("--max-msgs", q.max_msgs, "at most this many messages (0: the broker's default, 1000000)")
    ->capture_default_str();
  q.queue_add->add_option("--max-bytes", q.max_bytes, "at most this many payload bytes (0: the broker's default, 256 MiB)")
    ->capture_default_str();
  q.queue_add->add_option("--max-age", q.max_age, "drop what waited longer than this (e.g. 7d); default: no limit")
    ->type_name("DURATION");
  q.queue_rm = q.queue->add_subcommand(
    "rm", "remove durable queue NAME declared at run time, and every message it keeps; it must "
          "have no members ([[durable]] queues are removed from the broker's configuration)");
  q.queue_rm->add_option("NAME", q.name, "the durable queue")->required();

  q.dlq = app.add_subcommand("dlq", "dead letters kept by a durable queue: list, show, replay");
  q.dlq->require_subcommand(1);
  q.dlq_ls = q.dlq->add_subcommand(
    "ls", "list the messages of durable QUEUE (id, original topic, deliveries, reason, time, size); "
          "acks nothing");
  q.dlq_ls->add_option("QUEUE", q.name, "the durable queue keeping the dead letters")->required();
  q.dlq_ls->add_option("--count", q.ls_count, "look at no more than this many")->capture_default_str();
  q.dlq_show = q.dlq->add_subcommand(
    "show", "one message of durable QUEUE in full: every header and the payload; acks nothing");
  q.dlq_show->add_option("QUEUE", q.name, "the durable queue keeping the dead letters")->required();
  q.dlq_show->add_option("ID", q.id, "its msg id as `plexus dlq ls` shows it ('#N' for the N-th without one)")
    ->required();
  q.dlq_show->add_option("--count", q.show_count, "look at no more than this many")->capture_default_str();
  q.dlq_replay = q.dlq->add_subcommand(
    "replay", "publish each message of durable QUEUE again to its original topic, confirmed; ack it then");
  q.dlq_replay->add_option("QUEUE", q.name, "the durable queue keeping the dead letters")->required();
  q.dlq_replay->add_option("--filter", q.filter,
                           "only messages whose reason or original topic contains this text (the "
                           "others stay)")
    ->type_name("TEXT");
  q.dlq_replay->add_option("--count", q.replay_count, "look at no more than this many (0 = all)")
    ->capture_default_str();
  q.dlq_replay->add_flag("--dry-run", q.dry_run, "list what would be replayed; publish and ack nothing");
}

std::optional<int> run_queue_commands(const queue_commands& q, const connect_fn& connect, const duration_fn& parse,
                                      const std::atomic<bool>* stop) {
  if (q.queue && *q.queue) {
    auto wait = parse(q.wait);
    if (wait.count() <= 0) throw CLI::ValidationError("--wait: a duration above 0 (e.g. 2s)");
    if (*q.queue_info) return run_queue_ls(connect, wait, require_name(q.name, "NAME"), stop);
    if (*q.queue_add || *q.queue_rm) return run_queue_admin(q, connect, parse);
    return run_queue_ls(connect, wait, {}, stop);
  }
  if (q.dlq && *q.dlq) {
    auto queue = require_name(q.name, "QUEUE");
    if (*q.dlq_ls) {
      if (q.ls_count == 0) throw CLI::ValidationError("--count: at least 1");
      return run_dlq_ls(connect, queue, q.ls_count, stop);
    }
    if (*q.dlq_show) {
      if (q.show_count == 0) throw CLI::ValidationError("--count: at least 1");
      return run_dlq_show(connect, queue, q.id, q.show_count, stop);
    }
    return run_dlq_replay(connect, queue, q.filter, q.replay_count, q.dry_run, stop);
  }
  return std::nullopt;
}

} // namespace plexus::cli
