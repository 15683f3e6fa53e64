# SPDX-License-Identifier: Apache-2.0
# plexus_options: the warning and sanitizer flags for plexus's own targets.
# Third-party headers come in as SYSTEM includes, so -Werror only judges ours.
add_library(plexus_options INTERFACE)
target_compile_options(plexus_options INTERFACE -Wall -Wextra -Wpedantic
  -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  $<$<BOOL:${PLEXUS_WERROR}>:-Werror>
  # GCC 12 at -O3 reports "literal" + std::string&& as overlapping memcpy
  # (GCC bug 105329), a false positive, in every TU that does it.
  $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
if(PLEXUS_SANITIZE)
  target_compile_options(plexus_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(plexus_options INTERFACE -fsanitize=address,undefined)
endif()
if(PLEXUS_BUILD_FUZZ)
  target_compile_options(plexus_options INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
endif()
