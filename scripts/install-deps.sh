#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian package plexus needs to build, test, fuzz and bench.
# Idempotent: installs only what is missing, runs apt-get update only then.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git
  # clang + libFuzzer/ASan/UBSan runtimes for `make fuzz`
  clang libclang-rt-14-dev
  # mandated libraries
  libcaf-dev libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libboost-test-dev
  # CLI, config, logging, the metrics endpoint (HTTP)
  libcli11-dev libtomlplusplus-dev libspdlog-dev libfmt-dev libcpp-httplib-dev
  # bench peer: nats-server and its C client; gnuplot draws `make bench`'s plots
  nats-server libnats-dev gnuplot-nox
  # `plexus graph --png`: Graphviz's dot renders the dependency graph
  graphviz
  # integration.spec_client: a Python client written from PROTOCOL.md alone
  python3-zmq python3-msgpack
  # HMAC-SHA256 for the cluster secret (ZeroMQ links it for CURVE anyway)
  libsodium-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
