#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Starts a local 3-broker cluster on loopback (ports BASE_PORT+1 .. +3,
# 7401-7403 by default) and keeps it up until Ctrl-C, which stops all three.
# Usage: scripts/cluster.sh BROKER_BINARY [BASE_PORT]
set -euo pipefail

broker=${1:?usage: scripts/cluster.sh BROKER_BINARY [BASE_PORT]}
base=${2:-7400}
logs=${CLUSTER_LOGS:-build/cluster}
mkdir -p "$logs"

# Brokers admit as peers only those that prove the cluster secret; one is
# made for this run unless given.
export PLEXUS_CLUSTER_SECRET=${PLEXUS_CLUSTER_SECRET:-$(head -c 24 /dev/urandom | base64)}

seeds=()
for i in 1 2 3; do seeds+=(--peer "tcp://127.0.0.1:$((base + i))"); done

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the cluster"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

for i in 1 2 3; do
  "$broker" --id "b$i" --listen "tcp://127.0.0.1:$((base + i))" "${seeds[@]}" \
    >"$logs/b$i.log" 2>&1 &
  pids+=($!)
done

# Ready when each has printed its endpoint (bounded: a broker that cannot
# bind exits with the reason in its log).
for i in 1 2 3; do
  for _ in $(seq 100); do
    grep -q "^listening on" "$logs/b$i.log" 2>/dev/null && break
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
      echo "broker b$i failed to start:" >&2
      cat "$logs/b$i.log" >&2
      exit 1
    fi
    sleep 0.1
  done
done

cat <<MSG
plexus cluster up: b1 tcp://127.0.0.1:$((base + 1)), b2 tcp://127.0.0.1:$((base + 2)), b3 tcp://127.0.0.1:$((base + 3))
logs in $logs/. Try, in other terminals:
  build/dev/framework/plexus --broker tcp://127.0.0.1:$((base + 2)) sub 'demo.>'
  build/dev/framework/plexus --broker tcp://127.0.0.1:$((base + 1)) pub demo.hello world
  build/dev/samples/shipping --broker tcp://127.0.0.1:$((base + 3)) --role functions
  build/dev/samples/shipping --broker tcp://127.0.0.1:$((base + 1)) --role generator
Ctrl-C stops the cluster.
MSG
wait -n "${pids[@]}" || true
echo "a broker exited; see $logs/" >&2
