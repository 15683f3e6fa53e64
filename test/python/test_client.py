# SPDX-License-Identifier: Apache-2.0
"""plexus.Client against a real plexus-broker: every client operation."""
import asyncio
import time

import msgpack
import pytest

import plexus
from plexus import wire
from conftest import async_wait_until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def connect(broker, **kw):
    return await plexus.Client(broker.endpoint, **kw).connect()


def test_connect_says_hello_and_learns_the_broker(broker):
    async def main():
        c = await connect(broker, name="py-hello")
        assert c.connected
        assert c.broker == "b1"
        assert c.heartbeat == 1.0
        assert c.max_payload == 1048576
        assert broker.endpoint in c.endpoints
        await c.close()
        assert not c.connected
    run(main())


def test_connect_to_nothing_fails_with_a_deadline():
    async def main():
        c = plexus.Client("tcp://127.0.0.1:1", hello_timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(ConnectionError):
            await c.connect(timeout=1.0)
        assert time.monotonic() - t0 < 3
    run(main())


def test_patterns_fan_out_to_every_matching_subscription(broker):
    async def main():
        c = await connect(broker)
        one, tail, exact = [], [], []
        await c.subscribe("orders.*.shipped", lambda m: one.append(m.topic))
        await c.subscribe("orders.>", lambda m: tail.append(m.topic))
        await c.subscribe("orders.eu", lambda m: exact.append(m.data()))
        c.publish("orders.eu.shipped", b"1")
        c.publish("orders.eu", {"n": 2})
        c.publish("orders.eu.de.shipped", b"3")
        c.publish("orders", b"4")  # matches none of them
        await async_wait_until(lambda: len(tail) == 3, 5, "orders.> to get 3")
        await c.ping()
        assert one == ["orders.eu.shipped"]
        assert tail == ["orders.eu.shipped", "orders.eu", "orders.eu.de.shipped"]
        assert exact == [{"n": 2}]
        with pytest.raises(ValueError):
            await c.subscribe("ord*.x", lambda m: None)
        await c.close()
    run(main())


def test_subscription_without_callback_is_iterated_and_unsubscribe_stops_it(broker):
    async def main():
        c = await connect(broker)
        sub = await c.subscribe("it.x")
        c.publish("it.x", {"a": 1}, headers={"k": "v"})
        m = await sub.next_msg(timeout=5)
        assert m.data() == {"a": 1}
        assert m.headers == {"k": "v"}
        c.publish("it.x", {"a": 2})
        c.publish("it.x", {"a": 3})
        seen = []
        async for m in sub:
            seen.append(m.data()["a"])
            if len(seen) == 2:
                await sub.unsubscribe()
        assert seen == [2, 3]  # the iteration ended with the subscription
        with pytest.raises(plexus.NoInterest):
            await c.publish_confirmed("it.x", b"x")
        await c.close()
    run(main())


def test_batches_carry_many_publishes_in_order(broker):
    async def main():
        pub = await connect(broker)
        sub = await connect(broker)
        got = []
        await sub.subscribe("bulk.x", lambda m: got.append(m.data()))
        for i in range(5000):
            pub.publish("bulk.x", i)
        await pub.flush()
        assert pub.stats["batches_sent"] >= 1
        await async_wait_until(lambda: len(got) == 5000, 10, "5000 messages")
        assert got == list(range(5000))
        await pub.close()
        await sub.close()
    run(main())


def test_publish_confirmed_returns_ok_or_raises_the_status(broker):
    async def main():
        c = await connect(broker)
        await c.subscribe("conf.x", lambda m: None)
        assert await c.publish_confirmed("conf.x", b"a") == 0
        with pytest.raises(plexus.NoInterest) as e:
            await c.publish_confirmed("conf.nobody", b"a")
        assert e.value.code == 101
        assert await c.publish_confirmed("conf.nobody", b"a", raise_on_error=False) == 101
        with pytest.raises(plexus.Forbidden) as e:  # ERR 105 is the outcome
            await c.publish_confirmed("$SYS.broker.x", b"a")
        assert e.value.code == 105
        # The same msg id twice: one CONFIRM settles both.
        a = c.publish_confirmed("conf.x", b"1", msg_id=b"same-id")
        b = c.publish_confirmed("conf.x", b"1", msg_id=b"same-id")
        assert await asyncio.gather(a, b) == [0, 0]
        assert c.unconfirmed == 0
        await c.close()
    run(main())


def test_confirm_waits_for_the_ack_of_an_at_least_once_consumer(broker):
    async def main():
        c = await connect(broker)
        held = []
        await c.subscribe("late.x", held.append, queue="g", ack=True, credit=5)
        fut = c.publish_confirmed("late.x", b"x")
        await async_wait_until(lambda: held, 5, "the delivery")
        await c.ping()
        assert not fut.done()  # end to end: not before the ACK
        held[0].ack()
        assert await fut == 0
        await c.close()
    run(main())


def test_queue_group_delivers_only_against_credit(broker):
    async def main():
        c = await connect(broker)
        got = []
        sub = await c.subscribe("work.x", got.append, queue="workers", ack=True, credit=3,
                                auto_credit=False)
        futs = [c.publish_confirmed("work.x", {"n": i}) for i in range(10)]
        await async_wait_until(lambda: len(got) == 3, 5, "three deliveries")
        await c.ping()
        assert len(got) == 3  # no credit left: the rest waits in the group
        sub.grant(2)
        await async_wait_until(lambda: len(got) == 5, 5, "two more")
        await c.ping()
        assert len(got) == 5
        sub.grant(100)
        await async_wait_until(lambda: len(got) == 10, 5, "the rest")
        for m in got:
            m.ack()
        assert await asyncio.gather(*futs) == [0] * 10
        assert sorted(m.data()["n"] for m in got) == list(range(10))
        await c.close()
    run(main())


def test_queue_group_spreads_over_members(broker):
    async def main():
        c1, c2 = await connect(broker), await connect(broker)
        a, b = [], []
        def take(into):
            def cb(m):
                into.append(m.data())
                m.ack()
            return cb
        await c1.subscribe("spread.x", take(a), queue="g", ack=True, credit=4)
        await c2.subscribe("spread.x", take(b), queue="g", ack=True, credit=4)
        pub = await connect(broker)
        assert await asyncio.gather(*[pub.publish_confirmed("spread.x", i) for i in range(100)]) \
            == [0] * 100
        assert sorted(a + b) == list(range(100))  # each once
        assert a and b
        for c in (c1, c2, pub):
            await c.close()
    run(main())


def test_nack_redelivers_delays_and_dead_letters(broker):
    async def main():
        c = await connect(broker)
        dlq = []
        await c.subscribe("$DLQ.>", dlq.append)
        got = []
        await c.subscribe("nack.x", got.append, queue="g", ack=True, credit=10, max_deliver=5)
        fut = c.publish_confirmed("nack.x", b"p", msg_id=b"nack-1")
        await async_wait_until(lambda: len(got) == 1, 5, "the first delivery")
        got[0].nack()  # at once
        await async_wait_until(lambda: len(got) == 2, 5, "the redelivery")
        assert got[1].delivery == 2 and got[1].msg_id == b"nack-1"
        t0 = time.monotonic()
        got[1].nack(delay=0.3)
        await async_wait_until(lambda: len(got) == 3, 5, "the delayed redelivery")
        assert time.monotonic() - t0 >= 0.25
        got[2].nack(dead_letter=True, reason="no good")
        with pytest.raises(plexus.DeadLettered):
            await fut
        await async_wait_until(lambda: dlq, 5, "the dead letter")
        assert dlq[0].topic == "$DLQ.nack.x"
        assert dlq[0].headers["plexus-dlq-reason"] == "no good"
        assert dlq[0].payload == b"p"
        await c.close()
    run(main())


def test_request_reply_no_responders_timeout_and_failure(broker):
    async def main():
        server = await connect(broker)
        c = await connect(broker)

        def echo(m):
            m.respond({"echo": m.data(), "deadline_set": m.deadline > time.time_ns()})
        await server.subscribe("svc.echo", echo)
        await server.subscribe("svc.silent", lambda m: None)
        await server.subscribe("svc.failing", lambda m: server.publish(m.reply_to, b"", headers={
            wire.FAILURE_HEADER: "crash", wire.FAILURE_FROM_HEADER: "svc.failing",
            wire.FAILURE_CAUSE_HEADER: "boom"}))
        r = await c.request("svc.echo", [1, 2], timeout=2)
        assert r.data() == {"echo": [1, 2], "deadline_set": True}
        with pytest.raises(plexus.NoResponders) as e:
            await c.request("svc.nobody", b"", timeout=2)
        assert e.value.code == 100
        t0 = time.monotonic()
        with pytest.raises(plexus.RequestTimeout) as e:
            await c.request("svc.silent", b"", timeout=0.3)
        assert e.value.code == 900 and time.monotonic() - t0 < 2
        with pytest.raises(plexus.RequestFailed) as e:
            await c.request("svc.failing", b"", timeout=2)
        assert (e.value.code, e.value.how, e.value.source, e.value.text) == \
            (903, "crash", "svc.failing", "boom")
        await c.close()
        await server.close()
    run(main())


def test_idle_client_stays_alive_on_heartbeats(start_broker):
    b = start_broker("hb", extra=["--heartbeat-ms", "100"])

    async def main():
        c = await plexus.Client(b.endpoint).connect()
        got = []
        await c.subscribe("hb.x", got.append)
        assert c.heartbeat == 0.1
        await asyncio.sleep(1.0)  # the time under test: ten heartbeats of silence
        assert c.stats["sessions"] == 1 and c.connected
        pub = await plexus.Client(b.endpoint).connect()
        pub.publish("hb.x", b"still here")
        await async_wait_until(lambda: got, 5, "a message after the idle time")
        await c.close()
        await pub.close()
    run(main())


def test_broker_restart_resumes_the_session_and_resends_unconfirmed(start_broker):
    b = start_broker("r1")

    async def main():
        c = await plexus.Client(b.endpoint).connect()
        got = []
        await c.subscribe("re.x", lambda m: (got.append(m.data()), m.ack()), queue="g",
                          ack=True, credit=10)
        assert await c.publish_confirmed("re.x", 1) == 0
        b.kill()
        fut = c.publish_confirmed("re.x", 2)  # kept while there is no broker
        await async_wait_until(lambda: not c.connected, 5, "the client to see the loss")
        b2 = start_broker("r2")  # where it fails over to
        c.endpoints.append(b2.endpoint)
        assert await asyncio.wait_for(fut, 20) == 0
        assert got == [1, 2]  # the subscription was restored there
        assert c.stats["sessions"] == 2 and c.stats["resent"] >= 1
        assert c.endpoint == b2.endpoint
        await c.close()
    run(main())


def test_broker_restart_on_the_same_endpoint_resumes(start_broker):
    b = start_broker("same")

    async def main():
        c = await plexus.Client(b.endpoint).connect()  # the only endpoint it knows
        got = []
        await c.subscribe("same.x", lambda m: got.append(m.data()))
        b.kill()
        await async_wait_until(lambda: not c.connected, 5, "the client to see the loss")
        start_broker("same", port=b.port)  # back, empty, on the same port
        await c.wait_connected(15)
        assert c.stats["sessions"] == 2
        assert await c.publish_confirmed("same.x", 1) == 0  # its SUB was restored
        assert got == [1]
        await c.close()
    run(main())


# ---------------------------------------------------------------- MSG runs

def _run_frame(sid, topic, first_seq, payloads, extra=None):
    h = {wire.H_VERSION: 1, wire.H_OP: wire.MSG_RUN, wire.H_SID: sid, wire.H_TOPIC: topic,
         wire.H_SEQ: first_seq, wire.H_DELIVERY: 1, wire.H_COUNT: len(payloads), **(extra or {})}
    return msgpack.packb([h, payloads], use_bin_type=True)


def test_a_msg_run_decodes_as_the_msgs_it_stands_for():
    run = wire.decode([_run_frame(4, "jobs.a", 7, [b"x", b"y", b"z"])])
    assert type(run) is wire.MsgRun and (run.sid, run.first, len(run)) == (4, 7, 3)
    msgs = list(run)
    assert [h[wire.H_SEQ] for h, _ in msgs] == [7, 8, 9]
    assert [p for _, p in msgs] == [b"x", b"y", b"z"]
    assert all(h[wire.H_OP] == wire.MSG and wire.H_COUNT not in h for h, _ in msgs)
    # Without seqs (at most once), every message's is absent, as a MSG's.
    assert all(wire.H_SEQ not in h for h, _ in wire.decode([_run_frame(4, "t", 0, [b"a", b"b"])]))
    # In a batch with other entries, it is expanded in place.
    confirm = {wire.H_VERSION: 1, wire.H_OP: wire.CONFIRM, wire.H_MSG_ID: b"id"}
    h = msgpack.unpackb(_run_frame(4, "jobs.a", 1, [b"x", b"y"]), strict_map_key=False)[0]
    mixed = wire.decode([msgpack.packb([h, [b"x", b"y"], confirm, None], use_bin_type=True)])
    assert [(e[0][wire.H_OP], e[1]) for e in mixed] == [(wire.MSG, b"x"), (wire.MSG, b"y"),
                                                         (wire.CONFIRM, None)]


@pytest.mark.parametrize("frame, why", [
    (_run_frame(4, "t", 1, [b"x", b"y"], {wire.H_COUNT: 3}), "count 3 has 2"),
    (_run_frame(4, "t", 1, [b"x", "text"]), "payloads are bin"),
    (msgpack.packb([{0: 1, 1: wire.MSG_RUN, 2: 4, 3: "t", 25: 1}, b"x"]), "array of bin"),
    (msgpack.packb([{0: 1, 1: wire.MSG_RUN, 3: "t", 25: 1}, [b"x"]]), "needs sid"),
])
def test_a_malformed_msg_run_is_refused_whole(frame, why):
    with pytest.raises(wire.ProtocolError, match=why):
        wire.decode([frame])


def _msg_batch():
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    heads = [{wire.H_VERSION: 1, wire.H_OP: wire.MSG, wire.H_SID: 4, wire.H_TOPIC: "jobs.a",
              wire.H_MSG_ID: bytes([i]) * 16, wire.H_TRACEPARENT: tp, wire.H_REPLY_TO: "r.x",
              wire.H_SEQ: 7 + i, wire.H_DELIVERY: 1} for i in range(2)]
    return msgpack.packb([heads[0], b"x" * 20, heads[1], b"y"], use_bin_type=True)


@pytest.mark.parametrize("frame", [_run_frame(4, "jobs.a", 7, [b"x" * 20, b"y", b""]),
                                   _msg_batch()], ids=["run", "msgs"])
def test_every_cut_and_every_flipped_byte_decodes_or_is_a_protocol_error(frame):
    # What decodes has the types the client computes with: nothing it
    # reads can raise anything but ProtocolError later.
    for cut in range(len(frame)):
        with pytest.raises(wire.ProtocolError):
            wire.decode([frame[:cut]])
    typed = {wire.H_SID: int, wire.H_TOPIC: str, wire.H_SEQ: int, wire.H_DELIVERY: int,
             wire.H_MSG_ID: bytes, wire.H_TRACEPARENT: str, wire.H_REPLY_TO: str}
    for i in range(len(frame)):
        for byte in (0x00, 0x7F, 0x80, 0x91, 0xA1, 0xC0, 0xC2, 0xC4, 0xDD, 0xFF,
                     frame[i] ^ 0x01):
            bad = frame[:i] + bytes((byte,)) + frame[i + 1:]
            try:
                decoded = list(wire.decode([bad]))
            except wire.ProtocolError:
                continue
            for h, payload in decoded:
                assert type(h[wire.H_OP]) is int
                if h[wire.H_OP] == wire.MSG:
                    assert type(payload) is bytes
                    for key, want in typed.items():
                        assert key not in h or type(h[key]) is want, (i, byte, h)


def test_a_msg_run_outside_a_batch_is_refused():
    h = msgpack.packb({0: 1, 1: wire.MSG_RUN, 2: 4, 3: "t", 25: 1})
    with pytest.raises(wire.ProtocolError, match="outside a batch"):
        wire.decode([h, b"x"])


def test_msg_runs_carry_what_single_msgs_carry_and_settle_by_seq(broker):
    async def main():
        pub = await connect(broker)
        runs = await connect(broker, msg_runs=True)
        plain = await connect(broker, msg_runs=False)
        got_runs, got_plain = [], []
        await runs.subscribe("run.x", got_runs.append, ack=True)
        await plain.subscribe("run.x", got_plain.append, ack=True)
        for i in range(500):
            pub.publish("run.x", {"n": i})
        last = pub.publish_confirmed("run.x", {"n": 500})  # 0 once both ACK it
        await async_wait_until(lambda: len(got_runs) == len(got_plain) == 501, 10, "501 each")
        assert runs.stats["msg_run_frames"] > 0 and plain.stats["msg_run_frames"] == 0
        # The same messages with the same seqs (each connection numbers its own).
        assert [m.data()["n"] for m in got_runs] == list(range(501))
        assert [(m.seq, m.topic, m.payload) for m in got_runs] == \
               [(m.seq, m.topic, m.payload) for m in got_plain]
        assert [m.seq for m in got_runs] == list(range(1, 502))
        # A NACK inside a run gives back that message and no other.
        got_runs[100].nack()
        for m in got_runs[:100] + got_runs[101:] + got_plain:
            m.ack()
        assert await last == 0
        await async_wait_until(lambda: len(got_runs) == 502, 5, "the redelivery")
        again = got_runs[501]
        assert (again.data(), again.delivery) == ({"n": 100}, 2)
        again.ack()
        await runs.ping()
        assert len(got_runs) == 502
        for c in (pub, runs, plain):
            await c.close()
    run(main())
