// SPDX-License-Identifier: Apache-2.0
// The on-disk store of durable queues (brokers/store): CRC32C, the record
// codec and the ledger without files, then the log on a real directory:
// recovery after torn tails and corruption, reclaiming space, the lock.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32c.hpp"
#include "ledger.hpp"
#include "log.hpp"
#include "record.hpp"

namespace fs = std::filesystem;
namespace st = plexus::broker::store;

namespace {

// A fresh directory under the build tree (mkdtemp), removed afterwards.
struct temp_dir {
  fs::path path;
  temp_dir() {
#ifdef PLEXUS_STORE_TEST_DIR
    fs::path base{PLEXUS_STORE_TEST_DIR};
#else
    fs::path base = fs::temp_directory_path();
#endif
    std::string tmpl = (base / "store_test.XXXXXX").string();
    BOOST_TEST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] fs::path store() const { return path / "store"; }
};

st::options opts(const fs::path& dir, std::uint64_t segment_bytes = 64ull << 20) {
  st::options o;
  o.dir = dir;
  o.segment_bytes = segment_bytes;
  return o;
}

std::vector<fs::path> segment_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator{dir})
    if (e.path().extension() == ".seg") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

void write_file(const fs::path& p, std::string_view bytes) {
  std::ofstream out{p, std::ios::binary | std::ios::trunc};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::uint64_t dir_bytes(const fs::path& dir) {
  std::uint64_t n = 0;
  for (const auto& p : segment_files(dir)) n += fs::file_size(p);
  return n;
}

std::string body_of(std::uint64_t i, std::size_t size = 20) {
  std::string b(size, '\0');
  for (std::size_t k = 0; k < size; ++k) b[k] = static_cast<char>((i * 31 + k * 7) & 0xFF);
  return b;
}

std::vector<std::uint64_t> ids_of(const std::vector<st::recovered>& r) {
  std::vector<std::uint64_t> out;
  for (const auto& m : r) out.push_back(m.id);
  return out;
}

// The records of a segment file's bytes.
std::vector<st::record> records_of(std::string_view file) {
  std::vector<st::record> out;
  st::decoder d{file, st::file_header_size};
  while (auto r = d.next()) out.push_back(*r);
  return out;
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

} // namespace

BOOST_AUTO_TEST_SUITE(store)

// ------------------------------------------------------------ crc32c

BOOST_AUTO_TEST_CASE(crc32c_matches_the_check_value_and_rfc3720_vectors_on_every_path) {
  using fn = std::uint32_t (*)(std::uint32_t, std::string_view) noexcept;
  std::vector<std::pair<const char*, fn>> paths{{"portable", st::crc32c_portable}};
  if (st::crc32c_sse42_available()) paths.emplace_back("sse42", st::crc32c_sse42);
  BOOST_TEST_MESSAGE("crc32c paths tested: " << paths.size());

  std::string ascending(32, '\0'), descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[static_cast<std::size_t>(i)] = static_cast<char>(i);
    descending[static_cast<std::size_t>(i)] = static_cast<char>(31 - i);
  }
  for (const auto& [name, f] : paths) {
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(f(0, "123456789") == 0xE3069283u);
      BOOST_TEST(f(0, std::string(32, '\0')) == 0x8A9136AAu);
      BOOST_TEST(f(0, std::string(32, '\xFF')) == 0x62A8AB43u);
      BOOST_TEST(f(0, ascending) == 0x46DD794Eu);
      BOOST_TEST(f(0, descending) == 0x113FDB5Cu);
      BOOST_TEST(f(0, "") == 0u);
      // Extending: the CRC of a + b from the CRC of a.
      BOOST_TEST(f(f(0, "12345"), "6789") == 0xE3069283u);
    }
  }
  BOOST_TEST(st::crc32c("123456789") == 0xE3069283u);

  // Every length and alignment agrees between the two paths.
  std::mt19937 rng{7};
  std::string data(300, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  for (std::size_t at = 0; at < 9; ++at)
    for (std::size_t n = 0; at + n <= data.size(); n += 13) {
      auto s = std::string_view{data}.substr(at, n);
      BOOST_TEST_REQUIRE(st::crc32c_sse42(0, s) == st::crc32c_portable(0, s));
      BOOST_TEST_REQUIRE(st::crc32c(s) == st::crc32c_portable(0, s));
    }
}

// ------------------------------------------------------------ record codec

BOOST_AUTO_TEST_CASE(records_round_trip_through_the_decoder) {
  std::string bytes;
  st::encode_file_header(bytes);
  BOOST_TEST(bytes.size() == st::file_header_size);
  BOOST_TEST((st::check_file_header(bytes) == st::header_status::ok));
  std::string binary_body{"a\0b\xFF", 4};
  st::encode_message(bytes, 1, "orders", "hello");
  st::encode_message(bytes, 0xFFFFFFFFFFFFFFFFull, "", "");
  st::encode_message(bytes, 3, std::string(st::max_group_size, 'g'), binary_body);
  st::encode_ack(bytes, 42);
  st::encode_ack_range(bytes, 100, 0xFFFFFFFFu);
  BOOST_TEST(bytes.size() == st::file_header_size + st::message_record_size(6, 5)
                                 + st::message_record_size(0, 0)
                                 + st::message_record_size(st::max_group_size, 4)
                                 + st::ack_record_size + st::ack_range_record_size);

  st::decoder d{bytes, st::file_header_size};
  auto r = d.next();
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST((r->kind == st::record_kind::message));
  BOOST_TEST(r->id == 1u);
  BOOST_TEST(r->group == "orders");
  BOOST_TEST(r->body == "hello");
  BOOST_TEST(r->offset == st::file_header_size);
  BOOST_TEST(r->size == st::message_record_size(6, 5));
  r = d.next();
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST(r->id == 0xFFFFFFFFFFFFFFFFull);
  BOOST_TEST(r->group.empty());
  BOOST_TEST(r->body.empty());
  r = d.next();
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST(r->group.size() == st::max_group_size);
  BOOST_TEST(r->body == binary_body);
  r = d.next();
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST((r->kind == st::record_kind::ack));
  BOOST_TEST(r->id == 42u);
  r = d.next();
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST((r->kind == st::record_kind::ack_range));
  BOOST_TEST(r->id == 100u);
  BOOST_TEST(r->count == 0xFFFFFFFFu);
  BOOST_TEST(!d.next().has_value());
  BOOST_TEST((d.stopped() == st::stop_reason::end));
  BOOST_TEST(d.offset() == bytes.size());
  BOOST_TEST(!d.next().has_value()); // stays stopped
  BOOST_TEST((d.stopped() == st::stop_reason::end));

  // The layout, byte for byte: len, crc, kind, id.
  std::string ack;
  st::encode_ack(ack, 0x0102030405060708ull);
  BOOST_TEST(ack.size() == 17u);
  BOOST_TEST(ack.substr(0, 4) == std::string("\x09\0\0\0", 4));
  BOOST_TEST(ack.substr(8) == std::string("\x02\x08\x07\x06\x05\x04\x03\x02\x01", 9));
  auto crc = st::crc32c(ack.substr(8));
  for (std::size_t i = 0; i < 4; ++i)
    BOOST_TEST(static_cast<unsigned char>(ack[4 + i]) == ((crc >> (8 * i)) & 0xFFu));
}

