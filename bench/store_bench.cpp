// SPDX-License-Identifier: Apache-2.0
// plexus-store-bench: the durable queue's storage workload on three engines,
// in one run on one machine (issue #19; the decision is in
// docs/durable-storage.md):
//
//   plexus-log  the broker's own segment log (brokers/store): append and ack
//               fill a buffer, commit() writes it and fdatasyncs once
//   sqlite      SQLite in WAL mode, synchronous=FULL, one table, prepared
//               statements, one transaction per batch, ack = DELETE by id
//   lmdb        LMDB with its default durable commit, one write transaction
//               per batch, key = big-endian u64 id, ack = mdb_del
//
// A case is a batch size B and a payload size, run on every engine. Each
// store runs like a live queue: a batch acks the B messages of the batch
// before, appends B new ones and commits (durable before anyone would be
// confirmed), for --seconds in all; the stores take turns in slices of
// about 0.25 s, so that a change in the disk's speed falls on all of them.
// Then the last batch is acked. A batch's latency is from its first
// operation to its commit returning. Flushes (fsync, fdatasync, O_DSYNC
// writes) are counted by wrapping the libc calls every engine makes. Then
// the recovery figure: reopen a store holding 100k live 128 B messages and
// read them all back, after dropping its files from the page cache (cold,
// with its minor page faults), and again (warm).

#include <fcntl.h>
#include <lmdb.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "json_writer.hpp"
#include "log.hpp"
#include "machine.hpp"
#include "report.hpp"

namespace fs = std::filesystem;

// ------------------------------------------------------------ flush counting
//
// Defined here, these take the place of libc's for the whole process: the
// segment log (linked in statically), libsqlite3 and liblmdb all call them.
// They count, then make the system call themselves. A flush is an fsync or
// an fdatasync, or a write to the file opened with O_DSYNC that the case
// registered (LMDB writes its meta page that way: it waits for the device
// like an fdatasync does).

namespace {
std::atomic<std::uint64_t> flush_calls{0};
std::atomic<int> dsync_fd{-1};

void count_if_dsync(int fd) {
  if (fd >= 0 && fd == dsync_fd.load(std::memory_order_relaxed))
    flush_calls.fetch_add(1, std::memory_order_relaxed);
}
} // namespace

extern "C" int fsync(int fd) {
  flush_calls.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(::syscall(SYS_fsync, fd));
}

extern "C" int fdatasync(int fd) {
  flush_calls.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(::syscall(SYS_fdatasync, fd));
}

extern "C" ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  count_if_dsync(fd);
  return ::syscall(SYS_pwrite64, fd, buf, n, offset);
}

extern "C" ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t offset) {
  count_if_dsync(fd);
  return ::syscall(SYS_pwrite64, fd, buf, n, offset);
}

namespace plexus::bench {
namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::string_view group_name = "orders.durable";
constexpr std::size_t recovery_batch = 256;
constexpr std::size_t recovery_payload = 128;

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ------------------------------------------------------------------ engines

/// A recovered message: id, group, body. The log's own type: the broker
/// takes the log's vector as it is, and so does read_all(), with no copy.
using message = broker::store::recovered;

/// One store under test. append/ack/maintain only prepare; commit makes
/// everything since the last commit durable.
class engine {
public:
  virtual ~engine() = default;
  virtual std::uint64_t append(std::string_view group, std::string_view body) = 0;
  virtual void ack(std::uint64_t id) = 0;
  virtual void maintain() {}
  virtual void commit() = 0;
  /// Every live message, in id order (what a restarted broker needs).
  virtual std::vector<message> read_all() = 0;
};

// The broker's segment log: its recovery runs in the constructor.
class log_engine final : public engine {
public:
  explicit log_engine(const fs::path& dir) : log_{broker::store::options{.dir = dir}} {}

