// SPDX-License-Identifier: Apache-2.0
#include "tz.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plexus/actors/schedule.hpp"

namespace plexus::actors::detail {

namespace {

using namespace std::chrono;

constexpr std::int64_t day_s = 86400;
constexpr std::size_t max_zone_file = 1u << 20;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  auto q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

[[noreturn]] void bad_tzif(const std::string& why) { throw std::invalid_argument("TZif: " + why); }

// Bounds-checked big-endian reads.
class reader {
public:
  explicit reader(std::string_view b) : b_(b) {}
  std::string_view take(std::uint64_t n) {
    if (n > b_.size() - pos_) bad_tzif("truncated");
    auto s = b_.substr(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  std::uint64_t be(std::size_t n) {
    std::uint64_t v = 0;
    for (unsigned char c : take(n)) v = v << 8 | c;
    return v;
  }
  std::string_view rest() const { return b_.substr(pos_); }

private:
  std::string_view b_;
  std::size_t pos_ = 0;
};

struct header {
  char version = 0;
  std::uint64_t isut = 0, isstd = 0, leap = 0, time = 0, type = 0, chars = 0;
};

// `used`: the block read (a v2+ file's v1 block is skipped unchecked).
header read_header(reader& r, bool used) {
  header h;
  if (r.take(4) != "TZif") bad_tzif("no TZif magic");
  h.version = r.take(1)[0];
  if (h.version != 0 && (h.version < '2' || h.version > '4')) bad_tzif("unknown version");
  r.take(15);
  h.isut = r.be(4), h.isstd = r.be(4), h.leap = r.be(4);
  h.time = r.be(4), h.type = r.be(4), h.chars = r.be(4);
  if (!used) return h;
  if (h.type == 0) bad_tzif("no local time types");
  if ((h.isut != 0 && h.isut != h.type) || (h.isstd != 0 && h.isstd != h.type))
    bad_tzif("indicator counts differ from the type count");
  return h;
}

std::uint64_t block_size(const header& h, std::uint64_t time_size) {
  return h.time * (time_size + 1) + h.type * 6 + h.chars + h.leap * (time_size + 4) + h.isstd + h.isut;
}

void read_block(reader& r, const header& h, std::size_t time_size, zone_data& z) {
  auto sign_extend = [&](std::uint64_t v) {
    return time_size == 4 ? static_cast<std::int64_t>(static_cast<std::int32_t>(v))
                          : static_cast<std::int64_t>(v);
  };
  std::vector<std::int64_t> times;
  for (std::uint64_t i = 0; i < h.time; ++i) {
    times.push_back(sign_extend(r.be(time_size)));
    if (i > 0 && times[i] <= times[i - 1]) bad_tzif("transition times not ascending");
  }
  auto indices = r.take(h.time);
  std::vector<std::int32_t> utoff;
  for (std::uint64_t i = 0; i < h.type; ++i) {
    auto off = static_cast<std::int32_t>(static_cast<std::uint32_t>(r.be(4)));
    if (off < -89999 || off > 93599) bad_tzif("UT offset out of range");
    utoff.push_back(off);
    r.take(2); // isdst, abbreviation index
  }
  r.take(h.chars + h.leap * (time_size + 4) + h.isstd + h.isut);
  z.times = std::move(times);
  z.offsets.clear();
  for (unsigned char idx : indices) {
    if (idx >= h.type) bad_tzif("type index out of range");
    z.offsets.push_back(utoff[idx]);
  }
  z.initial = utoff[0];
}

// POSIX TZ ---------------------------------------------------------------

struct cursor {
  std::string_view s;
  std::size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek() const { return done() ? '\0' : s[i]; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++i;
    return true;
  }
  std::optional<unsigned> number(unsigned max_digits) {
    unsigned v = 0, n = 0;
    while (!done() && s[i] >= '0' && s[i] <= '9' && n < max_digits) v = v * 10 + unsigned(s[i++] - '0'), ++n;
    if (n == 0) return std::nullopt;
    return v;
  }
};

bool zone_abbrev(cursor& c) {
  if (c.eat('<')) {
    auto end = c.s.find('>', c.i);
    if (end == std::string_view::npos || end == c.i) return false;
    c.i = end + 1;
    return true;
  }
  auto start = c.i;
  while (!c.done() && ((c.peek() >= 'A' && c.peek() <= 'Z') || (c.peek() >= 'a' && c.peek() <= 'z'))) ++c.i;
  return c.i - start >= 3;
}

// [+-]hh[:mm[:ss]] in seconds.
std::optional<std::int32_t> hms(cursor& c, unsigned max_hours) {
  int sign = 1;
  if (c.eat('-')) sign = -1;
  else c.eat('+');
  auto h = c.number(3);
  if (!h || *h > max_hours) return std::nullopt;
  unsigned m = 0, s = 0;
  if (c.eat(':')) {
    auto mm = c.number(2);
    if (!mm || *mm > 59) return std::nullopt;
    m = *mm;
    if (c.eat(':')) {
      auto ss = c.number(2);
      if (!ss || *ss > 59) return std::nullopt;
      s = *ss;
    }
  }
  return sign * static_cast<std::int32_t>(*h * 3600 + m * 60 + s);
}

std::optional<posix_date> rule_date(cursor& c) {
  posix_date d;
  if (!c.eat('M')) return std::nullopt; // Jn, n: not understood
  auto m = c.number(2);
  if (!m || *m < 1 || *m > 12 || !c.eat('.')) return std::nullopt;
  auto w = c.number(1);
  if (!w || *w < 1 || *w > 5 || !c.eat('.')) return std::nullopt;
  auto wd = c.number(1);
  if (!wd || *wd > 6) return std::nullopt;
  d.month = *m, d.week = *w, d.weekday = *wd;
  if (c.eat('/')) {
    auto t = hms(c, 167);
    if (!t) return std::nullopt;
    d.time = *t;
  }
  return d;
}

// Local midnight (as seconds since the epoch) of the rule's day in year y.
std::int64_t rule_day_s(int y, const posix_date& d) {
  sys_days day = d.week == 5
    ? sys_days{year_month_weekday_last{year{y}, month{d.month}, weekday_last{weekday{d.weekday}}}}
    : sys_days{year_month_weekday{year{y}, month{d.month}, weekday_indexed{weekday{d.weekday}, d.week}}};
  return day.time_since_epoch().count() * day_s;
}

std::int64_t dst_start(const posix_tz& p, int y) { return rule_day_s(y, p.start) + p.start.time - p.std_offset; }
std::int64_t dst_end(const posix_tz& p, int y) { return rule_day_s(y, p.end) + p.end.time - p.dst_offset; }

int year_of(std::int64_t local_s) {
  return int(year_month_day{sys_days{days{floor_div(local_s, day_s)}}}.year());
}

std::int32_t footer_offset(const posix_tz& p, std::int64_t utc_s) {
  if (!p.has_dst) return p.std_offset;
  auto y = year_of(utc_s + p.std_offset);
  auto start = dst_start(p, y), end = dst_end(p, y);
  bool dst = start < end ? (utc_s >= start && utc_s < end) : !(utc_s >= end && utc_s < start);
  return dst ? p.dst_offset : p.std_offset;
}

std::optional<transition> footer_next(const posix_tz& p, std::int64_t utc_s) {
  if (!p.has_dst || p.dst_offset == p.std_offset) return std::nullopt;
  std::optional<transition> best;
  auto y = year_of(utc_s + p.std_offset);
  for (int yy = y - 1; yy <= y + 1; ++yy) {
    for (auto t : {transition{dst_start(p, yy), p.std_offset, p.dst_offset},
                   transition{dst_end(p, yy), p.dst_offset, p.std_offset}})
      if (t.at > utc_s && (!best || t.at < best->at)) best = t;
  }
  return best;
}

} // namespace

std::optional<posix_tz> parse_posix_tz(std::string_view s) {
  cursor c{s};
  posix_tz p;
  if (!zone_abbrev(c)) return std::nullopt;
  auto off = hms(c, 24);
  if (!off) return std::nullopt;
  p.std_offset = -*off; // POSIX counts west of Greenwich
  if (c.done()) return p;
  if (!zone_abbrev(c)) return std::nullopt;
  p.has_dst = true;
  p.dst_offset = p.std_offset + 3600;
  if (!c.done() && c.peek() != ',') {
    auto d = hms(c, 24);
    if (!d) return std::nullopt;
    p.dst_offset = -*d;
  }
  if (!c.eat(',')) return std::nullopt; // DST without a rule
  auto start = rule_date(c);
  if (!start || !c.eat(',')) return std::nullopt;
  auto end = rule_date(c);
  if (!end || !c.done()) return std::nullopt;
  p.start = *start, p.end = *end;
  return p;
}

std::int32_t zone_data::offset_at(std::int64_t utc_s) const {
  if (times.empty()) return footer ? footer_offset(*footer, utc_s) : initial;
  if (utc_s < times.front()) return initial;
  if (utc_s > times.back()) return footer ? footer_offset(*footer, utc_s) : offsets.back();
  auto i = std::upper_bound(times.begin(), times.end(), utc_s) - times.begin();
  return offsets[static_cast<std::size_t>(i - 1)];
}

std::optional<transition> zone_data::next_transition(std::int64_t utc_s) const {
  auto i = static_cast<std::size_t>(std::upper_bound(times.begin(), times.end(), utc_s) - times.begin());
  for (; i < times.size(); ++i) {
    auto before = i == 0 ? initial : offsets[i - 1];
    if (before != offsets[i]) return transition{times[i], before, offsets[i]};
  }
  if (!footer) return std::nullopt;
  return footer_next(*footer, times.empty() ? utc_s : std::max(utc_s, times.back()));
}

zone_data parse_tzif(std::string name, std::string_view bytes) {
  zone_data z;
  z.name = std::move(name);
  reader r{bytes};
  bool v1_only = bytes.size() > 4 && bytes[4] == '\0';
  auto h = read_header(r, v1_only);
  if (v1_only) {
    read_block(r, h, 4, z);
    return z;
  }
  r.take(block_size(h, 4)); // the v1 block: 32-bit times, superseded
  auto h2 = read_header(r, true);
  read_block(r, h2, 8, z);
  auto rest = r.rest();
  if (rest.empty() || rest[0] != '\n') bad_tzif("no footer");
  auto nl = rest.find('\n', 1);
  if (nl == std::string_view::npos) bad_tzif("unterminated footer");
  z.footer_text = std::string{rest.substr(1, nl - 1)};
  if (!z.footer_text.empty()) z.footer = parse_posix_tz(z.footer_text);
  return z;
}

void check_zone_name(std::string_view name) {
  auto bad = [&](const char* why) {
    throw std::invalid_argument("time zone \"" + std::string{name} + "\": " + why);
  };
  if (name.empty()) bad("empty name");
  if (name.size() > 255) bad("name too long");
  if (name.front() == '/') bad("must be a name like Europe/Berlin, not an absolute path");
  if (name.find("..") != std::string_view::npos) bad("must not contain \"..\"");
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+' || c == '.';
    if (!ok) bad("unexpected character in name");
  }
}

std::optional<std::string> read_zone_file(const std::string& path, std::string& why) {
  int fd;
  do fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) why = "not a regular file";
  else if (static_cast<std::uint64_t>(st.st_size) > max_zone_file) why = "larger than 1 MiB";
  char buf[8192];
  while (why.empty()) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) why = std::strerror(errno);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_zone_file) why = "larger than 1 MiB";
  }
  ::close(fd);
  if (!why.empty()) return std::nullopt;
  return out;
}

} // namespace plexus::actors::detail

namespace plexus::actors {

time_zone time_zone::locate(std::string_view name, std::string_view root) {
  if (name == "UTC") return {};
  detail::check_zone_name(name);
  auto path = std::string{root} + "/" + std::string{name};
  std::string why;
  auto bytes = detail::read_zone_file(path, why);
  if (!bytes)
    throw std::invalid_argument("time zone \"" + std::string{name} + "\": cannot read " + path + ": " + why);
  try {
    return from_tzif(name, *bytes);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("time zone \"" + std::string{name} + "\": " + path + ": " + e.what());
  }
}

time_zone time_zone::from_tzif(std::string_view name, std::string_view bytes) {
  return time_zone{std::make_shared<const detail::zone_data>(detail::parse_tzif(std::string{name}, bytes))};
}

const std::string& time_zone::name() const noexcept {
  static const std::string utc_name = "UTC";
  return data_ ? data_->name : utc_name;
}

std::chrono::seconds time_zone::offset_at(instant t) const {
  if (!data_) return std::chrono::seconds{0};
  auto s = std::chrono::floor<std::chrono::seconds>(t).time_since_epoch().count();
  return std::chrono::seconds{data_->offset_at(s)};
}

} // namespace plexus::actors
