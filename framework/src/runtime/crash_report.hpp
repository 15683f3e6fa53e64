// SPDX-License-Identifier: Apache-2.0
#pragma once

// A handler's crash (it threw) gets one line on the node's stderr, naming
// the function, the message and its trace, and the exception's text. A
// crash storm (poison, a broken dependency) would drown everything else:
// past crash_lines_per_second lines in a second, the rest of that second's
// crashes are one summary line. crash_limiter is the counting, time passed
// in; report_crash is its shell (a process-wide limiter, stderr).

#include <chrono>
#include <cstdint>
#include <string_view>

namespace plexus::detail {

/// Crash lines a process prints in a second; past it, a summary line.
inline constexpr std::uint32_t crash_lines_per_second = 10;

/// Fixed windows of one second, each opened by the first crash after the
/// last one closed: the first `per_second` crashes of a window are
/// printed, the others counted, and the count reported once the window is
/// over (by the next crash, or by tick()).
class crash_limiter {
public:
  using clock = std::chrono::steady_clock;

  explicit crash_limiter(std::uint32_t per_second = crash_lines_per_second) noexcept
    : per_second_(per_second) {}

  struct verdict {
    bool print = false;            // this crash gets its line
    std::uint64_t unprinted = 0;   // crashes of the window just closed, summarised first
  };

  /// A crash at `now`.
  [[nodiscard]] verdict crash(clock::time_point now) noexcept {
    verdict v;
    if (open_ && now - start_ >= std::chrono::seconds{1}) v.unprinted = close();
    if (!open_) {
      open_ = true;
      start_ = now;
    }
    if (printed_ < per_second_) {
      ++printed_;
      v.print = true;
    } else {
      ++unprinted_;
    }
    return v;
  }

  /// The time is `now`: the unprinted crashes of a window that is over (0
  /// when there were none or it is still open), each reported once.
  [[nodiscard]] std::uint64_t tick(clock::time_point now) noexcept {
    if (!open_ || now - start_ < std::chrono::seconds{1}) return 0;
    return close();
  }

  /// The window ends now, over or not (the node stops): its unprinted
  /// crashes.
  [[nodiscard]] std::uint64_t close_window() noexcept { return open_ ? close() : 0; }

private:
  std::uint64_t close() noexcept {
    auto n = unprinted_;
    open_ = false;
    printed_ = 0;
    unprinted_ = 0;
    return n;
  }

  std::uint32_t per_second_;
  bool open_ = false;
  clock::time_point start_{};
  std::uint32_t printed_ = 0;
  std::uint64_t unprinted_ = 0;
};

/// One line on stderr for a crash of `function` ("service.function") on
/// message `msg_id` of trace `trace_id`, unless past this second's limit.
void report_crash(std::string_view function, std::string_view msg_id, std::string_view trace_id,
                  std::string_view what);

/// Prints the summary of a second that is over and had crashes past the
/// limit; the node calls it every second, and with `stopping` (the second
/// ends now) when it stops.
void flush_crash_reports(bool stopping = false);

} // namespace plexus::detail