  std::uint64_t append(std::string_view group, std::string_view body) override {
    return log_.append(group, body);
  }
  void ack(std::uint64_t id) override { log_.ack(id); }
  void maintain() override { log_.maintain(); }
  void commit() override { log_.commit(); }
  std::vector<message> read_all() override { return log_.take_recovered(); }

private:
  broker::store::log log_;
};

class sqlite_engine final : public engine {
public:
  explicit sqlite_engine(const fs::path& dir) {
    auto path = (dir / "queue.db").string();
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK)
      fail("open " + path);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("CREATE TABLE IF NOT EXISTS msgs (id INTEGER PRIMARY KEY, grp TEXT NOT NULL, "
         "body BLOB NOT NULL)");
    begin_ = prepare("BEGIN");
    commit_ = prepare("COMMIT");
    insert_ = prepare("INSERT INTO msgs (id, grp, body) VALUES (?, ?, ?)");
    delete_ = prepare("DELETE FROM msgs WHERE id = ?");
    select_ = prepare("SELECT id, grp, body FROM msgs ORDER BY id");
    auto last = prepare("SELECT COALESCE(MAX(id), 0) FROM msgs");
    if (sqlite3_step(last) == SQLITE_ROW)
      next_id_ = static_cast<std::uint64_t>(sqlite3_column_int64(last, 0)) + 1;
    sqlite3_finalize(last);
  }
  sqlite_engine(const sqlite_engine&) = delete;
  sqlite_engine& operator=(const sqlite_engine&) = delete;
  ~sqlite_engine() override {
    for (auto* s : {begin_, commit_, insert_, delete_, select_}) sqlite3_finalize(s);
    sqlite3_close(db_);
  }

  std::uint64_t append(std::string_view group, std::string_view body) override {
    open_transaction();
    auto id = next_id_++;
    sqlite3_bind_int64(insert_, 1, static_cast<sqlite3_int64>(id));
    sqlite3_bind_text(insert_, 2, group.data(), static_cast<int>(group.size()), nullptr);
    sqlite3_bind_blob(insert_, 3, body.data(), static_cast<int>(body.size()), nullptr);
    run(insert_, "INSERT");
    return id;
  }
  void ack(std::uint64_t id) override {
    open_transaction();
    sqlite3_bind_int64(delete_, 1, static_cast<sqlite3_int64>(id));
    run(delete_, "DELETE");
  }
  void commit() override {
    if (!in_transaction_) return;
    run(commit_, "COMMIT");
    in_transaction_ = false;
  }
  std::vector<message> read_all() override {
    std::vector<message> out;
    int rc = 0;
    while ((rc = sqlite3_step(select_)) == SQLITE_ROW) {
      message m;
      m.id = static_cast<std::uint64_t>(sqlite3_column_int64(select_, 0));
      const auto* g = sqlite3_column_text(select_, 1);
      m.group.assign(reinterpret_cast<const char*>(g),
                     static_cast<std::size_t>(sqlite3_column_bytes(select_, 1)));
      const auto* b = sqlite3_column_blob(select_, 2);
      m.body.assign(static_cast<const char*>(b),
                    static_cast<std::size_t>(sqlite3_column_bytes(select_, 2)));
      out.push_back(std::move(m));
    }
    if (rc != SQLITE_DONE) fail("SELECT");
    sqlite3_reset(select_);
    return out;
  }

private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("sqlite: " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "no memory"));
  }
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(sql);
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
      fail(sql);
    return s;
  }
  void run(sqlite3_stmt* s, const char* what) {
    auto rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) fail(what);
  }
  void open_transaction() {
    if (in_transaction_) return;
    run(begin_, "BEGIN");
    in_transaction_ = true;
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt *begin_ = nullptr, *commit_ = nullptr, *insert_ = nullptr, *delete_ = nullptr,
               *select_ = nullptr;
  bool in_transaction_ = false;
  std::uint64_t next_id_ = 1;
};

