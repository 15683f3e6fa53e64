# SPDX-License-Identifier: Apache-2.0
"""plexus.Node against a real plexus-broker: handlers, credit as free
capacity, poison quarantine, traces, stats, graceful drain on SIGTERM."""
import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import plexus
from plexus import trace
from conftest import ROOT, async_wait_until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@dataclasses.dataclass
class Label:
    id: int
    customer: str = ""
    tracking: str = ""


def make_node(broker, **kw):
    kw.setdefault("service", "shipping")
    return plexus.Node(broker.endpoint, argv=[], **kw)


def test_handlers_get_dicts_or_dataclasses_and_answer_requests(broker):
    async def main():
        node = make_node(broker, name="py-typed")
        seen = []

        @node.function("as-dict", on="typed.dict")
        async def as_dict(value: dict, ctx):
            seen.append(("dict", value, ctx.topic, ctx.delivery))
            return {"got": value["id"]}

        @node.function("as-label", on="typed.label", instances=2)
        def as_label(label: Label, ctx):  # a plain function works too
            seen.append(("label", label))
            return dataclasses.replace(label, tracking=f"PX{label.id}")

        @node.function("as-bytes", on="typed.raw")
        async def as_bytes(raw: bytes, ctx):
            return raw[::-1]

        await node.start()
        c = await plexus.Client(broker.endpoint).connect()
        assert await c.publish_confirmed("typed.dict", {"id": 7}) == 0
        r = await c.request("typed.dict", {"id": 8}, timeout=5)
        assert r.data() == {"got": 8}
        r = await c.request("typed.label", {"id": 9, "customer": "ada", "extra": 1}, timeout=5)
        assert r.data() == {"id": 9, "customer": "ada", "tracking": "PX9"}
        r = await c.request("typed.raw", b"abc", timeout=5)
        assert r.payload == b"cba"
        assert ("dict", {"id": 7}, "typed.dict", 1) in seen
        assert ("label", Label(9, "ada")) in seen
        stats = {s["function"]: s for s in node.stats()}
        assert stats["as-dict"]["ok"] == 2 and stats["as-label"]["ok"] == 1
        await c.close()
        await node.stop()
    run(main())


def test_crashing_handler_quarantines_poison_and_keeps_serving(broker):
    async def main():
        node = make_node(broker, name="py-poison")
        done = []

        @node.function("validate", on="orders.in", instances=2, poison_after=3)
        async def validate(order: dict, ctx):
            if order.get("poison"):
                raise RuntimeError(f"parser crashed on order {order['id']}")
            done.append(order["id"])

        await node.start()
        c = await plexus.Client(broker.endpoint).connect()
        dlq, events = [], []
        await c.subscribe("$DLQ.>", dlq.append)
        await c.subscribe("$SYS.supervisor.>", lambda m: events.append(m.data()))
        futs = [c.publish_confirmed("orders.in", {"id": i, "poison": i == 5},
                                    msg_id=f"order-{i}", raise_on_error=False)
                for i in range(1, 11)]
        codes = await asyncio.gather(*futs)
        assert codes == [0, 0, 0, 0, 102, 0, 0, 0, 0, 0]  # the poison one: dead-lettered
        # It kept serving: everything else was handled, and more still is.
        assert sorted(done) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
        assert await c.publish_confirmed("orders.in", {"id": 11}) == 0
        await async_wait_until(lambda: dlq and events, 5, "the dead letter and the event")
        assert dlq[0].msg_id == b"order-5"
        assert dlq[0].headers["plexus-dlq-deliveries"] == "3"  # quarantined at poison_after,
        assert "crashed on 3 deliveries" in dlq[0].headers["plexus-dlq-reason"]  # not max_deliver
        assert events[0]["kind"] == "quarantine" and events[0]["function"] == "validate"
        assert "order-5" in events[0]["reason"]
        s = node.stats()[0]
        assert (s["ok"], s["crashes"], s["quarantined"]) == (10, 3, 1)
        await c.close()
        await node.stop()
    run(main())


@pytest.mark.parametrize("prefetch", [0, 3])
def test_credit_is_the_pools_free_capacity(broker, prefetch):
    async def main():
        node = make_node(broker, name=f"py-credit-{prefetch}")
        gate = asyncio.Event()
        running = []

        @node.function("slow", on="credit.x", instances=2, prefetch=prefetch)
        async def slow(v, ctx):
            running.append(v)
            await gate.wait()

        await node.start()
        pool = node.pools[0]
        c = await plexus.Client(broker.endpoint).connect()
        futs = [c.publish_confirmed("credit.x", i) for i in range(10)]
        await async_wait_until(lambda: len(running) == 2 and len(pool.waiting) == prefetch, 5,
                               "the pool to fill")
        await c.ping()
        await node.client.ping()  # whatever the broker sent has arrived
        # Two instances busy, `prefetch` waiting, nothing more: the broker
        # keeps the rest until the pool has room.
        assert len(running) == 2 and len(pool.waiting) == prefetch
        assert pool.sub.delivered == 2 + prefetch
        gate.set()
        assert await asyncio.gather(*futs) == [0] * 10
        assert sorted(running) == list(range(10))
        await c.close()
        await node.stop()
    run(main())


