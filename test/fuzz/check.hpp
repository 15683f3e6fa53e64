// SPDX-License-Identifier: Apache-2.0
#pragma once

// What the fuzz targets share: an invariant they must never see broken
// (say which one, then trap, so libFuzzer or the replay driver keeps the
// input that broke it), and the reader of a fuzz input as a sequence of
// choices (zeros once it runs out).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

namespace plexus::fuzz {

struct input {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t at = 0;
  [[nodiscard]] bool done() const { return at >= size; }
  std::uint8_t byte() { return at < size ? data[at++] : 0; }
  std::string_view bytes(std::size_t n) {
    n = std::min(n, size - std::min(at, size));
    std::string_view s{reinterpret_cast<const char*>(data + at), n};
    at += n;
    return s;
  }
};

} // namespace plexus::fuzz

#define PLEXUS_FUZZ_CHECK(cond)                                                        \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "fuzz invariant broken: %s (%s:%d)\n", #cond, __FILE__,     \
                   __LINE__);                                                          \
      __builtin_trap();                                                                \
    }                                                                                  \
  } while (false)
