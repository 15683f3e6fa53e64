# SPDX-License-Identifier: Apache-2.0
"""A receive-only subscriber, written from PROTOCOL.md alone, stays connected.

It sends HELLO and SUB, then only answers PINGs with PONG, while a publisher
sends steady traffic to its topic; it must get every message, exactly once,
in order, never a BYE or an ERR, and still be subscribed afterwards.
usage: spec_client_test.py --broker PATH [--duration S]
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

try:
    import msgpack
    import zmq
    import spec_client as sc
except ImportError as e:
    print(f"FAIL: {e} under {sys.executable}; Debian: python3-zmq python3-msgpack "
          "(scripts/install-deps.sh)")
    print("0 passed, 1 failed")
    sys.exit(1)

TOPIC = "spec.client.steady"
RATE = 500  # messages per second
TICK = 0.01  # seconds between the publisher's sends
PER_TICK = round(RATE * TICK)
SILENCE = 5.0  # seconds without a message, mid-run, that mean it is lost


class Deadline(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(ctx, endpoint, broker, timeout=10.0):
    """Retry the handshake until a WELCOME comes: that is readiness."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            raise RuntimeError(f"broker exited with {broker.returncode} before it was ready")
        probe = sc.Client(ctx, endpoint, "spec-probe")
        try:
            probe.hello(0.2)
            return
        except TimeoutError:
            pass
        finally:
            probe.close()
    raise RuntimeError(f"no WELCOME from {endpoint} within {timeout} s")


def run(ctx, endpoint, duration):
    failures = []
    sub = sc.Client(ctx, endpoint, "spec-sub")
    pub = sc.Client(ctx, endpoint, "spec-pub")
    sub.hello(5.0)
    pub.hello(5.0)
    sub.sub(1, TOPIC)
    t0 = time.monotonic()
    state = {"expected": 0, "got": 0, "final": False, "last_at": None}

    def at():  # seconds since the SUB
        return f"at t={time.monotonic() - t0:.2f} s"

    def drain(client, who, timeout):
        for env in client.recv(timeout):
            if env.op != sc.MSG or who == "publisher":
                failures.append(f"{who} got {sc.describe(env)} {at()}")
                continue
            kind, n = msgpack.unpackb(env.payload)
            state["last_at"] = time.monotonic() - t0
            if kind == "f":
                state["final"] = True
            elif kind == "s":
                state["got"] += 1
                if n != state["expected"]:
                    what = "gap" if n > state["expected"] else "duplicate or reorder"
                    failures.append(f"{what}: expected seq {state['expected']}, got {n} {at()}")
                state["expected"] = max(state["expected"], n + 1)
            elif kind != "w":
                failures.append(f"unexpected payload {env.payload!r}")

    # No op acknowledges a SUB, so publish markers until one arrives: from then
    # on the subscription is in place and the steady run cannot lose its head.
    warm_until = time.monotonic() + 10.0
    while state["last_at"] is None and not failures:
        if time.monotonic() > warm_until:
            raise RuntimeError("the subscription never delivered a warm-up message")
        pub.pub(TOPIC, msgpack.packb(["w", 0]))
        drain(sub, "subscriber", 0.05)
        drain(pub, "publisher", 0)

    # Steady traffic paced by wall clock: PER_TICK messages every TICK.
    total = int(duration * RATE)
    start = time.monotonic()
    sent = 0
    while sent < total and not failures:
        tick = int((time.monotonic() - start) / TICK) + 1
        due = min(total, tick * PER_TICK)
        # What fell due since the last tick goes as one batch, as a plexus
        # client's queue would send it; the broker then batches MSGs too.
        while sent < due:
            chunk = [msgpack.packb(["s", n]) for n in range(sent, min(due, sent + 100))]
            if len(chunk) == 1:
                pub.pub(TOPIC, chunk[0])
            else:
                pub.pub_batch(TOPIC, chunk)
            sent += len(chunk)
        drain(pub, "publisher", 0)
        drain(sub, "subscriber", max(0.0, start + tick * TICK - time.monotonic()))
        if time.monotonic() - t0 - state["last_at"] > SILENCE:
            failures.append(f"the subscriber heard nothing for {SILENCE:g} s of steady "
                            f"traffic, last message at t={state['last_at']:.2f} s")
    traffic_end = time.monotonic() - t0

    # Afterwards the session must still work: a final message reaches it.
    if not failures:
        pub.pub(TOPIC, msgpack.packb(["f", 0]))
        until = time.monotonic() + 5.0
        while not state["final"] and time.monotonic() < until and not failures:
            drain(sub, "subscriber", 0.05)
            drain(pub, "publisher", 0)
        if not state["final"]:
            failures.append("the message published after the run never arrived")
    if state["got"] != sent:
        failures.append(f"received {state['got']} of the {sent} messages sent")

    pings = sub.pings
    last = f"{state['last_at']:.2f} s" if state["last_at"] is not None else "never"
    print(f"sent {sent} in {traffic_end:.1f} s; subscriber: last message at {last}, "
          f"{sub.batches} batch frames, {len(pings)} PINGs answered"
          + (f" (first at t={pings[0] - t0:.2f} s)" if pings else ""), flush=True)
    sub.close()
    pub.close()
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--duration", type=float,
                        default=float(os.environ.get("PLEXUS_SPEC_CLIENT_SECONDS", 60)))
    args = parser.parse_args()

    def on_alarm(*_):
        raise Deadline(f"hard deadline of {args.duration + 60:.0f} s passed")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.duration) + 60)

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = tempfile.TemporaryFile(mode="w+")
    broker = subprocess.Popen([args.broker, "--listen", endpoint, "--id", "spec-client"],
                              stdout=log, stderr=subprocess.STDOUT)
    ctx = zmq.Context()
    try:
        wait_ready(ctx, endpoint, broker)
        print(f"broker ready on {endpoint}; {args.duration:g} s at {RATE} msg/s", flush=True)
        failures = run(ctx, endpoint, args.duration)
        if broker.poll() is not None:
            failures.append(f"the broker exited with {broker.returncode} during the run")
    except Exception as e:
        failures = [f"{type(e).__name__}: {e}"]
    finally:
        broker.kill()
        broker.wait()
        signal.alarm(0)
        ctx.destroy(linger=0)

    for f in failures[:20]:
        print(f"FAIL: {f}")
    if failures:
        log.seek(0)
        print("broker log (tail):\n" + "".join(log.readlines()[-20:]), end="")
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
