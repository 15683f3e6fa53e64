# SPDX-License-Identifier: Apache-2.0
# bench.store.quick: plexus-store-bench runs every case and prints every row
# (3 engines x 3 batch sizes x 2 payloads, and 3 recovery rows), never how
# fast. -DBENCH=<program> -DDIR=<data dir> -DJSON=<output file>.
execute_process(COMMAND "${BENCH}" --seconds 0.2 --recovery 10000 --dir "${DIR}" --json "${JSON}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "exit ${rc}\n${out}\n${err}")
endif()
string(REGEX MATCHALL "\n\\| (plexus-log|sqlite|lmdb) \\| [0-9]+ \\| [0-9]+ (B|KiB) \\|" cases "${out}")
string(REGEX MATCHALL "\n\\| (plexus-log|sqlite|lmdb) \\| 10000 \\|" recoveries "${out}")
list(LENGTH cases n_cases)
list(LENGTH recoveries n_recoveries)
if(NOT n_cases EQUAL 18 OR NOT n_recoveries EQUAL 3 OR out MATCHES "nan")
  message(FATAL_ERROR "expected 18 case rows and 3 recovery rows, got ${n_cases} and ${n_recoveries}:\n${out}")
endif()
if(NOT EXISTS "${JSON}")
  message(FATAL_ERROR "no ${JSON}")
endif()
message(STATUS "${n_cases} case rows, ${n_recoveries} recovery rows")
