# SPDX-License-Identifier: Apache-2.0
# Runs BENCH with ARGS (space-separated) and fails unless it exits with
# EXPECT_RC, prints nothing on stdout and exactly one stderr line that
# contains EXPECT_STDERR. ctest's WILL_FAIL cannot tell exit code 2 from 1.
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND "${BENCH}" ${args}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit ${rc}; stderr: ${err}")
if(NOT rc STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "expected exit code ${EXPECT_RC}, got '${rc}'")
endif()
if(NOT out STREQUAL "")
  message(FATAL_ERROR "expected no stdout, got: ${out}")
endif()
string(FIND "${err}" "${EXPECT_STDERR}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "stderr lacks '${EXPECT_STDERR}'")
endif()
string(REGEX MATCHALL "\n" newlines "${err}")
list(LENGTH newlines lines)
if(NOT lines EQUAL 1)
  message(FATAL_ERROR "expected one stderr line, got ${lines}")
endif()