def test_trace_context_is_carried_through_and_spans_published(broker):
    async def main():
        node = make_node(broker, name="py-trace", trace_sample=0.0)
        ctxs = []

        @node.function("first", on="tr.a")
        async def first(v, ctx):
            ctxs.append((ctx.trace_id, ctx.span_id, ctx.traceparent))
            ctx.publish("tr.b", v)

        @node.function("second", on="tr.b")
        async def second(v, ctx):
            ctxs.append((ctx.trace_id, ctx.span_id, ctx.traceparent))
            if v == "fail":
                raise ValueError("second failed")

        await node.start()
        c = await plexus.Client(broker.endpoint).connect()
        spans = []
        await c.subscribe("$SYS.trace.py-trace", lambda m: spans.extend(trace.decode_spans(m.payload)))
        trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        c.publish("tr.a", "ok", traceparent=f"00-{trace_id}-{parent}-01")
        await async_wait_until(lambda: len(spans) >= 2, 5, "two sampled spans")
        (t1, s1, tp1), (t2, s2, tp2) = ctxs
        assert t1 == t2 == trace_id
        assert tp1 == f"00-{trace_id}-{parent}-01"
        assert tp2 == f"00-{trace_id}-{s1}-01"  # its parent: the first invocation
        by_name = {s.name: s for s in spans}
        assert by_name["shipping.first"].parent_id == int(parent, 16)
        assert by_name["shipping.second"].parent_id == int(s1, 16)
        assert by_name["shipping.second"].trace_id == trace_id
        assert all(s.status == trace.OK and s.node == "py-trace" for s in spans)
        # Unsampled (flag 00, sample 0): ok spans stay out, failed ones are kept.
        spans.clear()
        c.publish("tr.a", "ok", traceparent=f"00-{'1' * 32}-{parent}-00")
        c.publish("tr.a", "fail", traceparent=f"00-{'2' * 32}-{parent}-00")
        # The failing one crashes on each of its 3 deliveries (then quarantined).
        await async_wait_until(lambda: len(spans) == 3, 5, "the failed spans")
        await async_wait_until(lambda: len(ctxs) == 2 + 2 + 1 + 3, 5, "both chains")
        await asyncio.sleep(0.2)  # the time under test: no ok span comes
        assert [(s.trace_id, s.status_name, s.cause, s.delivery) for s in spans] == \
            [("2" * 32, "crash", "ValueError: second failed", d) for d in (1, 2, 3)]
        await c.close()
        await node.stop()
    run(main())


