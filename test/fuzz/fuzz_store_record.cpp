// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the store's record decoder (brokers/store/record.hpp).
// The input is one control byte, which sets the bound on a record's length
// (13 + 257 * byte), then the records of a segment after its header.
// Whatever they hold, the decoder reads only inside them, returns records
// back to back from offset 0, each of which encodes back to exactly its
// bytes, and stops with a reason at the end of the last good one: `end`
// exactly when that is the end of the input. Both CRC32C paths agree.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.hpp"
#include "crc32c.hpp"
#include "record.hpp"

using namespace plexus::broker::store;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  plexus::fuzz::input in{data, size};
  const auto max = 13u + 257u * std::uint32_t{in.byte()};
  const auto bytes = in.bytes(size);

  decoder d{bytes, 0, max};
  std::size_t at = 0;
  std::string again;
  while (auto r = d.next()) {
    PLEXUS_FUZZ_CHECK(r->offset == at);
    PLEXUS_FUZZ_CHECK(r->size >= ack_record_size && r->size - record_header_size <= max);
    PLEXUS_FUZZ_CHECK(r->offset + r->size <= bytes.size());
    again.clear();
    switch (r->kind) {
      case record_kind::message:
        PLEXUS_FUZZ_CHECK(r->group.size() <= max_group_size);
        PLEXUS_FUZZ_CHECK(r->size == message_record_size(r->group.size(), r->body.size()));
        encode_message(again, r->id, r->group, r->body);
        break;
      case record_kind::ack:
        PLEXUS_FUZZ_CHECK(r->size == ack_record_size);
        encode_ack(again, r->id);
        break;
      case record_kind::ack_range:
        PLEXUS_FUZZ_CHECK(r->size == ack_range_record_size);
        encode_ack_range(again, r->id, r->count);
        break;
      default: PLEXUS_FUZZ_CHECK(false);
    }
    PLEXUS_FUZZ_CHECK(again == bytes.substr(r->offset, r->size));
    at += r->size;
  }
  PLEXUS_FUZZ_CHECK(d.stopped() != stop_reason::none);
  PLEXUS_FUZZ_CHECK(d.offset() == at);
  PLEXUS_FUZZ_CHECK((d.stopped() == stop_reason::end) == (at == bytes.size()));
  PLEXUS_FUZZ_CHECK(!d.next().has_value());

  (void) check_file_header(bytes);
  PLEXUS_FUZZ_CHECK(crc32c(bytes) == crc32c_portable(0, bytes));
  if (crc32c_sse42_available()) PLEXUS_FUZZ_CHECK(crc32c_sse42(0, bytes) == crc32c_portable(0, bytes));
  return 0;
}