class lmdb_engine final : public engine {
public:
  explicit lmdb_engine(const fs::path& dir) {
    check(mdb_env_create(&env_), "mdb_env_create");
    // Address space only: the file grows with the pages used.
    check(mdb_env_set_mapsize(env_, std::size_t{16} << 30), "mdb_env_set_mapsize");
    check(mdb_env_open(env_, dir.c_str(), 0, 0600), "mdb_env_open " + dir.string());
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, nullptr, 0, &dbi_), "mdb_dbi_open");
    MDB_cursor* c = nullptr;
    check(mdb_cursor_open(txn, dbi_, &c), "mdb_cursor_open");
    MDB_val k{}, v{};
    if (mdb_cursor_get(c, &k, &v, MDB_LAST) == 0) next_id_ = decode_key(k) + 1;
    mdb_cursor_close(c);
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  lmdb_engine(const lmdb_engine&) = delete;
  lmdb_engine& operator=(const lmdb_engine&) = delete;
  ~lmdb_engine() override {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    mdb_env_close(env_);
  }

  std::uint64_t append(std::string_view group, std::string_view body) override {
    open_transaction();
    auto id = next_id_++;
    auto key = encode_key(id);
    value_.clear();
    auto glen = static_cast<std::uint16_t>(group.size());
    value_.push_back(static_cast<char>(glen & 0xff));
    value_.push_back(static_cast<char>(glen >> 8));
    value_ += group;
    value_ += body;
    MDB_val k{key.size(), key.data()}, v{value_.size(), value_.data()};
    // Ids only grow: MDB_APPEND fills pages without searching the tree.
    check(mdb_put(txn_, dbi_, &k, &v, MDB_APPEND), "mdb_put");
    return id;
  }
  void ack(std::uint64_t id) override {
    open_transaction();
    auto key = encode_key(id);
    MDB_val k{key.size(), key.data()};
    auto rc = mdb_del(txn_, dbi_, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) check(rc, "mdb_del");
  }
  void commit() override {
    if (txn_ == nullptr) return;
    auto rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    check(rc, "mdb_txn_commit");
  }
  std::vector<message> read_all() override {
    std::vector<message> out;
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn), "mdb_txn_begin");
    MDB_cursor* c = nullptr;
    check(mdb_cursor_open(txn, dbi_, &c), "mdb_cursor_open");
    MDB_val k{}, v{};
    for (auto op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
      const auto* p = static_cast<const unsigned char*>(v.mv_data);
      std::size_t glen = p[0] | (std::size_t{p[1]} << 8);
      if (v.mv_size < 2 + glen) throw std::runtime_error("lmdb: a short value");
      message m;
      m.id = decode_key(k);
      m.group.assign(reinterpret_cast<const char*>(p + 2), glen);
      m.body.assign(reinterpret_cast<const char*>(p + 2 + glen), v.mv_size - 2 - glen);
      out.push_back(std::move(m));
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return out;
  }

private:
  static void check(int rc, const std::string& what) {
    if (rc != 0) throw std::runtime_error("lmdb: " + what + ": " + mdb_strerror(rc));
  }
  static std::array<char, 8> encode_key(std::uint64_t id) {
    std::array<char, 8> k{};
    for (int i = 7; i >= 0; --i, id >>= 8)
      k[static_cast<std::size_t>(i)] = static_cast<char>(id & 0xff);
    return k;
  }
  static std::uint64_t decode_key(const MDB_val& k) {
    if (k.mv_size != 8) throw std::runtime_error("lmdb: a key not 8 bytes long");
    const auto* p = static_cast<const unsigned char*>(k.mv_data);
    std::uint64_t id = 0;
    for (std::size_t i = 0; i < 8; ++i) id = (id << 8) | p[i];
    return id;
  }
  void open_transaction() {
    if (txn_ == nullptr) check(mdb_txn_begin(env_, nullptr, 0, &txn_), "mdb_txn_begin");
  }

  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* txn_ = nullptr;
  std::uint64_t next_id_ = 1;
  std::string value_;
};

const std::vector<std::string>& engine_names() {
  static const std::vector<std::string> names{"plexus-log", "sqlite", "lmdb"};
  return names;
}

std::unique_ptr<engine> open_engine(std::string_view name, const fs::path& dir) {
  if (name == "plexus-log") return std::make_unique<log_engine>(dir);
  if (name == "sqlite") return std::make_unique<sqlite_engine>(dir);
  if (name == "lmdb") return std::make_unique<lmdb_engine>(dir);
  throw std::logic_error("no engine " + std::string{name});
}

// ------------------------------------------------------------------ files