BOOST_AUTO_TEST_CASE(file_header_check_names_what_is_wrong) {
  std::string h;
  st::encode_file_header(h);
  BOOST_TEST(h.substr(0, 8) == "PLXSTORE");
  BOOST_TEST(h.substr(8) == std::string("\x01\0\0\0\0\0\0\0", 8));
  BOOST_TEST((st::check_file_header(h.substr(0, 15)) == st::header_status::truncated));
  auto bad = h;
  bad[0] = 'X';
  BOOST_TEST((st::check_file_header(bad) == st::header_status::bad_magic));
  bad = h;
  bad[8] = 2;
  BOOST_TEST((st::check_file_header(bad) == st::header_status::bad_version));
}

BOOST_AUTO_TEST_CASE(decoder_names_every_stop_reason_at_the_end_of_the_last_good_record) {
  std::string good;
  st::encode_message(good, 7, "g", "body");
  const auto n = good.size();

  auto stop_of = [](std::string_view bytes, std::uint32_t max = st::default_max_record) {
    st::decoder d{bytes, 0, max};
    std::size_t count = 0;
    while (d.next()) ++count;
    return std::make_tuple(d.stopped(), d.offset(), count);
  };
  using sr = st::stop_reason;

  BOOST_TEST((std::get<0>(stop_of("")) == sr::end));
  BOOST_TEST((std::get<0>(stop_of(good)) == sr::end));

  // Truncated: every cut of the second record, header or payload.
  for (std::size_t cut = 1; cut < n; ++cut) {
    auto [why, at, count] = stop_of(good + good.substr(0, cut));
    BOOST_TEST_REQUIRE((why == sr::truncated));
    BOOST_TEST_REQUIRE(at == n);
    BOOST_TEST_REQUIRE(count == 1u);
  }

  // Bad crc: a flipped bit in the payload or in the crc itself.
  for (std::size_t i = 8; i < n; ++i) {
    auto bad = good + good;
    bad[n + i] = static_cast<char>(bad[n + i] ^ 0x10);
    auto [why, at, count] = stop_of(bad);
    BOOST_TEST_REQUIRE((why == sr::bad_crc));
    BOOST_TEST_REQUIRE(at == n);
    BOOST_TEST_REQUIRE(count == 1u);
  }
  for (std::size_t i = 4; i < 8; ++i) {
    auto bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 1);
    BOOST_TEST((std::get<0>(stop_of(bad)) == sr::bad_crc));
  }

  // Bad length: 0, over the maximum (no allocation: 4 GiB claimed), or a
  // payload that does not fit its kind.
  BOOST_TEST((std::get<0>(stop_of(good + std::string(8, '\0'))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(std::string("\xFF\xFF\xFF\xFF\0\0\0\0", 8))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(good, static_cast<std::uint32_t>(n - 9))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(good, static_cast<std::uint32_t>(n - 8))) == sr::end));

  auto frame = [](std::string payload) {
    std::string out;
    auto len = static_cast<std::uint32_t>(payload.size());
    auto crc = st::crc32c(payload);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xFFu));
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xFFu));
    return out + payload;
  };
  // An ack one byte short, one byte long; an ack range short; a message
  // without its group length; a group length past the payload.
  BOOST_TEST((std::get<0>(stop_of(frame(std::string("\x02", 1) + std::string(7, 'x')))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(frame(std::string("\x02", 1) + std::string(9, 'x')))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(frame(std::string("\x03", 1) + std::string(11, 'x')))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(frame(std::string("\x01", 1) + std::string(9, 'x')))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(frame(std::string("\x01", 1) + std::string(8, '\0') + "\x05\0abcd"))) == sr::bad_length));
  BOOST_TEST((std::get<0>(stop_of(frame(std::string("\x01", 1) + std::string(8, '\0') + std::string("\x04\0abcd", 6)))) == sr::end));

  // Bad kind: checksummed, but no kind this code knows.
  for (char kind : {'\0', '\x04', '\xFF'}) {
    auto [why, at, count] = stop_of(good + frame(std::string(1, kind) + std::string(8, 'x')));
    BOOST_TEST((why == sr::bad_kind));
    BOOST_TEST(at == n);
    BOOST_TEST(count == 1u);
  }

  // A decoder that starts past the end stops there cleanly.
  st::decoder past{good, n + 5};
  BOOST_TEST(!past.next().has_value());
  BOOST_TEST((past.stopped() == sr::end));
  BOOST_TEST(past.offset() == n);
}

BOOST_AUTO_TEST_CASE(decoder_survives_random_garbage_and_mutated_records) {
  std::mt19937_64 rng{2024};
  std::string valid;
  for (std::uint64_t i = 1; i <= 20; ++i) {
    if (i % 5 == 0) st::encode_ack_range(valid, i - 4, 3);
    else if (i % 3 == 0) st::encode_ack(valid, i - 1);
    else st::encode_message(valid, i, std::string(i % 4, 'q'), body_of(i, i * 3));
  }
  std::vector<st::record> originals;
  {
    st::decoder d{valid};
    while (auto r = d.next()) originals.push_back(*r);
  }
  BOOST_TEST_REQUIRE(originals.size() == 20u);

  auto check = [](const std::string& input, std::uint32_t max) {
    // A heap copy of exactly the input's size, so a sanitizer sees overreads.
    std::unique_ptr<char[]> copy{new char[input.size() + 1]};
    std::copy(input.begin(), input.end(), copy.get());
    std::string_view bytes{copy.get(), input.size()};
    st::decoder d{bytes, 0, max};
    std::size_t at = 0, count = 0;
    while (auto r = d.next()) {
      BOOST_TEST_REQUIRE(r->offset == at);
      BOOST_TEST_REQUIRE(r->size >= st::record_header_size + 9);
      BOOST_TEST_REQUIRE(r->offset + r->size <= bytes.size());
      if (r->kind == st::record_kind::message) {
        // Where the views point, as offsets (BOOST_TEST would compare char* as strings).
        auto group_at = static_cast<std::size_t>(r->group.data() - bytes.data());
        auto body_end = static_cast<std::size_t>(r->body.data() - bytes.data()) + r->body.size();
        BOOST_TEST_REQUIRE(group_at == r->offset + st::record_header_size + 11);
        BOOST_TEST_REQUIRE(body_end == r->offset + r->size);
      }
      at += r->size;
      ++count;
    }
    BOOST_TEST_REQUIRE((d.stopped() != st::stop_reason::none));
    BOOST_TEST_REQUIRE(d.offset() == at);
    BOOST_TEST_REQUIRE(((d.stopped() == st::stop_reason::end) == (at == bytes.size())));
    return count;
  };

  for (int round = 0; round < 3000; ++round) {
    std::string garbage(rng() % 200, '\0');
    for (auto& c : garbage) c = static_cast<char>(rng());
    // Plausible headers now and then: a small len.
    if (garbage.size() >= 8 && rng() % 2 == 0) garbage[0] = static_cast<char>(rng() % 64), garbage[1] = garbage[2] = garbage[3] = 0;
    check(garbage, 128);

    auto mutated = valid;
    auto where = rng() % mutated.size();
    mutated[where] = static_cast<char>(mutated[where] ^ (1 + rng() % 255));
    if (rng() % 3 == 0) mutated.resize(rng() % mutated.size());
    auto count = check(mutated, st::default_max_record);
    // Whatever came before the damage is decoded as it was.
    st::decoder d{mutated};
    for (std::size_t i = 0; i < count; ++i) {
      auto r = d.next();
      BOOST_TEST_REQUIRE(r.has_value());
      if (originals[i].offset + originals[i].size <= std::min<std::size_t>(where, mutated.size())) {
        BOOST_TEST_REQUIRE(r->id == originals[i].id);
        BOOST_TEST_REQUIRE(r->body == originals[i].body);
      }
    }
  }
}

