#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# plexus as a user gets it, three ways; each ends by building test/consumer
# and running it (a typed function on an embedded broker answers a request).
#   check.sh installed    SRC BUILD WORK   cmake --install into WORK/prefix; find_package and pkg-config
#   check.sh subdirectory SRC BUILD WORK   add_subdirectory(plexus) from the source tree
#   check.sh debs         SRC BUILD WORK   cpack's .debs: control data, file lists, then libplexus-dev unpacked
set -euo pipefail
mode="$1" src="$2" build="$3" work="$4"
rm -rf "$work"
mkdir -p "$work"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# Runs a command quietly; its output only when it fails.
quiet() {
  local out
  if ! out="$("$@" 2>&1)"; then
    echo "$out" >&2
    fail "$*"
  fi
}
run_consumer() { # binary
  local out
  out="$("$1" 2>&1)" || fail "$1 exited $?: $out"
  grep -q "A-17: 12 EUR" <<<"$out" || fail "$1 said: $out"
  grep -q "next weekday 09:00: 2026-12-07T09:00:00.000Z" <<<"$out" || fail "$1: plexus::actors said: $out"
  echo "ok: $1: $(tail -n1 <<<"$out")"
}
consumer_cmake() { # build dir, extra cmake args...
  local dir="$1"
  shift
  quiet cmake -S "$src/test/consumer" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
  quiet cmake --build "$dir" --target consumer
  run_consumer "$dir/consumer"
}
expect_files() { # root, then paths (globs) that must exist under it
  local root="$1"
  shift
  for f in "$@"; do
    compgen -G "$root/$f" >/dev/null || fail "not installed: $f (under $root)"
  done
}

case "$mode" in
installed)
  prefix="$work/prefix"
  quiet cmake --install "$build" --prefix "$prefix"
  expect_files "$prefix" include/plexus/node.hpp include/plexus/client.hpp include/plexus/wire.hpp \
    include/plexus/topic.hpp include/plexus/version.hpp include/plexus/actors/timer.hpp \
    'lib*/libplexus_runtime.a' 'lib*/libplexus_actors.a' \
    'lib*/libplexus_wire.a' 'lib*/cmake/plexus/plexusConfig.cmake' \
    'lib*/cmake/plexus/plexusConfigVersion.cmake' 'lib*/cmake/plexus/FindCAF.cmake' \
    'lib*/pkgconfig/plexus.pc' bin/plexus-broker bin/plexus etc/plexus/broker.toml \
    lib/systemd/system/plexus-broker.service
  # No private header leaks into the install.
  if find "$prefix/include" -name '*core*.hpp' | grep -q .; then fail "a private header was installed"; fi
  "$prefix/bin/plexus-broker" --version | grep -q "^plexus-broker 0\.2\.0 " || fail "plexus-broker --version"
  consumer_cmake "$work/cmake" "-DCMAKE_PREFIX_PATH=$prefix"
  # A version the install does not satisfy is refused by find_package.
  mkdir -p "$work/too-new"
  printf 'cmake_minimum_required(VERSION 3.25)\nproject(p CXX)\nfind_package(plexus 0.3 REQUIRED)\n' \
    >"$work/too-new/CMakeLists.txt"
  if cmake -S "$work/too-new" -B "$work/too-new/b" "-DCMAKE_PREFIX_PATH=$prefix" >"$work/too-new.log" 2>&1; then
    fail "find_package(plexus 0.3) accepted 0.2"
  fi
  grep -q "0.2.0" "$work/too-new.log" || fail "find_package(plexus 0.3) did not name the version found"
  # pkg-config: one compiler line, as a Makefile user would write it.
  pc_dir="$(dirname "$(compgen -G "$prefix/lib*/pkgconfig/plexus.pc" | head -n1)")"
  flags="$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs plexus)" || fail "pkg-config plexus"
  [ "$(PKG_CONFIG_PATH="$pc_dir" pkg-config --modversion plexus)" = 0.2.0 ] || fail "plexus.pc version"
  # shellcheck disable=SC2086 # the flags are words
  quiet c++ -std=c++20 -O1 "$src/test/consumer/main.cpp" -o "$work/consumer-pc" $flags
  run_consumer "$work/consumer-pc"
  ;;
subdirectory)
  consumer_cmake "$work/cmake" "-DPLEXUS_SOURCE_DIR=$src"
  ;;
