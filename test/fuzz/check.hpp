// SPDX-License-Identifier: Apache-2.0
#pragma once

// An invariant the fuzz targets must never see broken: say which one, then
// trap, so libFuzzer (or the replay driver) keeps the input that broke it.

#include <cstdio>

#define PLEXUS_FUZZ_CHECK(cond)                                                        \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "fuzz invariant broken: %s (%s:%d)\n", #cond, __FILE__,     \
                   __LINE__);                                                          \
      __builtin_trap();                                                                \
    }                                                                                  \
  } while (false)
