# SPDX-License-Identifier: Apache-2.0
"""Flow control (PROTOCOL.md "Flow control"): a fast Python publisher and a
slow Python function in a queue group whose queue is small. The broker
pauses the publisher instead of dropping what the group cannot hold."""
import asyncio
import time

import plexus
from conftest import async_wait_until

N = 1500
QUEUE = ["--group-queue-msgs", "200", "--pause-percent", "50", "--resume-percent", "25"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


async def slow_function(broker, name):
    node = plexus.Node(broker.endpoint, name=name, service="flow", argv=[], trace_sample=0.0)
    got = []

    @node.function("slow", on="flow.in", instances=1, prefetch=8)
    async def slow(order: dict, ctx):
        await asyncio.sleep(0.001)
        got.append(order["i"])

    await node.start()
    return node, got


async def publish_all(c, until=lambda: True, cap=4 * N):
    """N messages (more, up to `cap`, until `until()`: a loaded machine can
    pace the publisher to the function before the queue ever fills); the
    count and the time it took."""
    t0 = time.monotonic()
    i = 0
    while i < N or (not until() and i < cap):
        c.publish("flow.in", {"i": i})
        i += 1
        if i % 50 == 0:
            await c.flush(timeout=30)  # waits while the group is paused
    await c.flush(timeout=30)
    return i, time.monotonic() - t0


def test_a_paused_publisher_is_slowed_and_nothing_is_lost(start_broker):
    broker = start_broker("flow", extra=QUEUE)

    async def main():
        node, got = await slow_function(broker, "py-flow")
        # A window well under the headroom between the pause mark (100) and
        # the limit (200): what a PAUSE finds on its way still fits.
        pub = await plexus.Client(broker.endpoint, name="py-fast", publish_window=40).connect()
        n, took = await publish_all(pub, until=lambda: pub.stats["pauses"] > 0)
        assert pub.stats["pauses"] >= 1, dict(pub.stats)
        await async_wait_until(lambda: len(got) == n, 60, f"all {n} messages")
        assert pub.stats["resumes"] >= 1, dict(pub.stats)
        # Slowed: the publisher finished with the function, not long before it.
        assert took > 0.5, took
        await asyncio.sleep(0.2)
        assert got == list(range(n))  # none lost, none twice, in order
        assert pub.held == 0 and not pub.paused
        await pub.close()
        await node.stop()
    run(main())


def test_without_flow_control_the_group_drops_what_it_cannot_hold(start_broker):
    # The test above would fail without flow control: the same publisher,
    # not honouring PAUSE, loses messages to the full group queue.
    broker = start_broker("noflow", extra=QUEUE)

    async def main():
        node, got = await slow_function(broker, "py-noflow")
        pub = await plexus.Client(broker.endpoint, name="py-fast2",
                                  flow_control=False).connect()
        await publish_all(pub)
        assert pub.stats["pauses"] == 0
        await pub.ping()
        await async_wait_until(lambda: not node.pools[0].waiting and node.pools[0].busy == 0
                               and len(got) >= 200, 30, "the function to drain")
        await asyncio.sleep(0.5)
        assert len(got) < N, len(got)
        await pub.close()
        await node.stop()
    run(main())


def test_when_paused_drop_and_fail_say_so(start_broker):
    broker = start_broker("flow2", extra=QUEUE)

    async def main():
        node, got = await slow_function(broker, "py-flow2")
        drop = await plexus.Client(broker.endpoint, name="py-drop", when_paused="drop",
                                   publish_window=40).connect()
        n, _ = await publish_all(drop, until=lambda: drop.stats["paused_drops"] > 0)
        assert drop.stats["pauses"] >= 1
        assert drop.stats["paused_drops"] > 0
        await async_wait_until(lambda: len(got) == n - drop.stats["paused_drops"], 60,
                               "what was not dropped")
        await drop.close()
        fail = await plexus.Client(broker.endpoint, name="py-fail", when_paused="fail",
                                   publish_window=40).connect()
        refused = i = 0
        while i < N or (not refused and i < 4 * N):
            try:
                fail.publish("flow.in", {"i": i})
            except plexus.Overloaded as e:
                assert e.code == 103
                refused += 1
                await asyncio.sleep(0.01)
            i += 1
            if i % 50 == 0:
                await fail.flush(timeout=30)
        assert refused > 0 and fail.stats["pauses"] >= 1
        await fail.close()
        # "hold" keeps at most max_held while paused, then raises: bounded memory.
        capped = await plexus.Client(broker.endpoint, name="py-capped", publish_window=40,
                                     max_held=5).connect()
        refused = i = 0
        while not refused and i < 40 * N:
            try:
                capped.publish("flow.in", {"i": i})
            except plexus.Overloaded as e:
                assert e.code == 103 and "max_held" in str(e), str(e)
                refused += 1
            i += 1
            if i % 50 == 0:
                await asyncio.sleep(0)  # a turn of the loop: frames out, PAUSE in
        # (PUBs queued when the PAUSE came are held too, so held can be past 5.)
        held = capped.held
        assert refused == 1 and held >= 5, (i, dict(capped.stats))
        try:
            capped.publish("flow.in", {"i": i})
            assert False, "a PUB past max_held was taken"
        except plexus.Overloaded:
            pass
        assert capped.held == held  # it did not grow
        assert capped.stats["paused_failures"] == 2 and capped.stats["pauses"] >= 1
        await capped.close()
        await node.stop()
    run(main())


def test_a_confirmed_publish_refused_while_paused_goes_again_at_the_resume(start_broker):
    # A confirmed PUB that finds its group paused is answered 103; the client
    # sends it again at the RESUME, not after its backoff (here a minute,
    # longer than the test may take: only the RESUME can send it).
    broker = start_broker("flow3", extra=QUEUE)

    async def main():
        node = plexus.Node(broker.endpoint, name="py-slower", service="flow", argv=[],
                           trace_sample=0.0)
        got = []

        @node.function("slow", on="flow.in", instances=1, prefetch=8)
        async def slower(order: dict, ctx):
            await asyncio.sleep(0.01)  # 100 a second: a pause lasts about 0.5 s
            got.append(order["i"])

        await node.start()
        fast = await plexus.Client(broker.endpoint, name="py-filler",
                                   publish_window=40).connect()
        async def fill(n):
            for i in range(n):
                fast.publish("flow.in", {"i": i})
                if i % 50 == 49:
                    await fast.flush(timeout=30)  # waits while the group is paused
            await fast.flush(timeout=30)

        filling = asyncio.ensure_future(fill(300))  # past the pause mark (100)
        await async_wait_until(lambda: fast.paused, 30, "the group to pause the filler")
        late = await plexus.Client(broker.endpoint, name="py-late",
                                   retry_backoff=(60.0, 60.0)).connect()
        assert await asyncio.wait_for(late.publish_confirmed("flow.in", {"i": -1}), 30) == 0
        assert late.stats["overload_retries"] >= 1 and late.stats["resumes"] >= 1, \
            dict(late.stats)
        await filling
        await async_wait_until(lambda: len(got) >= 301, 60, "every message")
        assert sorted(got) == [-1] + list(range(300))
        await late.close()
        await fast.close()
        await node.stop()
    run(main())