// ------------------------------------------------------------ ledger

BOOST_AUTO_TEST_CASE(ledger_deletes_only_a_prefix_so_an_ack_never_outlives_its_message) {
  st::ledger l;
  l.open_segment(1, 16); // segment 1: messages 1 and 2
  BOOST_TEST(l.add_message(1, 16, 100));
  BOOST_TEST(l.add_message(2, 116, 100));
  l.open_segment(3, 16); // segment 2: message 3, acked there
  BOOST_TEST(l.add_message(3, 16, 100));
  BOOST_TEST(l.ack(3));
  l.add_bytes(17);
  l.open_segment(4, 16); // segment 3: only the ack of message 1
  BOOST_TEST(l.ack(1));
  l.add_bytes(17);
  l.open_segment(4 + 1, 16); // the head
  l.committed();
  BOOST_TEST(l.segments() == 4u);
  BOOST_TEST(l.live_messages() == 1u);

  // Segments 2 and 3 hold nothing live, but segment 1 still holds message 2:
  // deleting segment 3 now would bring message 1 back at the next recovery.
  BOOST_TEST(l.deletable() == 0u);
  BOOST_TEST(!l.ack(1)); // acked already
  BOOST_TEST(!l.ack(99)); // unknown

  BOOST_TEST(l.ack(2));
  l.add_bytes(17);
  BOOST_TEST(l.deletable() == 3u); // never the head
  auto before = l.disk_bytes();
  l.drop_oldest();
  BOOST_TEST(l.disk_bytes() == before - (16 + 200));
  BOOST_TEST(l.oldest().base == 3u);
  BOOST_TEST(l.deletable() == 2u);
  l.drop_oldest();
  l.drop_oldest();
  BOOST_TEST(l.deletable() == 0u);
  BOOST_TEST(l.segments() == 1u);
  BOOST_TEST(l.disk_bytes() == 16u + 17u);
  BOOST_TEST(l.live_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(ledger_holds_new_and_compacted_segments_until_committed) {
  st::ledger l;
  l.open_segment(1, 16);
  l.add_message(1, 16, 50);
  l.open_segment(2, 16);
  l.open_segment(3, 16);
  // Segment 2 is dead but not yet on disk: held.
  BOOST_TEST(l.ack(1));
  BOOST_TEST(l.deletable() == 0u);
  l.committed();
  BOOST_TEST(l.deletable() == 2u);

  // A message moved to the head: its old segment waits for the copy's commit.
  st::ledger m;
  m.open_segment(1, 16);
  m.add_message(1, 16, 50);
  m.add_message(2, 66, 50);
  m.open_segment(3, 16);
  m.committed();
  BOOST_TEST(m.ack(2));
  BOOST_TEST(!m.add_message(1, 16, 50)); // the copy, same id
  BOOST_TEST(m.live_messages() == 1u);
  BOOST_TEST(m.find(1)->segment == m.head_seq());
  BOOST_TEST(m.oldest().live == 0u);
  BOOST_TEST(m.deletable() == 0u);
  m.committed();
  BOOST_TEST(m.deletable() == 1u);
}

// A segment the head rolled away from may still have its last records in
// the log's buffer: the ledger holds it until the commit that writes them,
// for deletion and for compaction (which reads the file).
BOOST_AUTO_TEST_CASE(ledger_holds_a_segment_until_the_commit_after_its_last_record) {
  st::ledger l;
  l.open_segment(1, 16);
  l.add_message(1, 16, 100);
  l.add_message(2, 116, 100);
  l.committed();
  BOOST_TEST(l.ack(1));
  l.add_bytes(17); // the acks, after the commit
  BOOST_TEST(l.ack(2));
  l.add_bytes(17);
  l.open_segment(3, 16);
  BOOST_TEST(l.oldest().live == 0u);
  BOOST_TEST(l.deletable() == 0u);
  l.committed();
  BOOST_TEST(l.deletable() == 1u);

  st::ledger m;
  m.open_segment(1, 0);
  for (std::uint64_t id = 1; id <= 10; ++id) m.add_message(id, (id - 1) * 100, 100);
  m.committed();
  for (std::uint64_t id = 1; id <= 9; ++id) {
    BOOST_TEST(m.ack(id));
    m.add_bytes(17);
  }
  m.open_segment(11, 0);
  // 100 live bytes of 1153, the store mostly dead: due, once written.
  BOOST_TEST(!m.compaction_due(0.25));
  m.committed();
  BOOST_TEST(m.compaction_due(0.25));
}

BOOST_AUTO_TEST_CASE(ledger_ack_range_walks_live_ids_only) {
  st::ledger l;
  l.open_segment(1, 16);
  for (std::uint64_t id = 1; id <= 10; ++id) l.add_message(id, 16 + (id - 1) * 40, 40);
  l.ack(5);
  BOOST_TEST(l.ack_range(3, 5) == 4u); // 3, 4, 6, 7
  BOOST_TEST(l.live_messages() == 5u);
  BOOST_TEST(l.ack_range(0, 0) == 0u);
  BOOST_TEST(l.ack_range(0xFFFFFFFFFFFFFFF0ull, 0xFFFFFFFFu) == 0u); // no wrap
  BOOST_TEST(l.ack_range(9, 0xFFFFFFFFu) == 2u);
  std::vector<std::uint64_t> left;
  l.scan([&](std::uint64_t id, const st::ledger::location&) { left.push_back(id); });
  BOOST_TEST((left == std::vector<std::uint64_t>{1, 2, 8}));
  BOOST_TEST(l.live_bytes() == 3u * 40u);
}

BOOST_AUTO_TEST_CASE(ledger_compacts_a_mostly_dead_oldest_segment_of_a_mostly_dead_store) {
  st::ledger l;
  l.open_segment(1, 16);
  for (std::uint64_t id = 1; id <= 10; ++id) l.add_message(id, 16 + (id - 1) * 100, 100);
  l.open_segment(11, 16);
  for (std::uint64_t id = 11; id <= 20; ++id) l.add_message(id, 16 + (id - 11) * 100, 100);
  l.committed();
  // Everything live: nothing to gain.
  BOOST_TEST(!l.compaction_due(0.25));
  for (std::uint64_t id = 1; id <= 8; ++id) l.ack(id);
  // Oldest 200 of 1016 live (under 25%), but the store is 1200 live of
  // 2032: not mostly dead.
  BOOST_TEST(!l.compaction_due(0.25));
  for (std::uint64_t id = 11; id <= 20; ++id) l.ack(id);
  l.open_segment(21, 16);
  l.committed();
  // Now 200 live of 2048: compact the oldest; it frees itself and the dead
  // segment it pins.
  BOOST_TEST(l.compaction_due(0.25));
  BOOST_TEST(!l.compaction_due(0.0));
  auto live = l.live_in_oldest();
  BOOST_TEST_REQUIRE(live.size() == 2u);
  BOOST_TEST(live[0].first == 9u);
  BOOST_TEST(live[1].first == 10u);
  BOOST_TEST(live[0].second.offset == 16u + 8u * 100u);
  // Only the oldest, never the head: a store of one segment is left alone.
  st::ledger one;
  one.open_segment(1, 16);
  one.add_message(1, 16, 100);
  one.add_bytes(100000);
  one.committed();
  BOOST_TEST(!one.compaction_due(1.0));
}

BOOST_AUTO_TEST_CASE(ledger_compaction_trigger_counts_the_dead_segments_the_oldest_pins) {
  // The oldest is 40% live: by itself not worth moving, but while it stays,
  // the dead segments behind it cannot go either.
  st::ledger l;
  l.open_segment(1, 0);
  for (std::uint64_t id = 1; id <= 10; ++id) l.add_message(id, (id - 1) * 100, 100);
  for (std::uint64_t id = 1; id <= 6; ++id) l.ack(id);
  for (std::uint64_t base : {11, 21, 31}) {
    l.open_segment(base, 0);
    for (std::uint64_t id = base; id < base + 10; ++id) l.add_message(id, (id - base) * 100, 100);
  }
  l.open_segment(41, 0);
  l.committed();
  BOOST_TEST(!l.compaction_due(0.25)); // 3400 of 4000 live
  BOOST_TEST(l.ack_range(11, 20) == 20u);
  // 1400 of 4000 live; the oldest's 400 against the 3000 it frees.
  BOOST_TEST(l.compaction_due(0.25));
  BOOST_TEST(!l.compaction_due(0.1));
  BOOST_TEST(l.deletable() == 0u);
}

// ------------------------------------------------------------ log

BOOST_AUTO_TEST_CASE(reopened_log_recovers_exactly_the_unacked_messages_and_continues_ids) {
  temp_dir tmp;
  std::vector<std::uint64_t> ids;
  {
    st::log l{opts(tmp.store())};
    BOOST_TEST(fs::is_directory(tmp.store()));
    BOOST_TEST(((fs::status(tmp.store()).permissions() & fs::perms::all) == fs::perms::owner_all));
    BOOST_TEST(l.report().segments == 0u);
    BOOST_TEST(l.take_recovered().empty());
    for (std::uint64_t i = 0; i < 50; ++i)
      ids.push_back(l.append(i % 2 == 0 ? "even" : "odd", body_of(i, 10 + i)));
    for (std::size_t i = 1; i < ids.size(); ++i) BOOST_TEST_REQUIRE(ids[i] > ids[i - 1]);
    for (std::size_t i = 0; i < ids.size(); i += 3) l.ack(ids[i]);
    l.ack(ids[0]);  // again
    l.ack(123456);  // never appended
    BOOST_TEST(l.unknown_acks() == 2u);
    BOOST_TEST(l.live_messages() == 33u);
    BOOST_TEST(l.commit() == ids.back());
  }
  std::vector<std::uint64_t> expect;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (i % 3 != 0) expect.push_back(ids[i]);
  std::uint64_t next;
  {
    st::log l{opts(tmp.store())};
    BOOST_TEST(l.report().segments == 1u);
    BOOST_TEST(l.report().records == 50u + 17u);
    BOOST_TEST(l.report().live == expect.size());
    BOOST_TEST(l.report().problems.empty());
    BOOST_TEST(l.report().torn_bytes == 0u);
    BOOST_TEST(l.durable_id() == ids.back());
    // Records may move only once they are handed over.
    BOOST_CHECK_THROW(l.maintain(), std::logic_error);
    auto got = l.take_recovered();
    BOOST_TEST(ids_of(got) == expect);
    BOOST_CHECK_NO_THROW(l.maintain());
    for (const auto& m : got) {
      auto i = static_cast<std::size_t>(std::find(ids.begin(), ids.end(), m.id) - ids.begin());
      BOOST_TEST_REQUIRE(m.group == (i % 2 == 0 ? "even" : "odd"));
      BOOST_TEST_REQUIRE(m.body == body_of(i, 10 + i));
    }
    BOOST_TEST(l.take_recovered().empty()); // once
    next = l.append("even", "after");
    BOOST_TEST(next > ids.back());
    // Ack everything: a reopening still continues after the last id.
    for (auto id : expect) l.ack(id);
    l.ack(next);
    l.commit();
  }
  {
    st::log l{opts(tmp.store())};
    BOOST_TEST(l.take_recovered().empty());
    BOOST_TEST(l.append("even", "later") > next);
  }
}

BOOST_AUTO_TEST_CASE(ids_continue_after_every_message_and_its_segment_are_gone) {
  temp_dir tmp;
  // Four 60-byte records fill a 256-byte segment: the acks go to the next.
  auto o = opts(tmp.store(), st::file_header_size + 4 * st::message_record_size(1, 40));
  {
    st::log l{o};
    for (std::uint64_t i = 0; i < 4; ++i) l.append("q", body_of(i, 40));
    BOOST_TEST(l.segments() == 1u);
    l.ack_range(1, 4);
    BOOST_TEST(l.segments() == 2u);
    l.commit();
    l.maintain();
    l.commit();
  }
  auto files = segment_files(tmp.store());
  BOOST_TEST_REQUIRE(files.size() == 1u); // acks only
  BOOST_TEST(files[0].filename() == "0000000000000005.seg");
  st::log l{o};
  BOOST_TEST(l.take_recovered().empty());
  BOOST_TEST(l.durable_id() == 4u);
  BOOST_TEST(l.append("q", "next") == 5u);
}

BOOST_AUTO_TEST_CASE(ack_range_settles_every_live_id_in_it_and_survives_reopening) {
  temp_dir tmp;
  {
    st::log l{opts(tmp.store())};
    for (int i = 0; i < 100; ++i) l.append("g", body_of(static_cast<std::uint64_t>(i)));
    l.ack(50);
    l.ack_range(41, 20); // 41..60: 19 live, 50 acked already
    BOOST_TEST(l.unknown_acks() == 1u);
    l.ack_range(95, 10); // 95..104: 6 live
    BOOST_TEST(l.unknown_acks() == 5u);
    l.ack_range(200, 5); // nothing live: no record
    BOOST_TEST(l.live_messages() == 100u - 1u - 19u - 6u);
    l.commit();
  }
  st::log l{opts(tmp.store())};
  BOOST_TEST(l.report().records == 100u + 1u + 2u);
  std::vector<std::uint64_t> expect;
  for (std::uint64_t id = 1; id <= 100; ++id)
    if ((id < 41 || id > 60) && id < 95) expect.push_back(id);
  BOOST_TEST(ids_of(l.take_recovered()) == expect);
}

BOOST_AUTO_TEST_CASE(durable_id_moves_only_on_commit_and_an_idle_commit_makes_no_call) {
  temp_dir tmp;
  st::log l{opts(tmp.store())};
  BOOST_TEST(l.durable_id() == 0u);
  BOOST_TEST(!l.pending());
  auto a = l.append("g", "a");
  BOOST_TEST(l.pending());
  BOOST_TEST(l.durable_id() == 0u);
  BOOST_TEST(segment_files(tmp.store()).empty()); // buffered, not even created
  auto before = l.fsyncs();
  BOOST_TEST(l.commit() == a);
  BOOST_TEST(l.durable_id() == a);
  BOOST_TEST(l.fsyncs() == before + 2); // the file, the directory it was created in
  BOOST_TEST(!l.pending());
  BOOST_TEST(l.commit() == a);
  BOOST_TEST(l.fsyncs() == before + 2); // nothing pending: no call
  auto b = l.append("g", "b");
  auto c = l.append("g", "c");
  BOOST_TEST(l.durable_id() == a);
  l.ack(a);
  BOOST_TEST(l.durable_id() == a);
  BOOST_TEST(l.commit() == c);
  BOOST_TEST(l.fsyncs() == before + 3); // one fdatasync for the batch
  BOOST_TEST(b < c);
  BOOST_TEST(l.durable_id() == c);
}

BOOST_AUTO_TEST_CASE(next_id_is_the_id_the_next_append_gets_after_appends_and_after_recovery) {
  temp_dir tmp;
  // Four 60-byte records fill a 256-byte segment, as above.
  auto o = opts(tmp.store(), st::file_header_size + 4 * st::message_record_size(1, 40));
  {
    st::log l{o};
    BOOST_TEST(l.next_id() == 1u); // a fresh directory
    for (std::uint64_t i = 0; i < 6; ++i) {
      auto before = l.next_id();
      BOOST_TEST(l.append("q", body_of(i, 40)) == before);
      BOOST_TEST(l.next_id() == before + 1);
    }
    l.ack(6);
    BOOST_TEST(l.next_id() == 7u); // an ack takes no id
    l.commit();
    BOOST_TEST(l.next_id() == 7u);
  }
  {
    st::log l{o};
    BOOST_TEST(l.next_id() == 7u); // above every id read, the acked last one included
    BOOST_TEST(l.take_recovered().size() == 5u);
    BOOST_TEST(l.next_id() == 7u);
    l.ack_range(1, 5);
    l.commit();
    l.maintain(); // the first segment goes
    l.commit();
  }
  BOOST_TEST(segment_files(tmp.store()).size() == 1u);
  {
    st::log l{o};
    BOOST_TEST(l.take_recovered().empty());
    // Every message acked, the first segment gone: ids still go on above
    // the last one, and the next append agrees.
    BOOST_TEST(l.next_id() == 7u);
    BOOST_TEST(l.append("q", "later") == 7u);
    BOOST_TEST(l.next_id() == 8u);
  }
}

BOOST_AUTO_TEST_CASE(torn_tail_cut_at_every_byte_of_the_last_record_recovers_the_rest) {
  temp_dir tmp;
  {
    st::log l{opts(tmp.store())};
    for (std::uint64_t i = 0; i < 5; ++i) l.append("q", body_of(i));
    l.commit();
  }
  auto files = segment_files(tmp.store());
  BOOST_TEST_REQUIRE(files.size() == 1u);
  const auto seg = files[0];
  const auto whole = read_file(seg);
  const auto records = records_of(whole);
  BOOST_TEST_REQUIRE(records.size() == 5u);
  const auto last_at = records.back().offset;
  BOOST_TEST_REQUIRE(last_at + records.back().size == whole.size());

  for (auto cut = last_at; cut < whole.size(); ++cut) {
    BOOST_TEST_CONTEXT("cut at " << cut) {
      write_file(seg, std::string_view{whole}.substr(0, cut));
      std::uint64_t added;
      {
        st::log l{opts(tmp.store())};
        const auto& rep = l.report();
        BOOST_TEST_REQUIRE(rep.torn_bytes == cut - last_at);
        BOOST_TEST_REQUIRE(l.torn_tails_cut() == (cut > last_at ? 1u : 0u));
        BOOST_TEST_REQUIRE(rep.problems.size() == (cut > last_at ? 1u : 0u));
        if (cut > last_at) {
          BOOST_TEST(contains(rep.problems[0], seg.filename().string()));
          BOOST_TEST(contains(rep.problems[0], "offset " + std::to_string(last_at)));
          BOOST_TEST(contains(rep.problems[0], "truncated"));
        }
        BOOST_TEST_REQUIRE(fs::file_size(seg) == last_at);
        BOOST_TEST_REQUIRE((ids_of(l.take_recovered()) == std::vector<std::uint64_t>{1, 2, 3, 4}));
        added = l.append("q", "again");
        BOOST_TEST_REQUIRE(added == 5u); // the cut id was never durable
        l.commit();
      }
      st::log l{opts(tmp.store())};
      BOOST_TEST_REQUIRE(l.report().problems.empty());
      BOOST_TEST_REQUIRE(l.report().torn_bytes == 0u);
      auto got = l.take_recovered();
      BOOST_TEST_REQUIRE(got.size() == 5u);
      BOOST_TEST_REQUIRE(got.back().id == added);
      BOOST_TEST_REQUIRE(got.back().body == "again");
    }
  }
}

BOOST_AUTO_TEST_CASE(flipped_byte_in_the_last_segment_stops_replay_there_and_is_reported) {
  temp_dir tmp;
  {
    st::log l{opts(tmp.store())};
    for (std::uint64_t i = 0; i < 5; ++i) l.append("q", body_of(i));
    l.commit();
  }
  const auto seg = segment_files(tmp.store()).at(0);
  auto bytes = read_file(seg);
  const auto records = records_of(bytes);
  const auto third = records.at(2);
  bytes[third.offset + third.size - 3] ^= 0x40; // inside its body
  write_file(seg, bytes);

  st::log l{opts(tmp.store())};
  BOOST_TEST((ids_of(l.take_recovered()) == std::vector<std::uint64_t>{1, 2}));
  BOOST_TEST_REQUIRE(l.report().problems.size() == 1u);
  const auto& line = l.report().problems[0];
  BOOST_TEST(contains(line, seg.string()));
  BOOST_TEST(contains(line, "offset " + std::to_string(third.offset)));
  BOOST_TEST(contains(line, "bad crc"));
  BOOST_TEST(l.report().torn_bytes == bytes.size() - third.offset);
  BOOST_TEST(fs::file_size(seg) == third.offset);
  // Ids 3..5 were cut: the next one may be 3 again, but never below.
  BOOST_TEST(l.append("q", "x") == 3u);
}

BOOST_AUTO_TEST_CASE(corruption_in_an_earlier_segment_keeps_what_is_before_it_and_later_segments) {
  temp_dir tmp;
  auto o = opts(tmp.store(), 256); // a few records a segment
  {
    st::log l{o};
    for (std::uint64_t i = 0; i < 40; ++i) l.append("q", body_of(i, 40));
    l.commit();
    BOOST_TEST(l.segments() > 5u);
  }
  const auto files = segment_files(tmp.store());
  BOOST_TEST_REQUIRE(files.size() > 5u);
  const auto victim = files[1];
  auto bytes = read_file(victim);
  const auto records = records_of(bytes);
  BOOST_TEST_REQUIRE(records.size() >= 2u);
  // Its second record claims a length past every limit.
  for (std::size_t i = 0; i < 4; ++i) bytes[records[1].offset + i] = '\xFF';
  write_file(victim, bytes);
  std::set<std::uint64_t> lost;
  for (std::size_t i = 1; i < records.size(); ++i) lost.insert(records[i].id);

  std::vector<std::uint64_t> expect;
  for (std::uint64_t id = 1; id <= 40; ++id)
    if (!lost.count(id)) expect.push_back(id);
  for (int round = 0; round < 2; ++round) {
    st::log l{o};
    BOOST_TEST(ids_of(l.take_recovered()) == expect);
    BOOST_TEST_REQUIRE(l.report().problems.size() == 1u);
    const auto& line = l.report().problems[0];
    BOOST_TEST(contains(line, victim.string()));
    BOOST_TEST(contains(line, "offset " + std::to_string(records[1].offset)));
    BOOST_TEST(contains(line, "bad length"));
    BOOST_TEST(l.report().torn_bytes == 0u);
    BOOST_TEST(fs::file_size(victim) == bytes.size()); // left as it is
    if (round == 0) {
      expect.push_back(l.append("q", "new"));
      l.commit();
    }
  }
}

// Recovery reads a segment a window (1 MiB) at a time, twice: to replay
// it, then to cut the live records out. Records straddle windows, one is
// bigger than a window, acks leave gaps; then a tear inside the big one.
BOOST_AUTO_TEST_CASE(recovery_reads_segments_a_window_at_a_time_whatever_the_record_sizes) {
  temp_dir tmp;
  auto o = opts(tmp.store(), 16ull << 20);
  struct sent {
    std::uint64_t id;
    std::uint64_t i;
    std::size_t size;
  };
  std::vector<sent> live;
  const std::uint64_t big_i = 700;
  std::uint64_t big_id = 0;
  {
    st::log l{o};
    std::uint32_t x = 1;
    for (std::uint64_t i = 0; i < 1500; ++i) {
      x = x * 1103515245u + 12345u;
      std::size_t size = i == big_i ? (5u << 19) : (x >> 16) % 4000; // 2.5 MiB, 0 .. 3999
      auto id = l.append("g" + std::to_string(i % 3), body_of(i, size));
      if (i == big_i) big_id = id;
      if (i % 3 == 1 && i != big_i) l.ack(id);
      else live.push_back(sent{id, i, size});
    }
    l.commit();
    BOOST_TEST_REQUIRE(l.segments() == 1u);
  }
  const auto seg = segment_files(tmp.store()).at(0);
  BOOST_TEST_REQUIRE(fs::file_size(seg) > (4u << 20)); // several windows
  auto check = [&](st::log& l, std::uint64_t below) {
    auto got = l.take_recovered();
    std::size_t k = 0;
    for (const auto& m : live) {
      if (m.id >= below) break;
      BOOST_TEST_REQUIRE(k < got.size());
      BOOST_TEST_REQUIRE(got[k].id == m.id);
      BOOST_TEST_REQUIRE(got[k].group == "g" + std::to_string(m.i % 3));
      BOOST_TEST_REQUIRE(got[k].body == body_of(m.i, m.size));
      ++k;
    }
    BOOST_TEST(got.size() == k);
  };
  {
    st::log l{o};
    BOOST_TEST(l.report().problems.empty());
    BOOST_TEST(l.report().records == 1500u + 500u - 1u);
    BOOST_TEST(l.report().live == live.size());
    check(l, std::numeric_limits<std::uint64_t>::max());
  }
  // Torn in the middle of the big record, past the first window.
  auto bytes = read_file(seg);
  const auto records = records_of(bytes);
  auto big = std::find_if(records.begin(), records.end(), [&](const st::record& r) {
    return r.kind == st::record_kind::message && r.id == big_id;
  });
  BOOST_TEST_REQUIRE((big != records.end()));
  BOOST_TEST_REQUIRE(big->offset > (1u << 20));
  const auto cut = big->offset + big->size / 2;
  write_file(seg, std::string_view{bytes}.substr(0, cut));
  st::log l{o};
  BOOST_TEST_REQUIRE(l.report().problems.size() == 1u);
  BOOST_TEST(contains(l.report().problems[0], "offset " + std::to_string(big->offset)));
  BOOST_TEST(contains(l.report().problems[0], "truncated"));
  BOOST_TEST(l.report().torn_bytes == cut - big->offset);
  BOOST_TEST(fs::file_size(seg) == big->offset);
  check(l, big_id);
  BOOST_TEST(dir_bytes(tmp.store()) == l.disk_bytes());
}

BOOST_AUTO_TEST_CASE(replay_goes_on_when_a_window_ends_exactly_where_a_record_does) {
  temp_dir tmp;
  // 16 + 257 x 4080 bytes is 1 MiB, recovery's window: the decoder meets a
  // clean end there, which is not the file's.
  constexpr std::size_t record = 4080;
  static_assert(st::file_header_size + 257 * record == (1u << 20));
  std::vector<std::uint64_t> ids;
  {
    st::log l{opts(tmp.store())};
    for (std::uint64_t i = 0; i < 300; ++i)
      ids.push_back(l.append("q", body_of(i, record - st::message_record_size(1, 0))));
    l.commit();
  }
  st::log l{opts(tmp.store())};
  BOOST_TEST(l.report().problems.empty());
  BOOST_TEST(l.report().records == 300u);
  auto got = l.take_recovered();
  BOOST_TEST(ids_of(got) == ids);
  BOOST_TEST_REQUIRE(got.size() == 300u);
  BOOST_TEST(got[257].body == body_of(257, record - st::message_record_size(1, 0)));
}

BOOST_AUTO_TEST_CASE(bad_record_past_the_first_window_of_an_earlier_segment_keeps_the_rest) {
  temp_dir tmp;
  auto o = opts(tmp.store(), 3u << 20);
  std::vector<std::uint64_t> ids;
  {
    st::log l{o};
    for (std::uint64_t i = 0; i < 4000; ++i) ids.push_back(l.append("q", body_of(i, 2000)));
    l.commit();
    BOOST_TEST_REQUIRE(l.segments() >= 3u);
  }
  const auto files = segment_files(tmp.store());
  auto bytes = read_file(files[0]);
  const auto records = records_of(bytes);
  auto victim = std::find_if(records.begin(), records.end(),
                             [](const st::record& r) { return r.offset > (3u << 19); });
  BOOST_TEST_REQUIRE((victim != records.end()));
  bytes[victim->offset + victim->size - 5] ^= 0x01;
  write_file(files[0], bytes);

  st::log l{o};
  BOOST_TEST_REQUIRE(l.report().problems.size() == 1u);
  const auto& line = l.report().problems[0];
  BOOST_TEST(contains(line, files[0].string()));
  BOOST_TEST(contains(line, "offset " + std::to_string(victim->offset)));
  BOOST_TEST(contains(line, "bad crc"));
  BOOST_TEST(contains(line, std::to_string(bytes.size() - victim->offset) + " bytes"));
  BOOST_TEST(fs::file_size(files[0]) == bytes.size()); // left as it is
  BOOST_TEST(dir_bytes(tmp.store()) == l.disk_bytes()); // the unread rest counted
  auto got = l.take_recovered();
  std::vector<std::uint64_t> expect;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < victim->id || ids[i] > records.back().id) expect.push_back(ids[i]);
  BOOST_TEST(ids_of(got) == expect);
  for (const auto& m : got) BOOST_TEST_REQUIRE(m.body == body_of(m.id - 1, 2000));
}

BOOST_AUTO_TEST_CASE(segment_with_a_foreign_header_is_skipped_and_a_zeroed_head_is_rewritten) {
  temp_dir tmp;
  auto o = opts(tmp.store(), 256);
  {
    st::log l{o};
    for (std::uint64_t i = 0; i < 12; ++i) l.append("q", body_of(i, 40));
    l.commit();
  }
  auto files = segment_files(tmp.store());
  BOOST_TEST_REQUIRE(files.size() >= 3u);
  // An earlier segment of another format: skipped, left alone.
  auto first = read_file(files[0]);
  first[8] = 9;
  write_file(files[0], first);
  // The last: its size reached the disk, its bytes did not.
  write_file(files.back(), std::string(fs::file_size(files.back()), '\0'));
  auto lost = records_of(read_file(files[1])).front().id;

  st::log l{o};
  const auto& rep = l.report();
  BOOST_TEST_REQUIRE(rep.problems.size() == 2u);
  BOOST_TEST(contains(rep.problems[0], files[0].string()));
  BOOST_TEST(contains(rep.problems[0], "version"));
  BOOST_TEST(contains(rep.problems[1], files.back().string()));
  BOOST_TEST(contains(rep.problems[1], "torn tail"));
  BOOST_TEST(fs::file_size(files[0]) == first.size());
  BOOST_TEST(fs::file_size(files.back()) == st::file_header_size);
  auto got = l.take_recovered();
  BOOST_TEST_REQUIRE(!got.empty());
  BOOST_TEST(got.front().id == lost);
  l.append("q", "x");
  l.commit();
  BOOST_TEST(segment_files(tmp.store()).size() == files.size());
}

BOOST_AUTO_TEST_CASE(steady_append_and_ack_keeps_segments_and_disk_bounded) {
  temp_dir tmp;
  constexpr std::uint64_t seg = 64 * 1024;
  st::log l{opts(tmp.store(), seg)};
  const std::string body(1024, 'b');
  std::vector<std::uint64_t> unacked;
  std::size_t max_segments = 0;
  std::uint64_t max_disk = 0, max_files = 0;
  for (int i = 0; i < 10000; ++i) {
    unacked.push_back(l.append("work", body));
    if (unacked.size() > 32) {
      l.ack(unacked.front());
      unacked.erase(unacked.begin());
    }
    if (i % 64 == 63) {
      l.commit();
      l.maintain();
      l.commit();
      max_segments = std::max(max_segments, l.segments());
      max_disk = std::max(max_disk, l.disk_bytes());
      BOOST_TEST_REQUIRE(dir_bytes(tmp.store()) == l.disk_bytes()); // the books match the disk
      max_files = std::max<std::uint64_t>(max_files, segment_files(tmp.store()).size());
    }
  }
  BOOST_TEST_MESSAGE("steady: max segments " << max_segments << ", max disk " << max_disk);
  BOOST_TEST(max_segments <= 4u);
  BOOST_TEST(max_files <= 4u);
  BOOST_TEST(max_disk <= 4 * seg);
  BOOST_TEST(l.live_messages() == unacked.size());
  // The oldest segment may hold a few of the 32 in flight, under 25% of it:
  // compaction moves them now and then, but no more than a few percent.
  BOOST_TEST_MESSAGE("steady: moved " << l.moved_messages());
  BOOST_TEST(l.moved_messages() < 10000u / 20u);
}

BOOST_AUTO_TEST_CASE(compaction_frees_the_oldest_segment_and_keeps_a_long_lived_message_once) {
  temp_dir tmp;
  const auto snapshot = tmp.path / "snapshot";
  constexpr std::uint64_t seg = 64 * 1024;
  auto o = opts(tmp.store(), seg);
  const std::string slow_body = body_of(99, 1024);
  std::uint64_t slow;
  {
    st::log l{o};
    slow = l.append("slow", slow_body);
    const std::string body(1024, 'b');
    std::size_t max_segments = 0;
    bool snapped = false;
    for (int i = 0; i < 2000; ++i) {
      auto id = l.append("fast", body);
      l.ack(id);
      if (i % 32 == 31) {
        l.commit();
        l.maintain();
        if (!snapped && l.moved_messages() == 1) {
          // A crash right after the copy is durable, before the original's
          // segment is deleted: the same id twice on disk.
          l.commit();
          fs::create_directory(snapshot);
          for (const auto& f : segment_files(tmp.store())) fs::copy_file(f, snapshot / f.filename());
          snapped = true;
        }
        l.commit();
        max_segments = std::max(max_segments, l.segments());
      }
    }
    // Let the last copy's original go too.
    for (int k = 0; k < 3; ++k) {
      l.commit();
      l.maintain();
    }
    l.commit();
    BOOST_TEST(snapped);
    BOOST_TEST(l.moved_messages() >= 1u);
    BOOST_TEST(l.live_messages() == 1u);
    BOOST_TEST(max_segments <= 4u); // without compaction the slow one would pin ~32
    BOOST_TEST(!fs::exists(tmp.store() / "0000000000000001.seg"));
  }
  {
    st::log l{o};
    BOOST_TEST(l.report().duplicates == 0u);
    auto got = l.take_recovered();
    BOOST_TEST_REQUIRE(got.size() == 1u);
    BOOST_TEST(got[0].id == slow);
    BOOST_TEST(got[0].group == "slow");
    BOOST_TEST(got[0].body == slow_body);
  }
  {
    st::log l{opts(snapshot, seg)};
    BOOST_TEST(l.report().duplicates == 1u);
    BOOST_TEST(l.report().problems.empty());
    auto got = l.take_recovered();
    BOOST_TEST(std::count_if(got.begin(), got.end(), [&](const st::recovered& m) {
                 return m.id == slow;
               }) == 1);
    BOOST_TEST(got.front().id == slow);
    BOOST_TEST(got.front().body == slow_body);
  }
}

// maintain() may run while the head has rolled and the segment it left
// still has records only in the write buffer (the broker calls it about
// once a second, and with --store-sync interval:N commits less often).
// It used to pread those records for compaction and throw "changed on
// disk"; now a segment waits for the commit that writes it.
BOOST_AUTO_TEST_CASE(compaction_waits_for_the_commit_that_writes_a_segment_rolled_away_from) {
  temp_dir tmp;
  auto o = opts(tmp.store(), 4096);
  const std::string body(100, 'x'); // 120-byte records
  std::vector<std::uint64_t> live;
  {
    st::log l{o};
    std::uint64_t first = 0, last = 0;
    for (int i = 0; i < 25; ++i) {
      last = l.append("g", body);
      if (first == 0) first = last;
    }
    l.commit();
    for (auto id = first; id <= last; ++id) l.ack(id);
    const auto seg1 = segment_files(tmp.store()).at(0);
    const auto written = fs::file_size(seg1);
    // These land in segment 1 after its written bytes, until one rolls.
    while (l.segments() == 1u) live.push_back(l.append("g", body_of(live.size(), 100)));
    BOOST_TEST_REQUIRE(live.size() > 2u);
    BOOST_TEST_REQUIRE(fs::file_size(seg1) == written); // all still buffered

    BOOST_CHECK_NO_THROW(l.maintain());
    BOOST_TEST(l.moved_messages() == 0u); // not read back from a file that lacks them
    BOOST_TEST(l.segments() == 2u);
    BOOST_TEST(fs::file_size(seg1) == written); // and nothing written by maintain()
    BOOST_TEST(l.durable_id() == last);         // nor reported durable

    l.commit();
    BOOST_TEST(l.durable_id() == live.back());
    l.maintain(); // written now: segment 1 is mostly acked, its live records move
    BOOST_TEST(l.moved_messages() == live.size() - 1);
    l.commit();
    l.maintain();
    l.commit();
    BOOST_TEST(!fs::exists(seg1));
    BOOST_TEST(dir_bytes(tmp.store()) == l.disk_bytes());
    BOOST_TEST(l.live_messages() == live.size());
  }
  st::log l{o};
  BOOST_TEST(l.report().problems.empty());
  BOOST_TEST(l.report().duplicates == 0u);
  auto got = l.take_recovered();
  BOOST_TEST(ids_of(got) == live);
  for (std::size_t i = 0; i < got.size(); ++i) {
    BOOST_TEST_REQUIRE(got[i].group == "g");
    BOOST_TEST_REQUIRE(got[i].body == body_of(i, 100));
  }
}

BOOST_AUTO_TEST_CASE(dead_segment_rolled_away_from_is_deleted_only_after_its_last_records_are_written) {
  temp_dir tmp;
  auto o = opts(tmp.store(), 4096);
  const std::string body(100, 'x');
  st::log l{o};
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 25; ++i) ids.push_back(l.append("g", body));
  l.commit();
  const auto seg1 = segment_files(tmp.store()).at(0);
  const auto written = fs::file_size(seg1);
  for (auto id : ids) l.ack(id);
  while (l.segments() == 1u) {
    auto id = l.append("g", body);
    if (l.segments() == 1u) l.ack(id); // segment 1 ends dead, its acks buffered
  }
  BOOST_TEST_REQUIRE(l.live_messages() == 1u);
  const auto fsyncs = l.fsyncs();
  l.maintain();
  BOOST_TEST(fs::exists(seg1)); // its last records are not in it yet
  BOOST_TEST(fs::file_size(seg1) == written);
  BOOST_TEST(l.fsyncs() == fsyncs);
  l.commit();
  BOOST_TEST(fs::file_size(seg1) > written);
  l.maintain();
  BOOST_TEST(!fs::exists(seg1));
  l.commit();
  BOOST_TEST(dir_bytes(tmp.store()) == l.disk_bytes());
  BOOST_TEST(l.segments() == 1u);
}

