#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages one make target needs, and nothing more:
#   scripts/install-deps.sh build   build the libraries, programs, tests and samples (make demo, make build)
#   scripts/install-deps.sh test    build + clang/libFuzzer, Python (pyzmq, msgpack, pytest), Graphviz, SQLite, LMDB, PostgreSQL and wrk for the tests (make test)
#   scripts/install-deps.sh fault   build + iproute2 for the partition fault test (make test-fault)
#   scripts/install-deps.sh bench   build + the NATS peer, nginx and wrk, gnuplot, SQLite and LMDB (make bench)
# Idempotent: installs only what is missing, runs apt-get update only then.
# Quiet: one line per step; apt's full log only when a step fails.
set -euo pipefail

build=(
  # toolchain (dpkg-dev, via build-essential, also serves `make package`)
  build-essential cmake ninja-build pkg-config ccache git
  # mandated libraries
  libcaf-dev libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libboost-test-dev
  # CLI, config, logging, the metrics endpoint (HTTP)
  libcli11-dev libtomlplusplus-dev libspdlog-dev libfmt-dev libcpp-httplib-dev
  # HMAC-SHA256 for the cluster secret (ZeroMQ links it for CURVE anyway)
  libsodium-dev
  # actors/timer: schedules in named time zones read /usr/share/zoneinfo
  tzdata
  # actors/postgres: LISTEN/NOTIFY through libpq
  libpq-dev
)
test_extra=(
  # clang + libFuzzer/ASan/UBSan runtimes for the fuzz smoke and `make fuzz`
  clang libclang-rt-14-dev
  # `plexus graph --png`: Graphviz's dot renders the dependency graph
  graphviz
  # integration.spec_client: a Python client written from PROTOCOL.md alone
  python3-zmq python3-msgpack
  # bench.store.quick: plexus-store-bench's rows (docs/durable-storage.md)
  libsqlite3-dev liblmdb-dev
  # postgres_actor_tests: a real server (initdb, postgres) the test starts itself
  postgresql
  # bench.http.quick: wrk drives the HTTP gateway (and nginx in `make bench`)
  wrk
  # test/python: the Python package's tests (framework/python)
  python3-pytest
)
fault_extra=(
  # `ip netns` and `tc` for the partition fault test
  iproute2
)
bench_extra=(
  # the NATS peer's C client; gnuplot draws `make bench`'s plots. The
  # nats-server binary itself comes below, without its system service.
  libnats-dev gnuplot-nox
  # plexus-store-bench: the embedded stores the broker's segment log is
  # measured against (docs/durable-storage.md)
  libsqlite3-dev liblmdb-dev
  # the http scenario's load generator (nginx, its ceiling, comes below)
  wrk
  # bench/python/bench_python.py: the Python package beside raw pyzmq
  python3-zmq python3-msgpack
)

profile="${1:-test}"
case "$profile" in
  build) want=("${build[@]}") ;;
  test) want=("${build[@]}" "${test_extra[@]}") ;;
  fault) want=("${build[@]}" "${fault_extra[@]}") ;;
  bench) want=("${build[@]}" "${bench_extra[@]}") ;;
  -h | --help)
    sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "install-deps: unknown profile '$profile' (build, test, fault or bench)" >&2
    exit 2
    ;;
esac

log="$(mktemp -t plexus-install-deps.XXXXXX)"
trap 'rm -f "$log"' EXIT

sudo=()
need_root() {
  if [ "$(id -u)" -ne 0 ] && [ ${#sudo[@]} -eq 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "install-deps: need root or sudo to install: $*" >&2
      exit 1
    fi
  fi
}

# Runs "$@" with its output in the log; on failure shows the log and stops.
step() {
  local what="$1"
  shift
  printf 'install-deps: %s ... ' "$what"
  if "$@" >>"$log" 2>&1; then
    echo done
  else
    local rc=$?
    echo "FAILED (exit $rc)"
    cat "$log" >&2
    exit "$rc"
  fi
}

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

updated=0
apt_update() {
  if [ "$updated" -eq 0 ]; then
    step "apt-get update" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    updated=1
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages for '$profile' present"
else
  need_root "${missing[*]}"
  apt_update
  step "installing ${missing[*]}" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# nats-server for the bench: Debian's package would also create a system
# user and enable and start a NATS daemon on every boot. The bench starts
# its own servers, so only the binary is taken: unpacked from the .deb into
# build/tools (plexus-bench looks there), no service left running. A
# nats-server already on the PATH or in /usr/sbin is used as it is.
if [ "$profile" = bench ]; then
  root="$(cd "$(dirname "$0")/.." && pwd)"
  tools="$root/build/tools"
  if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    echo "install-deps: nats-server present"
  elif [ -x "$tools/usr/sbin/nats-server" ]; then
    echo "install-deps: nats-server present in build/tools"
  else
    need_root nats-server
    apt_update
    mkdir -p "$tools"
    scratch="$(mktemp -d -t plexus-nats.XXXXXX)"
    trap 'rm -f "$log"; rm -rf "$scratch"' EXIT
    step "downloading nats-server (binary only, no service)" \
      bash -c "cd '$scratch' && apt-get download -q nats-server"
    step "unpacking nats-server into build/tools" \
      bash -c "dpkg-deb -x '$scratch'/nats-server_*.deb '$scratch/root' &&
               mkdir -p '$tools/usr/sbin' &&
               cp '$scratch/root/usr/sbin/nats-server' '$tools/usr/sbin/nats-server'"
  fi
  # nginx, the http scenario's ceiling: the same way, only its binary (the
  # package would enable and start a web server on port 80).
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    echo "install-deps: nginx present"
  elif [ -x "$tools/usr/sbin/nginx" ]; then
    echo "install-deps: nginx present in build/tools"
  else
    need_root nginx
    apt_update
    mkdir -p "$tools"
    scratch_ngx="$(mktemp -d -t plexus-nginx.XXXXXX)"
    trap 'rm -f "$log"; rm -rf "${scratch:-}" "$scratch_ngx"' EXIT
    step "downloading nginx (binary only, no service)" \
      bash -c "cd '$scratch_ngx' && apt-get download -q nginx"
    step "unpacking nginx into build/tools" \
      bash -c "dpkg-deb -x '$scratch_ngx'/nginx_*.deb '$scratch_ngx/root' &&
               mkdir -p '$tools/usr/sbin' &&
               cp '$scratch_ngx/root/usr/sbin/nginx' '$tools/usr/sbin/nginx'"
  fi
fi