debs)
  quiet cpack --config "$build/CPackConfig.cmake" -B "$work/out"
  declare -A deb
  for name in plexus-broker plexus-tools libplexus-dev; do
    deb[$name]="$(compgen -G "$work/out/${name}_0.2.0_*.deb" | head -n1)" || true
    [ -n "${deb[$name]}" ] || fail "cpack made no ${name}_0.2.0_*.deb: $(ls "$work/out")"
    info="$(dpkg-deb --info "${deb[$name]}")"
    grep -q "^ Package: $name$" <<<"$info" || fail "$name: Package field"
    grep -q "^ Version: 0.2.0$" <<<"$info" || fail "$name: Version field"
    grep -q "^ Description: " <<<"$info" || fail "$name: no Description"
    dpkg-deb -c "${deb[$name]}" | awk '{print $NF}' | grep -v '/$' >"$work/$name.files"
  done
  broker_info="$(dpkg-deb --info "${deb[plexus-broker]}")"
  for dep in libzmq5 libsodium adduser; do
    grep -q "^ Depends:.*$dep" <<<"$broker_info" || fail "plexus-broker does not depend on $dep"
  done
  grep -q "^ Depends:.*libcaf-dev" <<<"$(dpkg-deb --info "${deb[libplexus-dev]}")" \
    || fail "libplexus-dev does not depend on libcaf-dev"
  must() { grep -qx "$2" "$work/$1.files" || fail "$1 lacks $2"; }
  must plexus-broker ./usr/bin/plexus-broker
  must plexus-broker ./usr/lib/systemd/system/plexus-broker.service
  must plexus-broker ./etc/plexus/broker.toml
  must plexus-tools ./usr/bin/plexus
  must libplexus-dev ./usr/include/plexus/node.hpp
  must libplexus-dev ./usr/include/plexus/version.hpp
  must libplexus-dev ./usr/include/plexus/actors/http.hpp
  grep -q '^\./usr/lib.*/libplexus_actors\.a$' "$work/libplexus-dev.files" || fail "libplexus-dev lacks the actors"
  grep -q '^\./usr/lib.*/libplexus_runtime\.a$' "$work/libplexus-dev.files" || fail "libplexus-dev lacks the runtime"
  grep -q '^\./usr/lib.*/cmake/plexus/plexusConfig\.cmake$' "$work/libplexus-dev.files" || fail "no CMake package"
  grep -q '^\./usr/lib.*/pkgconfig/plexus\.pc$' "$work/libplexus-dev.files" || fail "no plexus.pc"
  dup="$(sort "$work"/*.files | uniq -d)"
  [ -z "$dup" ] || fail "files in two packages: $dup"
  # The broker's service: its own user, its config a conffile, its scripts sane.
  mkdir -p "$work/broker-control"
  dpkg-deb -e "${deb[plexus-broker]}" "$work/broker-control"
  grep -qx /etc/plexus/broker.toml "$work/broker-control/conffiles" || fail "broker.toml is no conffile"
  for s in postinst prerm postrm; do
    [ -x "$work/broker-control/$s" ] || fail "plexus-broker has no executable $s"
    sh -n "$work/broker-control/$s" || fail "plexus-broker $s does not parse"
  done
  grep -q "adduser --system" "$work/broker-control/postinst" || fail "postinst makes no system user"
  dpkg-deb -x "${deb[plexus-broker]}" "$work/broker-root"
  unit="$work/broker-root/usr/lib/systemd/system/plexus-broker.service"
  grep -qx "User=plexus" "$unit" || fail "the unit does not run as plexus"
  grep -qx "StateDirectory=plexus" "$unit" || fail "the unit has no /var/lib/plexus"
  grep -qx "ExecStart=/usr/bin/plexus-broker --config /etc/plexus/broker.toml" "$unit" \
    || fail "the unit's ExecStart"
  # The packaged config is one the packaged broker accepts.
  "$work/broker-root/usr/bin/plexus-broker" --config "$work/broker-root/etc/plexus/broker.toml" \
    --check >/dev/null || fail "the broker rejects its own broker.toml"
  # libplexus-dev unpacked into an empty root is enough to build against.
  dpkg-deb -x "${deb[libplexus-dev]}" "$work/dev-root"
  consumer_cmake "$work/cmake" "-DCMAKE_PREFIX_PATH=$work/dev-root/usr"
  ;;
*)
  fail "unknown mode '$mode' (installed, subdirectory or debs)"
  ;;
esac
echo "ok: $mode"
