// SPDX-License-Identifier: Apache-2.0
// Replays a corpus through a fuzz target without libFuzzer, so the g++ build
// runs the seeds (and any saved crash inputs) as an ordinary test:
//   fuzz_envelope_replay DIR_OR_FILE...
// Runs every regular file (directories in name order), prints how many it
// ran, and fails if that is none. A broken invariant traps; the handler
// below names the input first.

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

const char* current_input = nullptr;

void on_fatal_signal(int sig) {
  if (current_input != nullptr) {
    const char msg[] = "replay: crashed on input ";
    (void) !write(STDERR_FILENO, msg, sizeof msg - 1);
    (void) !write(STDERR_FILENO, current_input, std::strlen(current_input));
    (void) !write(STDERR_FILENO, "\n", 1);
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

bool run_file(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
    return false;
  }
  std::vector<char> bytes{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  current_input = p.c_str();
  // A fresh heap copy of exactly the input's size, as libFuzzer passes it,
  // so that ASan sees any read past the end.
  std::vector<std::uint8_t> copy(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(copy.data(), copy.size());
  current_input = nullptr;
  return true;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  for (int sig : {SIGILL, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGTRAP})
    std::signal(sig, on_fatal_signal);
  std::size_t ran = 0;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    fs::path arg{argv[i]};
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator{arg, ec})
        if (e.is_regular_file()) files.push_back(e.path());
      if (ec) {
        std::fprintf(stderr, "replay: cannot list %s: %s\n", arg.c_str(), ec.message().c_str());
        ok = false;
        continue;
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        if (run_file(f)) ++ran;
        else ok = false;
      }
    } else if (fs::is_regular_file(arg, ec)) {
      if (run_file(arg)) ++ran;
      else ok = false;
    } else {
      std::fprintf(stderr, "replay: no such file or directory: %s\n", arg.c_str());
      ok = false;
    }
  }
  std::printf("replay: ran %zu inputs\n", ran);
  if (ran == 0) {
    std::fprintf(stderr, "replay: no inputs found: an empty corpus tests nothing\n");
    return 1;
  }
  return ok ? 0 : 1;
}
