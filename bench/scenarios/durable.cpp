// SPDX-License-Identifier: Apache-2.0
// Scenario `durable` (issue #19): publishes confirmed into a queue kept on
// disk, tcp on 127.0.0.1. plexus: a durable queue (brokers/PROTOCOL.md,
// "Durable queues"), store sync `batch`: a confirm says 0 once an
// fdatasync covered the message. nats-server: JetStream, a file stream
// (work queue retention, the same limits, discard new), js_PublishAsync
// with an ack handler and js_PublishAsyncComplete; its pub ack comes once
// the server has the message, and its file store syncs every 2 minutes
// (nats-server 2.9 cannot be told otherwise). Cases, in one run:
//
// - <size>-consumer: one consumer takes and acks every message (plexus: a
//   member, acked, credit 1024 granted back per batch; JetStream: a push
//   consumer, explicit ack, MaxAckPending 1024); 128 B and 1 KiB, flat out
//   with at most 65,536 publishes awaiting their confirm (plexus's default
//   window; JetStream's MaxPending set alike): confirmed msgs/s (first
//   publish -> last confirm), MB/s, publish -> confirm p50/p99 (under a
//   full window: mostly the window's queueing), and the consumer's msgs/s;
// - <size>-filling: the same with nobody consuming: the queue fills (kept
//   under its limits);
// - 128B-paced-10k: 10,000 msgs/s offered on a schedule with the consumer:
//   publish -> confirm p50/p99/max from when each was due (the hop plus
//   the wait for the sync);
// - recovery-<N>x128B (plexus): a store holding N messages (1,000,000, or
//   PLEXUS_BENCH_DURABLE_RECOVERY; 20,000 with --quick), a new broker on
//   it, from its construction: open_ms (the constructor, which reads the
//   store), serving_ms (a client that connects once it is up is welcomed:
//   the stored messages are back in their queue) and first_delivery_ms
//   (that client, joining as a member, gets its first message: what a user
//   waits for). The last run drains every message and fails unless all N
//   come back.
//
// Stores live under the plexus-bench binary's directory (the build tree's
// file system; PLEXUS_BENCH_DURABLE_DIR overrides), a fresh directory per
// run; a note says which file system, and warns on a tmpfs.

#include <sys/statfs.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "baselines/child_process.hpp"
#include "baselines/nats.hpp"
#include "latency.hpp"
#include "scenario.hpp"
#include "scenarios/durable.hpp"

