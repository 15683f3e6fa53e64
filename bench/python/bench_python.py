#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Python publisher -> plexus-broker -> Python function (acked), beside a raw
pyzmq PUSH/PULL of the same payload, in the same run on the same machine.

    /usr/bin/python3 bench/python/bench_python.py --broker build/dev/brokers/plexus-broker

Each case runs its sender and its receiver in two processes (as the plexus
case's publisher and function are): the rate is messages / (last arrival -
first send), clocks from CLOCK_MONOTONIC, which both processes share. The
plexus function is a plexus.Node function in a queue group with explicit
ACKs and credit (instances 1, prefetch --prefetch, 4096 by default: three
processes take turns on 2 cores in slices of a few ms, and the credit must
cover a turn; raw pyzmq's queues hold 100,000 a side); the publisher publishes
at most once (its batches fill a turn of the event loop). The broker runs
with its defaults: once the group's queue holds half of its 65,536
messages, flow control pauses the publisher (its client holds its PUBs)
until the queue is down to a quarter, so the broker's memory stays bounded
as raw pyzmq's high-water marks bound its queues; a run that lost messages
fails (exit 1). Repeated --runs times; the table gives median, min and max,
and the median CPU time per message of the receiver (rx: first arrival to
last) and of the sender (tx: first send to the last written), each for its
whole process (ZeroMQ's I/O thread too): steadier than rates on a shared
machine; and the broker's CPU per message, all its threads, from /proc over
the publisher's run. Target (issue #22): plexus >= 50% of raw pyzmq.
"""
import argparse
import asyncio
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "framework" / "python"))

import msgpack  # noqa: E402
import zmq  # noqa: E402

TOPIC = "bench.python"


def payload_of(size):
    # A small msgpack map padded to `size` bytes: what a function is typically sent.
    base = {"id": 123456, "customer": "customer-42", "pad": ""}
    pad = max(0, size - len(msgpack.packb(base)))
    base["pad"] = "x" * pad
    return msgpack.packb(base)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- roles (subprocesses)

def role_raw_pull(endpoint, n):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.RCVHWM, 100000)
    s.bind(endpoint)
    print("ready", flush=True)
    first = None
    for _ in range(n):
        m = s.recv()
        msgpack.unpackb(m)  # the function decodes its payload too
        if first is None:
            first = time.monotonic()
            cpu0 = time.process_time()
    print(json.dumps({"last": time.monotonic(), "first": first, "got": n,
                      "cpu": time.process_time() - cpu0}), flush=True)


def role_raw_push(endpoint, n, size):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, 100000)
    s.connect(endpoint)
    payload = payload_of(size)
    time.sleep(0.2)  # the connection is up before the clock starts (PUSH queues anyway)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    for _ in range(n):
        s.send(payload)
    print(json.dumps({"start": t0, "sent": time.monotonic(),
                      "cpu": time.process_time() - cpu0}), flush=True)
    s.close(linger=-1)
    ctx.term()


def role_function(endpoint, n, prefetch, instances):
    import plexus

    node = plexus.Node(endpoint, name=f"bench-fn-{os.getpid()}", service="bench", argv=[],
                       trace_sample=0.0)
    state = {"got": 0, "first": None, "last": None}
    done = None

    @node.function("count", on=TOPIC, instances=instances, prefetch=prefetch)
    def count(order: dict, ctx):
        st = state
        if st["first"] is None:
            st["first"] = time.monotonic()
            st["cpu0"] = time.process_time()
        st["got"] += 1
        if st["got"] >= n:
            st["last"] = time.monotonic()
            st["cpu"] = time.process_time() - st["cpu0"]
            done.set()

    async def main():
        nonlocal done
        done = asyncio.Event()
        await node.start()
        print("ready", flush=True)
        try:
            await asyncio.wait_for(done.wait(), 120)
        except asyncio.TimeoutError:
            pass
        if node.client.errors or state["got"] < n:
            print(f"function: got {state['got']}, client {dict(node.client.stats)}, "
                  f"errors {node.client.errors[-5:]}", file=sys.stderr, flush=True)
        await node.stop()
        print(json.dumps({"last": state["last"] or time.monotonic(), "first": state["first"],
                          "got": state["got"], "cpu": state.get("cpu", 0.0)}), flush=True)

    asyncio.run(main())


def role_publisher(endpoint, n, size, traced):
    import plexus

    # --traced: each message carries its own (unsampled) W3C traceparent, as
    # what a C++ function publishes does; adjacent messages then differ in
    # more than seq and payload, so they go as MSGs, not as MSG runs.
    parents = [f"00-{i + 1:032x}-{i + 1:016x}-00" for i in range(1024)] if traced else None

    async def main():
        c = await plexus.Client(endpoint, name=f"bench-pub-{os.getpid()}").connect()
        payload = payload_of(size)
        publish = c.publish
        t0 = time.monotonic()
        cpu0 = time.process_time()
        chunk = 2000
        for i in range(0, n, chunk):
            if parents:
                for k in range(min(chunk, n - i)):
                    publish(TOPIC, payload, traceparent=parents[k & 1023])
            else:
                for _ in range(min(chunk, n - i)):
                    publish(TOPIC, payload)
            await c.flush()  # backpressure: what was queued is in the socket
        sent = time.monotonic()
        cpu = time.process_time() - cpu0
        pauses = c.stats["pauses"]
        await c.close()
        print(json.dumps({"start": t0, "sent": sent, "cpu": cpu, "pauses": pauses}), flush=True)

    asyncio.run(main())


# ---------------------------------------------------------------- driver

def spawn(*args):
    return subprocess.Popen([sys.executable, __file__, "--role", *map(str, args)],
                            stdout=subprocess.PIPE, text=True)


def ready(proc, what):
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"{what} did not start: {line!r}")


def result(proc):
    out = proc.stdout.read().strip().splitlines()
    proc.wait(120)
    return json.loads(out[-1])


def run_raw(n, size):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pull = spawn("raw-pull", endpoint, n)
    ready(pull, "the PULL side")
    push = spawn("raw-push", endpoint, n, size)
    s, r = result(push), result(pull)
    return n / (r["last"] - s["start"]), r["got"], r["cpu"] * 1e6 / n, s["cpu"] * 1e6 / n


def cpu_seconds(pid):
    """utime + stime of a process, all its threads (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_plexus(broker_bin, n, size, prefetch, instances, traced, tmp):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = open(os.path.join(tmp, "broker.log"), "wb")
    broker = subprocess.Popen([broker_bin, "--listen", endpoint, "--id", "bench",
                               "--log-level", "warn"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        fn = spawn("function", endpoint, n, prefetch, instances)
        ready(fn, "the function")
        broker_cpu = cpu_seconds(broker.pid)
        pub = spawn("publisher", endpoint, n, size, int(traced))
        s, r = result(pub), result(fn)
        broker_cpu = cpu_seconds(broker.pid) - broker_cpu
        return (n / (r["last"] - s["start"]), r["got"], r["cpu"] * 1e6 / n, s["cpu"] * 1e6 / n,
                s["pauses"], broker_cpu * 1e6 / n)
    finally:
        broker.terminate()
        broker.wait(10)
        log.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--role":
        role, args = sys.argv[2], sys.argv[3:]
        if role == "raw-pull":
            return role_raw_pull(args[0], int(args[1]))
        if role == "raw-push":
            return role_raw_push(args[0], int(args[1]), int(args[2]))
        if role == "function":
            return role_function(args[0], int(args[1]), int(args[2]), int(args[3]))
        if role == "publisher":
            return role_publisher(args[0], int(args[1]), int(args[2]), bool(int(args[3])))
        raise SystemExit(f"unknown role {role}")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", default=str(ROOT / "build/dev/brokers/plexus-broker"),
                   help="the plexus-broker binary")
    p.add_argument("--messages", type=int, default=200000)
    p.add_argument("--size", type=int, default=64, help="payload bytes")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--prefetch", type=int, default=4096,
                   help="the function's prefetch (its credit is this plus its instances)")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--traced", action="store_true",
                   help="each plexus message carries its own traceparent (no MSG runs)")
    p.add_argument("--quick", action="store_true", help="50k messages, one run")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    a.broker = os.path.abspath(a.broker)
    if not os.access(a.broker, os.X_OK):
        raise SystemExit(f"no plexus-broker at {a.broker} (--broker PATH)")
    if a.quick:
        a.messages, a.runs = 50000, 1
    raw, plx, raw_cpu, plx_cpu, raw_tx, plx_tx, pauses, brk = [], [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.runs):
            rate, got, cpu, tx = run_raw(a.messages, a.size)
            raw.append(rate)
            raw_cpu.append(cpu)
            raw_tx.append(tx)
            rate, got, cpu, tx, paused, broker_cpu = run_plexus(
                a.broker, a.messages, a.size, a.prefetch, a.instances, a.traced, tmp)
            pauses.append(paused)
            brk.append(broker_cpu)
            if got != a.messages:  # a benchmark of lost messages is void
                raise SystemExit(f"python bench: the function got {got} of {a.messages} messages")
            plx.append(rate)
            plx_cpu.append(cpu)
            plx_tx.append(tx)
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    print(f"python bench: git {git}, {sys.version.split()[0]}, pyzmq {zmq.__version__} "
          f"(libzmq {zmq.zmq_version()}), msgpack {'.'.join(map(str, msgpack.version))}, "
          f"{os.cpu_count()} cores")
    print(f"{a.messages} messages of {a.size} bytes, {a.runs} run(s), sender and receiver in "
          f"two processes, prefetch {a.prefetch}"
          f"{', each plexus message with its own traceparent' if a.traced else ''}\n")
    print(f"{'case':<44} {'median msg/s':>13} {'min':>10} {'max':>10} {'rx CPU us/msg':>14} "
          f"{'tx CPU us/msg':>14}")
    rows = [("raw pyzmq PUSH -> PULL", raw, raw_cpu, raw_tx),
            ("plexus publish -> broker -> function (ack)", plx, plx_cpu, plx_tx)]
    for name, v, cpu, tx in rows:
        print(f"{name:<44} {statistics.median(v):>13,.0f} {min(v):>10,.0f} {max(v):>10,.0f} "
              f"{statistics.median(cpu):>14.2f} {statistics.median(tx):>14.2f}")
    print(f"the broker's CPU per message (all its threads, the run's span): "
          f"{statistics.median(brk):.2f} us (median)")
    print(f"\nthe publisher was paused by flow control {statistics.median(pauses):.0f} times a "
          f"run (median; nothing was dropped)")
    ratio = statistics.median(plx) / statistics.median(raw)
    cpu_ratio = statistics.median(raw_cpu) / statistics.median(plx_cpu)
    print(f"\nplexus / raw pyzmq: {ratio:.0%} of the rate (target >= 50%); the receiver's "
          f"CPU per message: raw is {cpu_ratio:.0%} of plexus's")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores: other work shared "
              "the CPUs; rates vary accordingly")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"messages": a.messages, "size": a.size, "raw": raw, "plexus": plx,
                       "raw_rx_cpu_us": raw_cpu, "plexus_rx_cpu_us": plx_cpu,
                       "raw_tx_cpu_us": raw_tx, "plexus_tx_cpu_us": plx_tx,
                       "publisher_pauses": pauses, "broker_cpu_us": brk, "traced": a.traced,
                       "ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
