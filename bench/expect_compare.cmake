# SPDX-License-Identifier: Apache-2.0
# Runs BENCH --compare A B and fails unless it exits with EXPECT_RC and
# every regex in EXPECT_LINES (separated by @@: a ; would split the
# argument in add_test) matches a line of its stdout.
execute_process(COMMAND "${BENCH}" --compare "${A}" "${B}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit ${rc}\n${out}${err}")
if(NOT rc STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "expected exit code ${EXPECT_RC}, got '${rc}'")
endif()
string(REPLACE "@@" ";" wanted "${EXPECT_LINES}")
string(REPLACE "\n" ";" lines "${out}")
foreach(want IN LISTS wanted)
  set(found FALSE)
  foreach(line IN LISTS lines)
    if(line MATCHES "${want}")
      set(found TRUE)
      break()
    endif()
  endforeach()
  if(NOT found)
    message(FATAL_ERROR "no stdout line matches '${want}'")
  endif()
endforeach()
