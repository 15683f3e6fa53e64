#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs the partition fault test (fault_tests --run_test=partition), which
# needs iproute2's `ip` and root for network namespaces. A missing `ip` or
# namespaces that do not work fail with what is missing; only a non-root
# run is skipped (exit 77), and it says so.
tests="$1"
if [ ! -x /usr/sbin/ip ]; then
  echo "fault.partition: needs /usr/sbin/ip from iproute2 (make test-fault installs it)" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "fault.partition: SKIPPED: needs root to create network namespaces (sudo make test-fault)" >&2
  exit 77
fi
if ! /usr/sbin/ip netns list >/dev/null 2>&1; then
  echo "fault.partition: 'ip netns list' fails here: no network namespaces (a container without CAP_SYS_ADMIN?)" >&2
  exit 1
fi
exec "$tests" --run_test=partition --log_level=message --report_level=short
