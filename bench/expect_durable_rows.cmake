# SPDX-License-Identifier: Apache-2.0
# bench.durable.quick: `plexus-bench --quick --scenario durable` exits 0 and
# prints every row, never how fast. -DBENCH=<plexus-bench> -DJSON=<file>.
execute_process(COMMAND "${BENCH}" --quick --scenario durable --json "${JSON}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "exit ${rc}\n${out}\n${err}")
endif()
string(REGEX MATCHALL "\ndurable +[^ \n]+ +plexus +[a-z0-9_]+ " plexus_rows "${out}")
string(REGEX MATCHALL "\ndurable +[^ \n]+ +nats-js +[a-z0-9_]+ " nats_rows "${out}")
string(REGEX MATCHALL "\ndurable +recovery-[0-9]+x128B +plexus +(open|serving|first_delivery)_ms " recovery "${out}")
list(LENGTH plexus_rows n_plexus)
list(LENGTH nats_rows n_nats)
list(LENGTH recovery n_recovery)
set(expect_nats 21)
if(err MATCHES "no nats-js rows")
  set(expect_nats 0)
endif()
if(NOT n_plexus EQUAL 24 OR NOT n_recovery EQUAL 3 OR NOT n_nats EQUAL expect_nats)
  message(FATAL_ERROR "expected 24 plexus rows (3 of recovery) and ${expect_nats} nats-js rows, "
                      "got ${n_plexus} (${n_recovery}) and ${n_nats}:\n${out}\n${err}")
endif()
message(STATUS "${n_plexus} plexus rows, ${n_nats} nats-js rows")
