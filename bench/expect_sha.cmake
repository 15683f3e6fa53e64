# SPDX-License-Identifier: Apache-2.0
# `BENCH --version` names the commit the source tree is at now (what the
# last build compiled), not the one CMake was configured at: the sha is
# regenerated on every build. "unknown" outside a git work tree.
execute_process(COMMAND "${BENCH}" --version RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "--version exited with ${rc}")
endif()
set(want "unknown")
if(GIT_EXECUTABLE)
  execute_process(COMMAND "${GIT_EXECUTABLE}" rev-parse --short HEAD
    WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE grc OUTPUT_VARIABLE head
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(grc EQUAL 0)
    set(want "${head}")
  endif()
endif()
message(STATUS "plexus-bench --version: ${out}expected sha: ${want}")
if(NOT out MATCHES "^plexus-bench ${want}(-dirty)? ")
  message(FATAL_ERROR "plexus-bench reports '${out}', HEAD is ${want} (stale build?)")
endif()