/// A fresh directory under `parent`, removed with everything in it when
/// this goes.
class scratch_dir {
public:
  scratch_dir(const fs::path& parent, std::string_view prefix) {
    auto templ = (parent / (std::string{prefix} + "-XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), "mkdtemp " + templ);
    path_ = templ;
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const noexcept { return path_; }

private:
  fs::path path_;
};

/// Bytes the files under `dir` take on the disk (allocated blocks).
std::uint64_t disk_bytes(const fs::path& dir) {
  std::uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st{};
    if (::lstat(e.path().c_str(), &st) == 0 && S_ISREG(st.st_mode))
      total += static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

/// Writes out whatever the file system holds dirty (a removed store's
/// metadata, say), so that the next case does not pay for it.
void settle_filesystem(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::syncfs(fd);
  ::close(fd);
}

/// The descriptor this process opened with O_DSYNC on a file under `dir`,
/// or -1 (at most one is expected: LMDB's meta page writer).
int find_dsync_fd(const fs::path& dir) {
  auto prefix = fs::weakly_canonical(dir).string() + "/";
  int found = -1;
  for (const auto& e : fs::directory_iterator("/proc/self/fdinfo")) {
    int fd = -1;
    auto name = e.path().filename().string();
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc{}) continue;
    std::error_code ec;
    auto target = fs::read_symlink("/proc/self/fd/" + name, ec).string();
    if (ec || !target.starts_with(prefix)) continue;
    std::ifstream in{e.path()};
    for (std::string line; std::getline(in, line);) {
      if (!line.starts_with("flags:")) continue;
      auto flags = std::strtoul(line.c_str() + 6, nullptr, 8);
      if ((flags & O_DSYNC) != 0) {
        if (found >= 0) throw std::runtime_error("two O_DSYNC files under " + dir.string());
        found = fd;
      }
    }
  }
  return found;
}

/// Asks the kernel to drop the (clean, synced) pages of every file under
/// `dir` from the page cache, so that a reopen reads the disk.
void drop_from_page_cache(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd); // nothing dirty is left after a clean close; this makes sure
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

/// The file system `path` is on, from /proc/self/mounts: "ext4 (/dev/vda on /)".
std::string filesystem_of(const fs::path& path) {
  auto p = fs::weakly_canonical(path).string();
  std::ifstream in{"/proc/self/mounts"};
  std::string best_dir, best;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields{line};
    std::string dev, dir, type;
    if (!(fields >> dev >> dir >> type)) continue;
    // Spaces in mount points come as \040; good enough for a header.
    bool under = p == dir || dir == "/" ||
                 (p.starts_with(dir) && p.size() > dir.size() && p[dir.size()] == '/');
    if (under && dir.size() >= best_dir.size()) {
      best_dir = dir;
      best = type + " (" + dev + " on " + dir + ")";
    }
  }
  return best.empty() ? "unknown" : best;
}

// ------------------------------------------------------------------ cases

struct case_result {
  std::string engine;
  std::size_t batch = 0;
  std::size_t payload = 0;
  std::uint64_t messages = 0;
  double seconds = 0;
  double msgs_per_s = 0;
  double mb_per_s = 0;
  double p50_us = 0, p99_us = 0, max_us = 0;
  std::uint64_t commits = 0;
  std::uint64_t flushes = 0;
  std::uint64_t disk_bytes = 0;
};

struct recovery_result {
  std::string engine;
  std::uint64_t messages = 0;
  double cold_ms = 0, warm_ms = 0;
  // Minor page faults of the cold reopen: first touches of fresh memory,
  // which cost from ~0.1 us on bare metal to tens of us in some VMs.
  std::uint64_t cold_faults = 0;
  std::uint64_t disk_bytes = 0;
};

double percentile(const std::vector<double>& sorted, double q) {
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Incompressible bytes, the same in every run.
std::string payload_bytes(std::size_t n) {
  std::string s(n, '\0');
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x & 0xff);
  }
  return s;
}

/// Makes `body` the body of message number `seq` (from 0): seq in its first bytes.
void stamp(std::string& body, std::uint64_t seq) {
  std::memcpy(body.data(), &seq, std::min(sizeof seq, body.size()));
}

/// One engine's store in a case, and where its live queue stands.
struct lane {
  std::string name;
  std::unique_ptr<scratch_dir> dir;
  std::unique_ptr<engine> store;
  int dsync = -1;
  std::vector<std::uint64_t> previous, current; // ids of the last batch, of this one
  std::uint64_t seq = 0;                         // messages appended
  std::uint64_t flushes = 0;
  double busy_seconds = 0;
  std::vector<double> latency_us;
};

/// Runs `l`'s queue for `seconds`: batches of acks of the batch before, B
/// appends, one commit.
void run_slice(lane& l, std::size_t batch, std::string& body, double seconds) {
  dsync_fd = l.dsync;
  auto flushes_before = flush_calls.load();
  auto start = clock_type::now();
  auto deadline = start + std::chrono::duration_cast<clock_type::duration>(
                              std::chrono::duration<double>(seconds));
  do {
    auto t0 = clock_type::now();
    // Maintenance first, while nothing is buffered: the segment log's
    // compaction reads records back from their files, so it must not run
    // between an append that rolled a segment and the commit that writes it
    // (it throws "changed on disk" there).
    l.store->maintain();
    for (auto id : l.previous) l.store->ack(id);
    l.current.clear();
    for (std::size_t i = 0; i < batch; ++i) {
      stamp(body, l.seq++);
      l.current.push_back(l.store->append(group_name, body));
    }
    l.store->commit();
    std::chrono::duration<double, std::micro> took = clock_type::now() - t0;
    l.latency_us.push_back(took.count());
    std::swap(l.previous, l.current);
  } while (clock_type::now() < deadline);
  l.busy_seconds += seconds_since(start);
  l.flushes += flush_calls.load() - flushes_before;
  dsync_fd = -1;
}

/// One case on every engine. The stores are open side by side and take
/// turns in slices of about a quarter of a second, each engine going first
/// in turn, so that the disk's moods (this is a shared VM: a flush takes
/// 0.2 ms at one moment and 4 ms the next) fall on all of them alike.
std::vector<case_result> run_case(const std::vector<std::string>& names, std::size_t batch,
                                  std::size_t payload, double seconds, const fs::path& parent,
                                  std::size_t turn) {
  auto body = payload_bytes(payload);
  std::vector<lane> lanes(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto& l = lanes[i];
    l.name = names[i];
    l.dir = std::make_unique<scratch_dir>(parent, l.name);
    l.store = open_engine(l.name, l.dir->path());
    l.dsync = find_dsync_fd(l.dir->path());
    l.previous.reserve(batch);
    l.current.reserve(batch);
  }
  auto rounds = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(seconds / 0.25)));
  auto slice = seconds / static_cast<double>(rounds);
  for (std::size_t round = 0; round < rounds; ++round)
    for (std::size_t j = 0; j < lanes.size(); ++j) {
      settle_filesystem(parent);
      run_slice(lanes[(turn + round + j) % lanes.size()], batch, body, slice);
    }

  std::vector<case_result> out;
  for (auto& l : lanes) {
    // The last batch's acks, durable too; then what maintenance frees.
    dsync_fd = l.dsync;
    auto flushes_before = flush_calls.load();
    auto start = clock_type::now();
    for (auto id : l.previous) l.store->ack(id);
    l.store->commit();
    l.store->maintain();
    l.store->commit();
    l.busy_seconds += seconds_since(start);
    l.flushes += flush_calls.load() - flushes_before;
    dsync_fd = -1;

    case_result r;
    r.engine = l.name;
    r.batch = batch;
    r.payload = payload;
    r.messages = l.seq;
    r.seconds = l.busy_seconds;
    r.commits = l.latency_us.size() + 1;
    r.flushes = l.flushes;
    // While the store is open: SQLite checkpoints and removes its WAL on close.
    r.disk_bytes = disk_bytes(l.dir->path());
    std::sort(l.latency_us.begin(), l.latency_us.end());
    r.msgs_per_s = static_cast<double>(r.messages) / r.seconds;
    r.mb_per_s = r.msgs_per_s * static_cast<double>(payload) / 1e6;
    r.p50_us = percentile(l.latency_us, 0.50);
    r.p99_us = percentile(l.latency_us, 0.99);
    r.max_us = l.latency_us.back();
    out.push_back(std::move(r));
  }
  return out;
}