namespace plexus::bench {

namespace {

constexpr std::size_t window = 65'536;
constexpr std::uint32_t credit = 1024;
constexpr std::uint64_t queue_max_msgs = 1'000'000; // both systems' limits, above
constexpr std::uint64_t queue_max_bytes = 1ull << 30; // any case's count + warm-ups
constexpr double paced_rate = 10'000;
constexpr int quick_runs = 3;
constexpr std::size_t full_recovery = 1'000'000;
constexpr std::size_t quick_recovery = 20'000;
constexpr std::size_t recovery_size = 128;
constexpr double bytes_per_mb = 1e6;

struct durable_case {
  std::string name;
  std::size_t size;
  bool consumer;
  double rate; // 0: flat out
  std::size_t count, quick_count;
};

const std::vector<durable_case>& cases() {
  static const std::vector<durable_case> all{
    {"128B-consumer", 128, true, 0, 300'000, 5'000},
    {"1024B-consumer", 1024, true, 0, 100'000, 2'000},
    {"128B-filling", 128, false, 0, 300'000, 5'000},
    {"1024B-filling", 1024, false, 0, 100'000, 2'000},
    {"128B-paced-10k", 128, true, paced_rate, 20'000, 2'000},
  };
  return all;
}

struct durable_system {
  std::string name;
  std::function<durable_result(const durable_spec&)> run_once;
};

/// A directory made fresh (mkdtemp) under `parent`, removed with its
/// contents when it goes.
class disk_dir {
public:
  disk_dir(const std::filesystem::path& parent, std::string_view prefix) {
    std::filesystem::create_directories(parent);
    auto pattern = (parent / (std::string{prefix} + "XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), "cannot create a directory " + pattern);
    path_ = pattern;
  }
  ~disk_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  disk_dir(const disk_dir&) = delete;
  disk_dir& operator=(const disk_dir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
  std::filesystem::path path_;
};

/// Where the stores go: PLEXUS_BENCH_DURABLE_DIR, else beside the binary
/// (the build tree), not the temp directory (often a tmpfs).
std::filesystem::path store_parent() {
  if (const char* env = std::getenv("PLEXUS_BENCH_DURABLE_DIR"); env != nullptr && *env != '\0')
    return env;
  return self_executable().parent_path();
}

/// The file system `p` is on, by name ("ext4", "tmpfs", ...), and whether
/// its writes reach no disk at all (tmpfs, ramfs: fdatasync costs nothing).
std::pair<std::string, bool> file_system_of(const std::filesystem::path& p) {
  struct statfs st {};
  if (::statfs(p.c_str(), &st) != 0) return {"unknown", false};
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53: return {"ext2/3/4", false};
    case 0x58465342: return {"xfs", false};
    case 0x9123683E: return {"btrfs", false};
    case 0x794c7630: return {"overlayfs", false};
    case 0x2fc12fc1: return {"zfs", false};
    case 0x01021994: return {"tmpfs", true};
    case 0x858458f6: return {"ramfs", true};
    default: break;
  }
  std::array<char, 32> hex{};
  auto [end, ec] = std::to_chars(hex.data(), hex.data() + hex.size(),
                                 static_cast<unsigned long>(st.f_type), 16);
  return {"f_type 0x" + std::string(hex.data(), end), false};
}

std::size_t recovery_count(const run_config& cfg) {
  if (const char* env = std::getenv("PLEXUS_BENCH_DURABLE_RECOVERY"); env != nullptr && *env != '\0') {
    std::size_t n = 0;
    std::string_view text{env};
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end != text.data() + text.size() || n == 0 || n > 100'000'000)
      throw std::runtime_error("PLEXUS_BENCH_DURABLE_RECOVERY must be a count from 1 to "
                               "100000000, got '" + std::string{text} + "'");
    return n;
  }
  return cfg.quick ? quick_recovery : full_recovery;
}

std::string thousands(std::size_t n) {
  auto s = std::to_string(n);
  for (auto i = static_cast<std::ptrdiff_t>(s.size()) - 3; i > 0; i -= 3)
    s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

/// Every run of one case, systems taken in turn (run 1 of each, then run 2
/// of each...): a drift in the machine's load weighs on both alike.
void run_case(const durable_case& c, const std::vector<durable_system>& systems, int runs,
              bool quick, const std::filesystem::path& parent, recorder& rec) {
  struct tally {
    std::vector<double> msgs, mbs, consumed, p50, p99;
    latency_percentiles paced;
  };
  std::vector<tally> t(systems.size());
  const auto count = quick ? c.quick_count : c.count;
  for (int run = 0; run < runs; ++run)
    for (std::size_t s = 0; s < systems.size(); ++s) {
      disk_dir store{parent, "plexus-bench-durable-"};
      durable_spec spec;
      spec.size = c.size;
      spec.count = count;
      spec.warmups = std::clamp<std::size_t>(count / 10, 100, 10'000);
      spec.consumer = c.consumer;
      spec.credit = credit;
      spec.rate = c.rate;
      spec.window = window;
      spec.store = store.path();
      spec.max_msgs = queue_max_msgs;
      spec.max_bytes = queue_max_bytes;
      spec.sync = "batch";
      durable_result r;
      try {
        r = systems[s].run_once(spec);
      } catch (const std::exception& e) {
        throw std::runtime_error(c.name + " " + systems[s].name + ", run " +
                                 std::to_string(run + 1) + ": " + e.what());
      }
      if (r.confirmed != count || (c.consumer && r.consumed != count))
        throw std::runtime_error(c.name + " " + systems[s].name + ": " +
                                 std::to_string(r.confirmed) + " confirmed, " +
                                 std::to_string(r.consumed) + " consumed of " +
                                 std::to_string(count));
      auto& x = t[s];
      if (c.rate > 0) {
        x.paced.add_run(std::move(r.latency_us));
        continue;
      }
      x.msgs.push_back(r.msgs_per_s());
      x.mbs.push_back(r.msgs_per_s() * static_cast<double>(c.size) / bytes_per_mb);
      if (c.consumer) x.consumed.push_back(r.consumed_per_s());
      std::sort(r.latency_us.begin(), r.latency_us.end());
      x.p50.push_back(percentile(r.latency_us, 0.50));
      x.p99.push_back(percentile(r.latency_us, 0.99));
    }
  for (std::size_t s = 0; s < systems.size(); ++s) {
    const auto& x = t[s];
    const auto& sys = systems[s].name;
    if (c.rate > 0) {
      x.paced.record(rec, c.name, sys);
      continue;
    }
    rec.add(c.name, sys, "msgs_per_s", "msg/s", x.msgs);
    rec.add(c.name, sys, "mb_per_s", "MB/s", x.mbs);
    rec.add(c.name, sys, "p50_us", "us", x.p50);
    rec.add(c.name, sys, "p99_us", "us", x.p99);
    if (c.consumer) rec.add(c.name, sys, "consumed_msgs_per_s", "msg/s", x.consumed);
  }
  rec.note(c.name + ": " + std::to_string(runs) + " runs x " + thousands(count) +
           " confirmed msgs per system, every one confirmed" +
           (c.consumer ? " and consumed" : "") + ", a fresh store each run");
}

/// Fills a store with `count` messages once, then restarts a broker on it
/// `runs` times; the last run drains it.
void run_recovery(std::size_t count, int runs, const std::filesystem::path& parent,
                  recorder& rec) {
  const auto name = "recovery-" + std::to_string(count) + "x" + std::to_string(recovery_size) + "B";
  disk_dir store{parent, "plexus-bench-durable-recovery-"};
  const double fill_rate = plexus_durable_fill(store.path(), count, recovery_size);
  std::error_code ec;
  std::uintmax_t bytes = 0;
  for (const auto& f : std::filesystem::directory_iterator{store.path(), ec})
    if (f.is_regular_file(ec)) bytes += f.file_size(ec);
  rec.note(name + ": stored " + thousands(count) + " confirmed messages at " +
           std::to_string(static_cast<long long>(fill_rate)) + " msg/s; the store holds " +
           std::to_string(bytes >> 20) + " MiB; each run a new broker reads it (page cache warm)");
  std::vector<double> open, serving, first;
  for (int run = 0; run < runs; ++run) {
    const bool drain = run + 1 == runs;
    auto r = plexus_durable_recover_once(store.path(), count, drain);
    open.push_back(r.open_ms);
    serving.push_back(r.serving_ms);
    first.push_back(r.first_delivery_ms);
    if (drain)
      rec.note(name + ": last run drained " + thousands(r.drained) + " of " + thousands(count) +
               " distinct messages, 0 lost");
  }
  rec.add(name, "plexus", "open_ms", "ms", open);
  rec.add(name, "plexus", "serving_ms", "ms", serving);
  rec.add(name, "plexus", "first_delivery_ms", "ms", first);
}

void run_durable(const run_config& cfg, recorder& rec) {
  const int runs = cfg.quick ? quick_runs : cfg.runs;
  const auto parent = store_parent();
  {
    disk_dir probe{parent, "plexus-bench-durable-probe-"};
    auto [fs, volatile_fs] = file_system_of(probe.path());
    rec.note("stores under " + parent.string() + " (" + fs + ")");
    if (volatile_fs)
      rec.note("WARNING: " + fs + " keeps no data on a disk: fdatasync costs nothing there, "
               "so these figures say nothing about a disk (set PLEXUS_BENCH_DURABLE_DIR)");
  }
  rec.note("plexus store sync 'batch': a confirm says 0 once an fdatasync covered the message "
           "(one per loop pass, a group commit). JetStream (nats-server 2.9 defaults) acks "
           "once the server has the message and fsyncs its files every 2 minutes "
           "(sync_interval; 2.9 cannot change it): a weaker promise, so nats-js rows are "
           "not like for like. plexus 'interval:120000' would not be either: it delays "
           "every confirm until its sync, up to 2 minutes, so it is not run");

  std::vector<durable_system> systems{{"plexus", &plexus_durable_once}};
  if (auto why = nats_missing(); !why.empty())
    rec.note("no nats-js rows: " + why);
  else
    systems.push_back({"nats-js", &nats_jetstream_once});

  for (const auto& c : cases()) run_case(c, systems, runs, cfg.quick, parent, rec);
  run_recovery(recovery_count(cfg), runs, parent, rec);
}

const registration durable_registration{
  {"durable",
   "confirmed publishes into a queue kept on disk, 128 B / 1 KiB, with an acking consumer and "
   "filling: plexus durable queue (sync batch) vs nats-server JetStream file stream; publish -> "
   "confirm latency; plexus restart on 1M stored messages -> first delivery",
   &run_durable}};

} // namespace

} // namespace plexus::bench