// The broker's loop under --store-sync interval:N: maintain() between
// appends, commits far apart, a long-lived message that compaction has to
// move again and again. Nothing throws and the disk stays bounded.
BOOST_AUTO_TEST_CASE(steady_stream_with_maintain_between_uncommitted_appends_keeps_disk_bounded) {
  temp_dir tmp;
  constexpr std::uint64_t seg = 64 * 1024;
  auto o = opts(tmp.store(), seg);
  const std::string body(1024, 'b');
  const std::string slow_body = body_of(7, 1024);
  std::vector<std::uint64_t> unacked;
  std::uint64_t slow = 0, max_disk = 0, max_files = 0, maintains_after_a_roll = 0;
  std::size_t max_segments = 0;
  {
    st::log l{o};
    slow = l.append("slow", slow_body);
    for (int i = 0; i < 6000; ++i) {
      unacked.push_back(l.append("work", body));
      if (unacked.size() > 8) {
        l.ack(unacked.front());
        unacked.erase(unacked.begin());
      }
      if (i % 5 == 4) {
        // A head with no file yet: it rolled since the last commit, and the
        // segment it left has its last records in the buffer.
        if (segment_files(tmp.store()).size() < l.segments()) ++maintains_after_a_roll;
        BOOST_REQUIRE_NO_THROW(l.maintain());
      }
      if (i % 47 == 46) { // commits on their own clock
        l.commit();
        BOOST_TEST_REQUIRE(dir_bytes(tmp.store()) == l.disk_bytes()); // the books match the disk
      }
      max_segments = std::max(max_segments, l.segments());
      max_disk = std::max(max_disk, l.disk_bytes());
      if (i % 5 == 4) max_files = std::max<std::uint64_t>(max_files, segment_files(tmp.store()).size());
    }
    l.commit();
    BOOST_TEST_MESSAGE("interval: max segments " << max_segments << ", max disk " << max_disk
                       << ", moved " << l.moved_messages() << ", maintain() after a roll "
                       << maintains_after_a_roll);
    BOOST_TEST(maintains_after_a_roll >= 50u); // the case that used to throw, often
    BOOST_TEST(l.moved_messages() >= 10u);  // the slow one was moved, again and again
    BOOST_TEST(l.moved_messages() < 6000u / 20u);
    BOOST_TEST(max_segments <= 4u);
    BOOST_TEST(max_files <= 4u);
    BOOST_TEST(max_disk <= 4 * seg);
    BOOST_TEST(l.live_messages() == unacked.size() + 1);
  }
  st::log l{o};
  BOOST_TEST(l.report().problems.empty());
  auto got = l.take_recovered();
  std::vector<std::uint64_t> expect{slow};
  expect.insert(expect.end(), unacked.begin(), unacked.end());
  BOOST_TEST(ids_of(got) == expect);
  BOOST_TEST_REQUIRE(!got.empty());
  BOOST_TEST(got.front().body == slow_body);
}