void check_recovered(std::string_view name, const std::vector<message>& got, std::uint64_t n) {
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(std::string{name} + ": recovery read back " + what);
  };
  if (got.size() != n)
    fail(std::to_string(got.size()) + " messages, expected " + std::to_string(n));
  for (std::size_t i = 0; i < got.size(); ++i) {
    std::uint64_t seq = 0;
    std::memcpy(&seq, got[i].body.data(), std::min(sizeof seq, got[i].body.size()));
    if (got[i].body.size() != recovery_payload || got[i].group != group_name || seq != i ||
        (i > 0 && got[i].id <= got[i - 1].id))
      fail("a wrong message at position " + std::to_string(i));
  }
}

recovery_result run_recovery(std::string_view name, std::uint64_t n, const fs::path& parent) {
  scratch_dir dir{parent, std::string{name} + "-recovery"};
  recovery_result r;
  r.engine = name;
  r.messages = n;
  auto body = payload_bytes(recovery_payload);
  {
    auto e = open_engine(name, dir.path());
    for (std::uint64_t seq = 0; seq < n;) {
      for (std::size_t i = 0; i < recovery_batch && seq < n; ++i, ++seq) {
        stamp(body, seq);
        e->append(group_name, body);
      }
      e->commit();
    }
  }
  r.disk_bytes = disk_bytes(dir.path());
  auto minor_faults = [] {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<std::uint64_t>(u.ru_minflt);
  };
  std::uint64_t faults = 0;
  auto timed_reopen = [&] {
    auto f0 = minor_faults();
    auto t0 = clock_type::now();
    auto e = open_engine(name, dir.path());
    auto got = e->read_all();
    auto ms = seconds_since(t0) * 1e3;
    faults = minor_faults() - f0;
    check_recovered(name, got, n);
    return ms;
  };
  drop_from_page_cache(dir.path());
  r.cold_ms = timed_reopen();
  r.cold_faults = faults;
  r.warm_ms = timed_reopen();
  return r;
}

