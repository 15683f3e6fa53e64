# SPDX-License-Identifier: Apache-2.0
# The two commands a newcomer needs are `make test` (and, with the runtime,
# `make demo`). Each installs the missing packages it needs (and no more:
# scripts/install-deps.sh), configures and builds incrementally, then does
# its job.

JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
SMOKE_FUZZ_SECONDS ?= 10
DURATION ?= 20
# make demo's HTTP gateway (the sample's orders come in through it; curl it
# while it runs); 0 = a free port, printed.
HTTP_PORT ?= 8080
BENCH_ARGS ?=
# Timed runs per case for `make bench` (median, MAD, min and max need at
# least 3): the set took under 10 minutes on 2 cores before the durable
# scenario, which adds its fdatasyncs and a 1M-message recovery (5 min at
# --runs 5 on a loaded machine; not yet timed at 3).
BENCH_RUNS ?= 3
# As plexus-bench reports it (bench/git_sha.cmake): "-dirty" with
# uncommitted changes to tracked files.
SHA := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)$(shell \
  git rev-parse --short HEAD >/dev/null 2>&1 && { git diff --quiet HEAD -- || echo -dirty; })
DATE := $(shell date -u +%Y-%m-%d)

.PHONY: help deps deps-test deps-fault deps-bench build build-fuzz demo cluster test test-fault \
  test-asan bench fuzz package install clean

help:
	@echo "make demo       install deps, build, run the shipping sample for DURATION s (20; 0 = until Ctrl-C)"
	@echo "make cluster    build, run a local 3-broker cluster on ports 7401-7403 until Ctrl-C"
	@echo "make test       install deps, build, run every test (unit, fuzz smoke, bench smoke)"
	@echo "make test-fault the fault suite at full scale (100k messages, 10 worker kills, partition)"
	@echo "make test-asan  the same tests under ASan + UBSan"
	@echo "make bench      release build, run the bench suite (about 15 min), write bench/results/<date>-<sha>.{json,md} and plots"
	@echo "make fuzz       run every libFuzzer target for FUZZ_SECONDS (default 60) each"
	@echo "make package    Debian packages plexus-broker, plexus-tools, libplexus-dev in build/packages"
	@echo "make install    install into PREFIX (default /usr/local): headers, libraries, CMake package, programs"
	@echo "make clean      remove build/"

deps:
	@scripts/install-deps.sh build
deps-test:
	@scripts/install-deps.sh test
deps-fault:
	@scripts/install-deps.sh fault
deps-bench:
	@scripts/install-deps.sh bench

# Configured again when the presets change (cache variables come from them).
build/%/build.ninja: CMakePresets.json | deps
	cmake --preset $*

build: deps build/dev/build.ninja
	cmake --build build/dev -j $(JOBS)

build-fuzz: deps-test build/fuzz/build.ninja
	cmake --build build/fuzz -j $(JOBS)

demo: deps build/dev/build.ninja
	cmake --build build/dev -j $(JOBS) --target shipping
	build/dev/samples/shipping --duration $(DURATION) --fail-rate 0.02 --poison-every 200 \
	  --outbox build/demo-outbox.txt --http-port $(HTTP_PORT) --generator http \
	  --summary '@every 5s' --drop build/demo-drop

cluster: build
	scripts/cluster.sh build/dev/brokers/plexus-broker 7400

test: deps-test build build-fuzz
	ctest --test-dir build/fuzz --output-on-failure -L fuzz -E replay
	ctest --test-dir build/dev --output-on-failure -j $(JOBS) -LE '^fault$$'

test-fault: deps-fault build
	ctest --test-dir build/dev --output-on-failure -L '^fault$$'

test-asan: deps build/asan/build.ninja
	cmake --build build/asan -j $(JOBS)
	ctest --test-dir build/asan --output-on-failure -j $(JOBS) -LE '^fault$$'

# The results: <date>-<sha>.json (for --compare), <date>-<sha>.md (the
# table), and <date>-<sha>/ with the CSV, plot data and PNG plots. Progress
# goes to stderr, one line per case.
BENCH_OUT := bench/results/$(DATE)-$(SHA)
bench: deps-bench build/release/build.ninja
	cmake --preset release >/dev/null # finds the NATS peer deps-bench may just have installed
	cmake --build build/release -j $(JOBS) --target plexus-bench
	@mkdir -p $(BENCH_OUT)
	build/release/bench/plexus-bench --runs $(BENCH_RUNS) $(BENCH_ARGS) --data-dir $(BENCH_OUT) \
	  --json $(BENCH_OUT).json --markdown $(BENCH_OUT).md --csv $(BENCH_OUT)/table.csv
	bench/plot.sh $(BENCH_OUT)
	/usr/bin/python3 bench/python/bench_python.py --broker build/release/brokers/plexus-broker \
	  --runs $(BENCH_RUNS) --json $(BENCH_OUT)/python.json
	@echo "bench: $(BENCH_OUT).json, $(BENCH_OUT).md, $(BENCH_OUT)/*.png, $(BENCH_OUT)/python.json"

fuzz: build-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzz.sh build/fuzz "" $(FUZZ_SECONDS)

# The Debian packages, from an optimised build (build/release).
package: deps build/release/build.ninja
	cmake --build build/release -j $(JOBS) --target plexus-broker plexus plexus_runtime
	cd build/release && cpack -B $(CURDIR)/build/packages
	@ls -1 build/packages/*.deb

PREFIX ?= /usr/local
install: deps build/release/build.ninja
	cmake --build build/release -j $(JOBS) --target plexus-broker plexus plexus_runtime
	cmake --install build/release --prefix $(PREFIX)

clean:
	rm -rf build