BOOST_AUTO_TEST_CASE(second_log_on_the_same_directory_is_refused_with_a_clear_message) {
  temp_dir tmp;
  st::log first{opts(tmp.store())};
  auto is_clear = [&](const std::runtime_error& e) {
    std::string_view what = e.what();
    return contains(what, tmp.store().string()) && contains(what, "another broker holds it");
  };
  BOOST_CHECK_EXCEPTION(st::log{opts(tmp.store())}, std::runtime_error, is_clear);

  // Another process, as a second broker would be.
  auto pid = ::fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 3;
    try {
      st::log second{opts(tmp.store())};
      code = 1;
    } catch (const std::runtime_error& e) {
      code = is_clear(e) ? 0 : 2;
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  BOOST_TEST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_CASE(failed_write_breaks_the_log_and_nothing_more_is_reported_durable) {
  temp_dir tmp;
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN); // EFBIG instead of a signal
  rlimit old_limit{};
  BOOST_TEST_REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  struct restore {
    rlimit limit;
    decltype(old_handler) handler;
    ~restore() {
      ::setrlimit(RLIMIT_FSIZE, &limit);
      std::signal(SIGXFSZ, handler);
    }
  } guard{old_limit, old_handler};
  {
    st::log l{opts(tmp.store())};
    auto a = l.append("g", "kept");
    BOOST_TEST(l.commit() == a);
    rlimit small = old_limit;
    small.rlim_cur = 4096;
    BOOST_TEST_REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    l.append("g", std::string(10000, 'x'));
    auto seg = segment_files(tmp.store()).at(0).string();
    BOOST_CHECK_EXCEPTION(l.commit(), std::system_error, [&](const std::system_error& e) {
      return e.code() == std::errc::file_too_large && contains(e.what(), seg);
    });
    BOOST_TEST(l.durable_id() == a);
    BOOST_CHECK_THROW(l.commit(), std::runtime_error); // no retry that pretends
    BOOST_TEST(l.durable_id() == a);
    BOOST_TEST_REQUIRE(::setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    BOOST_CHECK_THROW(l.commit(), std::runtime_error); // still broken
  }
  st::log l{opts(tmp.store())};
  BOOST_TEST(l.report().torn_bytes > 0u); // the part that was written
  auto got = l.take_recovered();
  BOOST_TEST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].body == "kept");
}

BOOST_AUTO_TEST_CASE(append_refuses_what_recovery_could_not_read) {
  temp_dir tmp;
  auto o = opts(tmp.store());
  o.max_record_bytes = 1024;
  st::log l{o};
  BOOST_CHECK_THROW(l.append(std::string(65536, 'g'), "b"), std::invalid_argument);
  BOOST_CHECK_THROW(l.append("g", std::string(1024, 'b')), std::invalid_argument);
  BOOST_TEST(!l.pending());
  l.append("g", std::string(1024 - 12, 'b')); // len exactly 1024
  l.commit();
  auto bad = opts(tmp.path / "other");
  bad.compact_below = 2;
  BOOST_CHECK_THROW(st::log{bad}, std::invalid_argument);
  bad = opts(tmp.path / "other", 16);
  BOOST_CHECK_THROW(st::log{bad}, std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