// ------------------------------------------------------------------ output

std::string fixed(double v, int decimals) {
  std::array<char, 64> buf{};
  auto n = std::snprintf(buf.data(), buf.size(), "%.*f", decimals, v);
  return std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
}

/// Three significant digits at most, no exponent: 1234567 -> "1234567", 12.345 -> "12.3".
std::string sig3(double v) {
  if (!std::isfinite(v)) return "nan";
  auto a = std::fabs(v);
  return fixed(v, a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
}

std::string size_label(std::size_t bytes) {
  return bytes % 1024 == 0 ? std::to_string(bytes / 1024) + " KiB" : std::to_string(bytes) + " B";
}

std::string kib(std::uint64_t bytes) { return std::to_string((bytes + 1023) / 1024); }

const case_result* find_case(const std::vector<case_result>& all, std::string_view engine,
                             std::size_t batch, std::size_t payload) {
  for (const auto& c : all)
    if (c.engine == engine && c.batch == batch && c.payload == payload) return &c;
  return nullptr;
}

void print_tables(std::ostream& out, const std::vector<case_result>& cases,
                  const std::vector<recovery_result>& recoveries) {
  out << "| engine | batch | payload | msgs | msgs/s | MB/s | vs plexus-log | batch p50 us "
         "| batch p99 us | commits | flushes/commit | disk KiB at end |\n"
      << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& c : cases) {
    const auto* base = find_case(cases, "plexus-log", c.batch, c.payload);
    std::string ratio = base != nullptr && base->msgs_per_s > 0
                            ? fixed(c.msgs_per_s / base->msgs_per_s, 2) + "x"
                            : "-";
    out << "| " << c.engine << " | " << c.batch << " | " << size_label(c.payload) << " | "
        << c.messages << " | " << sig3(c.msgs_per_s) << " | " << sig3(c.mb_per_s) << " | "
        << ratio << " | " << sig3(c.p50_us) << " | " << sig3(c.p99_us) << " | " << c.commits
        << " | " << fixed(static_cast<double>(c.flushes) / static_cast<double>(c.commits), 2)
        << " | " << kib(c.disk_bytes) << " |\n";
  }
  if (recoveries.empty()) return;
  out << "\n| engine | live msgs | disk KiB | reopen + read, cold ms | reopen + read, warm ms "
         "| msgs/s cold | page faults cold |\n"
      << "|---|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : recoveries)
    out << "| " << r.engine << " | " << r.messages << " | " << kib(r.disk_bytes) << " | "
        << sig3(r.cold_ms) << " | " << sig3(r.warm_ms) << " | "
        << sig3(static_cast<double>(r.messages) / (r.cold_ms / 1e3)) << " | " << r.cold_faults
        << " |\n";
}

struct config {
  double seconds = 2.5;
  fs::path dir;
  std::string json;
  std::vector<std::string> engines = engine_names();
  std::vector<std::size_t> batches{1, 64, 256};
  std::vector<std::size_t> payloads{128, 4096};
  std::uint64_t recovery = 100000;
};

