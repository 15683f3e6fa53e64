// SPDX-License-Identifier: Apache-2.0
#pragma once

// Time zone rules from TZif (RFC 8536, v1-v3; v4 read as v3) and the
// POSIX TZ string in its footer. Offsets are seconds east of UTC (local =
// UTC + offset); instants are seconds since the epoch. Leap-second records
// are skipped ("right/" zones are not meant for this). The file read is
// read_zone_file alone; everything else takes bytes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace plexus::actors::detail {

/// `Mm.w.d` with its time of day (seconds, may be negative or past 24 h).
struct posix_date {
  unsigned month = 0, week = 0, weekday = 0;
  std::int32_t time = 7200;
};

/// A footer this reader understands: a fixed offset, or standard and
/// daylight offsets with `Mm.w.d` start and end rules.
struct posix_tz {
  std::int32_t std_offset = 0;
  bool has_dst = false;
  std::int32_t dst_offset = 0;
  posix_date start, end;
};

/// std::nullopt for forms not understood (Jn and n dates, DST without a rule).
[[nodiscard]] std::optional<posix_tz> parse_posix_tz(std::string_view s);

struct transition {
  std::int64_t at = 0;
  std::int32_t before = 0, after = 0;
};

struct zone_data {
  std::string name;
  std::vector<std::int64_t> times;    // ascending
  std::vector<std::int32_t> offsets;  // offsets[i] holds from times[i]
  std::int32_t initial = 0;           // before times.front() (type 0)
  std::optional<posix_tz> footer;     // after times.back(), or always if none
  std::string footer_text;            // as written, understood or not

  [[nodiscard]] std::int32_t offset_at(std::int64_t utc_s) const;
  /// The first change of offset strictly after utc_s.
  [[nodiscard]] std::optional<transition> next_transition(std::int64_t utc_s) const;
};

/// Throws std::invalid_argument ("TZif: <why>") on malformed bytes.
[[nodiscard]] zone_data parse_tzif(std::string name, std::string_view bytes);

/// Throws std::invalid_argument for a name that is not a relative path
/// made of zone-name characters, or that climbs (`..`).
void check_zone_name(std::string_view name);

/// The one file read: the whole file, or std::nullopt with `why` set.
[[nodiscard]] std::optional<std::string> read_zone_file(const std::string& path, std::string& why);

} // namespace plexus::actors::detail
