// SPDX-License-Identifier: Apache-2.0
#pragma once

// The store's on-disk format, sans-IO: encoding records into a buffer and
// decoding them from bytes, with no file in sight (the layout table is in
// README.md).
//
// A segment file is a 16-byte header ("PLXSTORE", u32 version 1, u32 0),
// then records. A record is `u32 len`, `u32 crc32c` of the `len` bytes that
// follow, then those bytes: `u8 kind` and the kind's fields. Integers are
// little-endian and fixed-width.
//
// The decoder returns records one by one and, when it stops, says why and
// at which offset: the end of the last good record. It never reads outside
// its bytes and never allocates, whatever they hold (a huge `len` is a bad
// length, not an allocation).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace plexus::broker::store {

inline constexpr std::string_view file_magic{"PLXSTORE"};
inline constexpr std::uint32_t format_version = 1;
inline constexpr std::size_t file_header_size = 16;
/// `u32 len` and `u32 crc32c`.
inline constexpr std::size_t record_header_size = 8;
/// The default bound on `len`: a 64 MiB body with room for its group.
inline constexpr std::uint32_t default_max_record = (64u << 20) + 4096u;
inline constexpr std::size_t max_group_size = 0xFFFF;

enum class record_kind : std::uint8_t {
  message = 1,   // u64 id, u16 group_len, group, body (the rest)
  ack = 2,       // u64 id
  ack_range = 3, // u64 first, u32 count
};

/// Bytes of a framed record (header included).
[[nodiscard]] constexpr std::size_t message_record_size(std::size_t group_size,
                                                        std::size_t body_size) noexcept {
  return record_header_size + 1 + 8 + 2 + group_size + body_size;
}
inline constexpr std::size_t ack_record_size = record_header_size + 1 + 8;
inline constexpr std::size_t ack_range_record_size = record_header_size + 1 + 8 + 4;

/// Appends the 16-byte segment file header to `out`.
void encode_file_header(std::string& out);

/// Appends a message record to `out`. `group` is at most max_group_size
/// bytes (asserted; the caller checks).
void encode_message(std::string& out, std::uint64_t id, std::string_view group,
                    std::string_view body);
void encode_ack(std::string& out, std::uint64_t id);
void encode_ack_range(std::string& out, std::uint64_t first, std::uint32_t count);

enum class header_status {
  ok,
  truncated,   // fewer than 16 bytes
  bad_magic,   // not "PLXSTORE"
  bad_version, // a format this code does not read
};

[[nodiscard]] header_status check_file_header(std::string_view bytes) noexcept;
[[nodiscard]] std::string_view to_string(header_status s) noexcept;

/// One decoded record. `group` and `body` view the decoder's bytes.
struct record {
  record_kind kind = record_kind::message;
  std::uint64_t id = 0;    // message, ack; ack_range: the first id
  std::uint32_t count = 0; // ack_range: ids id .. id + count - 1
  std::string_view group;  // message
  std::string_view body;   // message
  std::size_t offset = 0;  // where its header starts in the decoder's bytes
  std::size_t size = 0;    // header and payload
};

/// Why a decoder stopped.
enum class stop_reason {
  none,       // not stopped yet
  end,        // clean: the bytes end where a record does
  truncated,  // a partial header or payload at the end (a torn tail)
  bad_crc,    // the payload does not match its checksum
  bad_length, // `len` is 0, above the maximum, or does not fit the kind
  bad_kind,   // a checksummed payload of a kind this code does not know
};

[[nodiscard]] std::string_view to_string(stop_reason r) noexcept;

class decoder {
public:
  /// Decodes `bytes` from `offset` (a segment's records start at
  /// file_header_size). A `len` above `max_record` is a bad length.
  explicit decoder(std::string_view bytes, std::size_t offset = 0,
                   std::uint32_t max_record = default_max_record) noexcept
    : bytes_(bytes), offset_(offset <= bytes.size() ? offset : bytes.size()),
      max_record_(max_record) {}

  /// The next record, or nullopt once stopped (see stopped(), offset()).
  [[nodiscard]] std::optional<record> next() noexcept;

  /// stop_reason::none until next() has returned nullopt.
  [[nodiscard]] stop_reason stopped() const noexcept { return stopped_; }

  /// Where the next record starts; once stopped, the end of the last good
  /// record (where a torn tail is cut).
  [[nodiscard]] std::size_t offset() const noexcept { return offset_; }

private:
  std::optional<record> stop(stop_reason r) noexcept {
    stopped_ = r;
    return std::nullopt;
  }

  std::string_view bytes_;
  std::size_t offset_;
  std::uint32_t max_record_;
  stop_reason stopped_ = stop_reason::none;
};

} // namespace plexus::broker::store