void write_json(const std::string& file, const config& cfg, const machine_info& m,
                const std::string& fs_type, const std::vector<case_result>& cases,
                const std::vector<recovery_result>& recoveries) {
  json_writer w;
  w.begin_object();
  w.key("header");
  w.begin_object();
  w.key("program"); w.string("plexus-store-bench");
  write_machine_fields(w, m);
  w.key("dir"); w.string(cfg.dir.string());
  w.key("filesystem"); w.string(fs_type);
  w.key("seconds_per_engine_per_case"); w.number(cfg.seconds);
  w.key("sqlite"); w.string(sqlite3_libversion());
  w.key("lmdb"); w.string(mdb_version(nullptr, nullptr, nullptr));
  w.end_object();
  w.key("cases");
  w.begin_array();
  for (const auto& c : cases) {
    w.begin_object();
    w.key("engine"); w.string(c.engine);
    w.key("batch"); w.integer(static_cast<std::int64_t>(c.batch));
    w.key("payload_bytes"); w.integer(static_cast<std::int64_t>(c.payload));
    w.key("messages"); w.integer(static_cast<std::int64_t>(c.messages));
    w.key("seconds"); w.number(c.seconds);
    w.key("msgs_per_s"); w.number(c.msgs_per_s);
    w.key("mb_per_s"); w.number(c.mb_per_s);
    w.key("batch_p50_us"); w.number(c.p50_us);
    w.key("batch_p99_us"); w.number(c.p99_us);
    w.key("batch_max_us"); w.number(c.max_us);
    w.key("commits"); w.integer(static_cast<std::int64_t>(c.commits));
    w.key("flushes"); w.integer(static_cast<std::int64_t>(c.flushes));
    w.key("disk_bytes"); w.integer(static_cast<std::int64_t>(c.disk_bytes));
    w.end_object();
  }
  w.end_array();
  w.key("recovery");
  w.begin_array();
  for (const auto& r : recoveries) {
    w.begin_object();
    w.key("engine"); w.string(r.engine);
    w.key("messages"); w.integer(static_cast<std::int64_t>(r.messages));
    w.key("payload_bytes"); w.integer(static_cast<std::int64_t>(recovery_payload));
    w.key("disk_bytes"); w.integer(static_cast<std::int64_t>(r.disk_bytes));
    w.key("cold_ms"); w.number(r.cold_ms);
    w.key("warm_ms"); w.number(r.warm_ms);
    w.key("cold_minor_faults"); w.integer(static_cast<std::int64_t>(r.cold_faults));
    w.end_object();
  }
  w.end_array();
  w.end_object();
  std::ofstream out{file};
  out << w.str() << '\n';
  if (!out) throw std::runtime_error("cannot write " + file);
}

// ------------------------------------------------------------------ cli

constexpr std::string_view help_text =
    R"(plexus-store-bench: the durable queue's storage workload on the broker's
segment log (plexus-log), SQLite (WAL, synchronous=FULL) and LMDB (durable
commits), in one run. Each case: batches of B appends plus B acks of the
batch before, one durable commit per batch, for --seconds. Then recovery:
reopen a store of live 128 B messages and read them all back.
See docs/durable-storage.md.

usage: plexus-store-bench [options]
  --seconds S        seconds each engine runs per case, in slices of ~0.25 s
                     taken in turn with the others (default 2.5)
  --dir DIR          where the stores are made, one fresh directory each
                     (default: store-bench-data next to this program); not tmpfs
  --json FILE        also write the header and results as JSON
  --engines LIST     some of plexus-log,sqlite,lmdb (default all)
  --batches LIST     batch sizes (default 1,64,256)
  --payloads LIST    payload bytes (default 128,4096)
  --recovery N       live messages for the recovery figure (default 100000; 0: none)
  -h, --help         this text
The tables go to stdout (Markdown), progress to stderr.
)";

std::string quoted(std::string_view s) { return "'" + std::string{s} + "'"; }

template <class T>
T parse_number(std::string_view flag, std::string_view text, T min) {
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v < min)
    throw usage_error(std::string{flag} + " needs a number of at least " + std::to_string(min) +
                      ", got " + quoted(text));
  return v;
}

std::vector<std::string_view> split(std::string_view list) {
  std::vector<std::string_view> out;
  for (;;) {
    auto comma = list.find(',');
    out.push_back(list.substr(0, comma));
    if (comma == std::string_view::npos) return out;
    list.remove_prefix(comma + 1);
  }
}