def test_request_spans_and_downstream_failures(broker, cli_bin):
    async def main():
        node = make_node(broker, name="py-req", trace_sample=1.0)

        @node.function("caller", on="req.caller")
        async def caller(v, ctx):
            r = await ctx.request("req.callee", v, timeout=2)
            return r.data()

        @node.function("callee", on="req.callee")
        async def callee(v, ctx):
            if v == "bad":
                raise KeyError("missing")
            return v * 2

        await node.start()
        c = await plexus.Client(broker.endpoint).connect()
        spans = []
        await c.subscribe("$SYS.trace.>", lambda m: spans.extend(trace.decode_spans(m.payload)))
        assert (await c.request("req.caller", 21, timeout=5)).data() == 42
        await async_wait_until(lambda: len(spans) >= 3, 5, "three spans")
        kinds = sorted((s.name, s.kind) for s in spans)
        assert kinds == [("shipping.callee", "invocation"), ("shipping.caller", "invocation"),
                         ("shipping.caller", "request")]
        req = next(s for s in spans if s.request)
        inv = next(s for s in spans if s.name == "shipping.callee")
        assert inv.parent_id == req.span_id and req.topic == "req.callee"
        # A callee that keeps crashing: the caller's span says downstream.
        spans.clear()
        with pytest.raises(plexus.RequestFailed) as e:
            await c.request("req.caller", "bad", timeout=10)
        assert e.value.source == "shipping.caller"
        await async_wait_until(lambda: any(s.status == trace.DOWNSTREAM and not s.request
                                           for s in spans), 5, "a downstream span")
        down = next(s for s in spans if s.status == trace.DOWNSTREAM and not s.request)
        assert down.callee == "shipping.callee" and "missing" in down.cause
        if os.access(cli_bin, os.X_OK):  # the C++ reader renders the Python spans, causes too
            p = await asyncio.create_subprocess_exec(
                cli_bin, "--broker", broker.endpoint, "trace", down.trace_id, "--wait", "500ms",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out, _ = await asyncio.wait_for(p.communicate(), 20)
            text = out.decode()
            assert p.returncode == 0, text
            assert text.startswith("downstream shipping.caller on req.caller"), text
            assert "crash shipping.callee on req.callee" in text and "missing" in text, text
        await c.close()
        await node.stop()
    run(main())


def test_plexus_top_lists_python_functions(broker, cli_bin):
    if not os.access(cli_bin, os.X_OK):
        pytest.skip(f"no plexus CLI at {cli_bin}")

    async def main():
        node = make_node(broker, name="py-top")

        @node.function("scorer", on="top.x", instances=3)
        async def scorer(v, ctx):
            return v

        await node.start()
        c = await plexus.Client(broker.endpoint).connect()
        for i in range(20):
            await c.publish_confirmed("top.x", i)
        p = await asyncio.create_subprocess_exec(cli_bin, "--broker", broker.endpoint, "top",
                                                 "--once", stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(p.communicate(), 20)
        text = out.decode()
        assert p.returncode == 0, text
        line = next((l for l in text.splitlines() if "scorer" in l), None)
        assert line is not None, text
        cols = line.split()  # FUNCTION NODES RATE/s P50 P99 OK ...
        assert cols[0] == "shipping.scorer" and cols[1] == "1" and cols[5] == "20", text
        await c.close()
        await node.stop()
    run(main())


NODE_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {pkg!r})
    import plexus
    node = plexus.Node(name="py-drain", service="drain")

    @node.function("slow", on="drain.x", instances=2, prefetch=2)
    async def slow(v, ctx):
        ctx.publish("drain.started", v)
        await asyncio.sleep(0.5)
        ctx.publish("drain.finished", v)

    node.run()
    print("drained", node.stats()[0]["ok"], flush=True)
""")


def test_sigterm_drains_gracefully(broker, tmp_path):
    script = tmp_path / "drain_node.py"
    script.write_text(NODE_SCRIPT.format(pkg=str(ROOT / "framework" / "python")))

    async def main():
        c = await plexus.Client(broker.endpoint).connect()
        started, finished, backup = [], [], []
        await c.subscribe("drain.started", lambda m: started.append(m.data()))
        await c.subscribe("drain.finished", lambda m: finished.append(m.data()))
        # Another member with no credit yet: where handed-back work goes.
        spare = await c.subscribe("drain.x", lambda m: (backup.append(m.data()), m.ack()),
                                  queue="drain.slow", ack=True, credit=0)
        up = []
        await c.subscribe("$SYS.node.py-drain.up", lambda m: up.append(m.data()))
        proc = subprocess.Popen([sys.executable, str(script), "--broker", broker.endpoint],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # $SYS.node.<id>.up goes out behind its SUBs: then it is a member.
        await async_wait_until(lambda: up or proc.poll() is not None, 15, "the node to be up")
        assert up == [["drain.slow"]]
        futs = [c.publish_confirmed("drain.x", i) for i in range(8)]
        await async_wait_until(lambda: len(started) == 2, 10, "two handlers running")
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None)
        text = out.decode()
        assert proc.returncode == 0, text
        # What ran was finished and acked before it left, nothing else started.
        assert sorted(finished) == sorted(started) and len(started) == 2, text
        assert "drained 2" in text
        spare.grant(100)  # the rest went back to the group: the spare takes it
        assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [0] * 8
        assert sorted(backup + started) == list(range(8))
        await c.close()

    run(main())


def test_handler_publishes_confirmed_under_ids_derived_from_its_input(broker):
    async def main():
        node = make_node(broker, name="py-derive")
        outcomes = []

        @node.function("relay", on="derive.in")
        async def relay(v, ctx):
            outcomes.append(await ctx.publish("derive.out", v, confirmed=True))
            ctx.publish("derive.out", v + 1)

        await node.start()
        c = await plexus.Client(broker.endpoint).connect()
        out = []
        await c.subscribe("derive.out", out.append)
        assert await c.publish_confirmed("derive.in", 1, msg_id=b"order-1") == 0
        await async_wait_until(lambda: len(out) == 2, 5, "both publishes")
        assert outcomes == [0]  # the handler waited for its confirm
        assert [m.msg_id for m in out] == [b"order-1/relay#1", b"order-1/relay#2"]
        assert [m.data() for m in out] == [1, 2]
        await c.close()
        await node.stop()
    run(main())
