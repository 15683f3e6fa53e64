# SPDX-License-Identifier: Apache-2.0
"""kill -9 of a broker in a 2-broker cluster during a Python publisher's
confirmed stream: the publisher fails over to the broker its WELCOME
advertised, re-sends what was unconfirmed under the same msg ids, and not
one message it had confirmed (code 0) is missing at the consumer."""
import asyncio
import time

import plexus
from conftest import async_wait_until

TOTAL = 3000
WINDOW = 200
KILL_AFTER = 600


def test_kill_9_of_the_publishers_broker_loses_no_confirmed_message(start_broker):
    b1 = start_broker("b1")
    b2 = start_broker("b2", peers=[b1.endpoint])

    async def main():
        # The consumer: an at-least-once queue group member on b2.
        consumer = await plexus.Client(b2.endpoint, name="py-consumer").connect()
        received = set()

        def take(m):
            received.add(m.data())
            m.ack()
        await consumer.subscribe("fo.orders", take, queue="fo", ack=True, credit=512)

        # Linked: b1 forwards to b2's member (a probe confirmed 0 from b1).
        probe = await plexus.Client(b1.endpoint, name="py-probe").connect()

        async def linked():
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if await probe.publish_confirmed("fo.orders", -1, raise_on_error=False) == 0:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("b1 never forwarded to b2")
        await linked()
        await probe.close()

        pub = await plexus.Client(b1.endpoint, name="py-publisher").connect()
        assert b2.endpoint in pub.endpoints  # WELCOME advertised the cluster
        confirmed, other = set(), {}
        confirmed_after_kill = 0
        killed = asyncio.Event()
        window = asyncio.Semaphore(WINDOW)

        async def one(n):
            nonlocal confirmed_after_kill
            try:
                attempt = 0
                while True:
                    code = await pub.publish_confirmed("fo.orders", n, raise_on_error=False,
                                                       msg_id=f"order-{n}-{attempt}")
                    if code == 0:
                        confirmed.add(n)
                        confirmed_after_kill += killed.is_set()
                        return
                    # Another outcome (110 peer lost, 101 while the link
                    # forms): the application publishes again, a new id.
                    other[n] = code
                    attempt += 1
                    await asyncio.sleep(0.05)
            finally:
                window.release()

        tasks = []
        for n in range(TOTAL):
            await window.acquire()
            tasks.append(asyncio.ensure_future(one(n)))
            if n == KILL_AFTER:
                await async_wait_until(lambda: len(confirmed) >= KILL_AFTER // 2, 20,
                                       "half the first messages confirmed")
                b1.kill()  # SIGKILL, mid-stream, with confirms outstanding
                killed.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

        print(f"confirmed {len(confirmed)}, after the kill {confirmed_after_kill}, "
              f"resent {pub.stats['resent']}, other outcomes {sorted(set(other.values()))}")
        assert pub.endpoint == b2.endpoint
        assert pub.stats["sessions"] == 2 and pub.stats["resent"] > 0
        assert confirmed_after_kill > 0
        lost = confirmed - received
        assert not lost, f"{len(lost)} confirmed messages lost: {sorted(lost)[:20]}"
        assert confirmed == set(range(TOTAL))
        await pub.close()
        await consumer.close()

    asyncio.run(asyncio.wait_for(main(), 100))