std::optional<config> parse_args(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i], value;
    if (arg == "-h" || arg == "--help") return std::nullopt;
    auto eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--seconds" || arg == "--dir" || arg == "--json" || arg == "--engines" ||
               arg == "--batches" || arg == "--payloads" || arg == "--recovery") {
      if (i + 1 >= argc) throw usage_error(std::string{arg} + " needs a value");
      value = argv[++i];
    }
    if (arg == "--seconds") {
      cfg.seconds = parse_number<double>(arg, value, 0.0);
      if (!(cfg.seconds > 0 && cfg.seconds <= 3600))
        throw usage_error("--seconds needs a number in (0, 3600], got " + quoted(value));
    } else if (arg == "--dir") {
      cfg.dir = value;
    } else if (arg == "--json") {
      cfg.json = value;
    } else if (arg == "--engines") {
      cfg.engines.clear();
      for (auto e : split(value)) {
        const auto& known = engine_names();
        if (std::find(known.begin(), known.end(), e) == known.end())
          throw usage_error("unknown engine " + quoted(e) + " (known: plexus-log, sqlite, lmdb)");
        cfg.engines.emplace_back(e);
      }
    } else if (arg == "--batches") {
      cfg.batches.clear();
      for (auto b : split(value)) cfg.batches.push_back(parse_number<std::size_t>(arg, b, 1));
    } else if (arg == "--payloads") {
      cfg.payloads.clear();
      for (auto p : split(value)) cfg.payloads.push_back(parse_number<std::size_t>(arg, p, 8));
    } else if (arg == "--recovery") {
      cfg.recovery = parse_number<std::uint64_t>(arg, value, 0);
    } else {
      throw usage_error("unknown flag " + quoted(arg) + " (see --help)");
    }
  }
  return cfg;
}

fs::path default_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return (ec ? fs::current_path() : exe.parent_path()) / "store-bench-data";
}

int run(int argc, char** argv) {
  std::optional<config> parsed;
  try {
    parsed = parse_args(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "plexus-store-bench: " << e.what() << '\n';
    return 2;
  }
  if (!parsed) {
    std::cout << help_text;
    return 0;
  }
  auto& cfg = *parsed;
  if (cfg.dir.empty()) cfg.dir = default_dir();
  bool made_dir = fs::create_directories(cfg.dir);
  auto fs_type = filesystem_of(cfg.dir);
  if (fs_type.starts_with("tmpfs") || fs_type.starts_with("ramfs"))
    std::cerr << "plexus-store-bench: warning: " << cfg.dir.string() << " is on " << fs_type
              << ": fsync does nothing there, the figures mean nothing\n";

  auto m = describe_machine();
  std::cout << "plexus-store-bench\n"
            << "  git_sha     " << m.git_sha << '\n'
            << "  compiler    " << m.compiler << '\n'
            << "  build_type  " << m.build_type << '\n'
            << "  cpu         " << m.cpu << '\n'
            << "  cores       " << m.cores << '\n'
            << "  date        " << m.date << '\n'
            << "  load        " << m.load << '\n'
            << "  dir         " << cfg.dir.string() << '\n'
            << "  filesystem  " << fs_type << '\n'
            << "  sqlite      " << sqlite3_libversion() << " (WAL, synchronous=FULL)\n"
            << "  lmdb        " << mdb_version(nullptr, nullptr, nullptr) << " (durable commits)\n"
            << "  per case    " << cfg.seconds << " s per engine, in turns of ~0.25 s\n\n";

  std::vector<case_result> cases;
  std::size_t turn = 0;
  for (auto payload : cfg.payloads)
    for (auto batch : cfg.batches) {
      std::cerr << "case batch " << batch << " payload " << size_label(payload) << " ..."
                << std::flush;
      for (auto& r : run_case(cfg.engines, batch, payload, cfg.seconds, cfg.dir, turn++)) {
        std::cerr << ' ' << r.engine << ' ' << sig3(r.msgs_per_s) << " msg/s";
        cases.push_back(std::move(r));
      }
      std::cerr << '\n';
      settle_filesystem(cfg.dir);
    }
  std::vector<recovery_result> recoveries;
  if (cfg.recovery > 0)
    for (const auto& name : cfg.engines) {
      std::cerr << "recovery " << name << " " << cfg.recovery << " messages ... " << std::flush;
      recoveries.push_back(run_recovery(name, cfg.recovery, cfg.dir));
      std::cerr << sig3(recoveries.back().cold_ms) << " ms\n";
    }

  // Every engine syncs at every commit: none counted means the wrappers
  // above were not called, and the flush counts mean nothing.
  for (const auto& c : cases)
    if (c.flushes < c.commits)
      std::cerr << "plexus-store-bench: warning: " << c.flushes << " flushes counted for "
                << c.commits << " commits of " << c.engine << ": the flush counts are wrong\n";

  print_tables(std::cout, cases, recoveries);
  if (!cfg.json.empty()) write_json(cfg.json, cfg, m, fs_type, cases, recoveries);
  std::error_code ec;
  if (made_dir) fs::remove(cfg.dir, ec); // empty by now: each store removed its own
  return 0;
}

} // namespace
} // namespace plexus::bench

int main(int argc, char** argv) {
  try {
    return plexus::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "plexus-store-bench: " << e.what() << '\n';
    return 1;
  }
}
