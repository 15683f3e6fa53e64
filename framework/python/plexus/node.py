# SPDX-License-Identifier: Apache-2.0
"""Functions on asyncio, mirroring plexus::node (framework/include/plexus/node.hpp).

    node = plexus.Node()                       # --broker / PLEXUS_BROKER
    @node.function("send-confirmation", on="label.created", service="shipping", instances=4)
    async def confirm(label: dict, ctx): ...   # return -> ACK; raise -> NACK, poison after N
    node.run()

Each function is a pool (framework/src/runtime/pool_core.cpp): a queue-group
member with explicit acks whose credit is its free capacity (`instances`
running plus `prefetch` waiting; one credit back per finished message, in
batches of a quarter of the prefetch, at once when the pool runs dry); a
handler that raises NACKs its message for a retry, and a message that made it
raise on `poison_after` deliveries is quarantined (dead-lettered at once,
`$SYS.supervisor.quarantine...` announced) while the function keeps serving.
Spans go out on `$SYS.trace.<node>` in the C++ batch format; stats on
`$SYS.node.<node>.stats` each second (`plexus top`).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import functools
import inspect
import itertools
import operator
import os
import random
import signal
import sys
import time
import typing

import msgpack

from . import creds as creds_module
from . import errors, trace, wire
from .client import Client, Msg, Subscription, decode
from .errors import PlexusError, Reject, RequestFailed, Retry

_packb = msgpack.Packer(use_bin_type=True).pack


def _new_id() -> int:
    return random.getrandbits(64) or 1


class Context(Msg):
    """What a handler knows of its message (a Msg: topic, msg_id, delivery,
    headers, reply_to, deadline, traceparent, payload) and how it publishes,
    asks and answers with the trace context carried through. Each function
    has a subclass whose `_pool` is the function's pool."""

    __slots__ = ("_ids", "sampled", "_published", "_replied", "_request_failure")
    _pool = None
    # The per-function subclass sets _client, _sub and _session (the client
    # session the pool's messages now come from; a new session, a new
    # subclass) as class attributes: they shadow Msg's slots, stores less per
    # message. Apart from h, payload, seq and _settled (set here), the slots
    # are set on first use (__getattr__ gives their starting values).

    def __init__(self, h, payload, seq=None):
        self._settled = False
        self.h = h
        self.payload = payload
        # A MSG run's messages share its header: their seqs come apart.
        self.seq = h.get(_H_SEQ, 0) if seq is None else seq

    def __getattr__(self, name):
        # Only for a slot not set yet (and names that do not exist).
        if name == "sampled":
            # The incoming traceparent's flag, or a draw for a trace that
            # starts here; drawn once.
            tp = self.h.get(wire.H_TRACEPARENT)
            if tp and len(tp) == 55:
                sampled = tp[54] in "13579bdf"
            else:
                rate = self._pool.trace_sample
                sampled = rate > 0 and (rate >= 1.0 or random.random() < rate)
            self.sampled = sampled
            return sampled
        try:
            return _CONTEXT_DEFAULTS[name]
        except KeyError:
            raise AttributeError(f"'Context' object has no attribute {name!r}") from None

    @property
    def msg(self) -> Msg:
        """The message (the context is one)."""
        return self

    def ids(self):
        """(trace_hi, trace_lo, parent span, this span), made on first use."""
        ids = self._ids
        if ids is None:
            tp = trace.parse_traceparent(self.traceparent)
            if tp is not None:
                ids = self._ids = (tp[0], tp[1], tp[2], _new_id())
            else:
                ids = self._ids = (_new_id(), _new_id(), 0, _new_id())
        return ids

    trace_hi = property(lambda self: self.ids()[0])
    trace_lo = property(lambda self: self.ids()[1])
    parent = property(lambda self: self.ids()[2])
    span = property(lambda self: self.ids()[3])

    @property
    def deadline_ns(self) -> int:
        return self.deadline

    @property
    def trace_id(self) -> str:
        hi, lo, _, _ = self.ids()
        return f"{hi:016x}{lo:016x}"

    @property
    def span_id(self) -> str:
        return f"{self.ids()[3]:016x}"

    @property
    def function(self) -> str:
        return self._pool.name

    @property
    def node(self) -> "Node":
        return self._pool.node

    def outgoing_traceparent(self, span=None) -> str:
        hi, lo, _, own = self.ids()
        return trace.format_traceparent(hi, lo, span or own, self.sampled)

    def _derived_id(self) -> bytes:
        # As the C++ context: a publish's id derives from the input's, so a
        # redelivered message publishes under the same ids (the broker drops
        # the repeats it still remembers).
        self._published += 1
        mid = self.msg.msg_id
        if not mid:
            return os.urandom(16)
        if isinstance(mid, bytes):  # printable ids as they are, binary ones (random) in hex
            mid = mid.decode() if all(0x21 <= c <= 0x7E for c in mid) else mid.hex()
        out = f"{mid}/{self._pool.name}#{self._published}"
        if len(out) > 64:
            h = 1469598103934665603
            for ch in out.encode():
                h = ((h ^ ch) * 1099511628211) & ((1 << 64) - 1)
            out = f"{h:016x}#{self._published}"
        return out.encode()

    def publish(self, topic: str, data=b"", *, headers=None, confirmed=False):
        """Publishes with this invocation's trace context and a msg id derived
        from the input's. confirmed=True returns the confirm's awaitable."""
        c = self._pool.node.client
        tp = self.outgoing_traceparent()
        mid = self._derived_id()
        if confirmed:
            return c.publish_confirmed(topic, data, headers=headers, traceparent=tp, msg_id=mid)
        c.publish(topic, data, headers=headers, traceparent=tp, msg_id=mid)
        return None

    def reply(self, data, headers=None) -> None:
        """Answers the request this message is (no-op when it is none)."""
        if not self.msg.reply_to or self._replied:
            return
        self._replied = True
        self._pool.node.client.publish(self.msg.reply_to, data, headers=headers,
                                       traceparent=self.outgoing_traceparent())

    async def request(self, topic: str, data=b"", *, timeout=5.0, headers=None) -> Msg:
        """A request with a span of its own (a child of this invocation's)."""
        span = _new_id()
        start = time.time_ns()
        status, cause, callee = trace.OK, "", ""
        try:
            return await self._pool.node.client.request(
                topic, data, timeout=timeout, headers=headers,
                traceparent=self.outgoing_traceparent(span))
        except errors.NoResponders:
            status, cause = trace.NO_RESPONDERS, f"no responders for {topic}"
            self._request_failure = (status, cause, "")
            raise
        except errors.RequestTimeout as e:
            status, cause = trace.TIMEOUT, str(e.text or e)
            self._request_failure = (trace.DOWNSTREAM, f"request to {topic} timed out", "")
            raise
        except RequestFailed as e:
            status, cause, callee = trace.DOWNSTREAM, f"{e.how}: {e.text}", e.source
            self._request_failure = (trace.DOWNSTREAM, cause, callee)
            raise
        except errors.Overloaded as e:
            status, cause = trace.REJECTED, str(e)
            self._request_failure = (status, cause, "")
            raise
        finally:
            if self.sampled or status != trace.OK:
                self._pool.node._record(trace.Span(
                    self.trace_hi, self.trace_lo, span, self.span, self._pool.full_name, topic,
                    b"", 0, True, False, start, time.time_ns() - start, status, cause, callee))


_H_TRACEPARENT, _H_REPLY_TO, _H_SEQ = wire.H_TRACEPARENT, wire.H_REPLY_TO, wire.H_SEQ
_CONTEXT_DEFAULTS = {"_ids": None, "_published": 0, "_replied": False, "_request_failure": None}


def _payload_type(fn):
    """How a handler wants its payload: a dataclass, raw bytes, or decoded."""
    try:
        params = list(inspect.signature(fn).parameters.values())
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    if not params:
        return None
    ann = hints.get(params[0].name)
    if ann is bytes:
        return bytes
    if isinstance(ann, type) and dataclasses.is_dataclass(ann):
        return ann
    return None


class _Quantiles:
    """Handler durations, the last 4096: p50, p99, p999."""

    def __init__(self):
        self.ring = collections.deque(maxlen=4096)
        self.count = 0

    def add(self, ns):
        self.ring.append(ns)
        self.count += 1

    def add_gaps(self, stamps):
        """The gaps between consecutive `stamps` (ns), each a duration."""
        self.ring.extend(map(operator.sub, stamps[1:], stamps[:-1]))
        self.count += len(stamps) - 1

    def __len__(self):
        return self.count

    def get(self):
        if not self.ring:
            return 0, 0, 0
        s = sorted(self.ring)
        n = len(s)
        return s[n // 2], s[min(n - 1, n * 99 // 100)], s[min(n - 1, n * 999 // 1000)]


class _Pool:
    """One function: a queue-group member whose credit is its free capacity."""

    def __init__(self, node, name, service, pattern, queue, handler, instances, prefetch,
                 max_deliver, poison_after, ack_wait):
        wire.check_pattern(pattern)
        self.node = node
        self.name = name
        self.service = service
        self.full_name = f"{service}.{name}"
        self.pattern = pattern
        self.queue = queue or self.full_name
        self.handler = handler
        self.payload_type = _payload_type(handler)
        self.instances = max(1, instances)
        self.prefetch = prefetch
        self.capacity = self.instances + prefetch
        self.max_deliver = max_deliver
        self.poison_after = poison_after
        self.ack_wait = ack_wait
        self.is_async = inspect.iscoroutinefunction(handler)
        self.waiting = collections.deque()
        self.sleepers = collections.deque()
        self.busy = 0
        self.owed = 0
        self.credit_batch = max(1, prefetch // 4)
        self.stopping = False
        self.sub = None
        self.workers = []
        self.stats = collections.Counter()
        self.ok = 0  # the hot counter, apart
        self.trace_sample = node.trace_sample
        self.ctx_class = None  # set by subscription(), again on each new session
        self.durations = _Quantiles()
        self.idle_event = asyncio.Event()

    # ------------------------------------------------------------ broker side

    def subscription(self, client) -> Subscription:
        pool = self

        class PoolSubscription(Subscription):
            def _deliver_one(self, h, payload) -> None:  # straight into the pool
                self.delivered += 1
                self.held += 1
                pool._take(pool.ctx_class(h, payload))

            def take_many(self, heads, payloads) -> None:
                n = len(heads)
                self.delivered += n
                self.held += n
                pool._take_many(map(pool.ctx_class, heads, payloads), n)

            def take_run(self, h, payloads, first) -> None:
                n = len(payloads)
                self.delivered += n
                self.held += n
                seqs = range(first, first + n) if first else itertools.repeat(0, n)
                pool._take_many(map(pool.ctx_class, itertools.repeat(h, n), payloads, seqs), n)

        sub = PoolSubscription(client, client._new_sid(), self.pattern, self._take, self.queue,
                               True, self.capacity, self.ack_wait, self.max_deliver, False)
        sub.restore_credit = self._restore_credit
        sub.on_new_session = self._new_session
        self.sub = sub
        self._new_context_class()
        return sub

    def _new_context_class(self) -> None:
        client = self.sub._client
        self.ctx_class = type("Context", (Context,), {
            "__slots__": (), "_pool": self, "_client": client, "_sub": self.sub,
            "_session": client._session})

    def _restore_credit(self):
        # A new session: the broker forgot what it had sent; what runs now
        # still holds its instance (its finish gives that credit back).
        return 0 if self.stopping else max(0, self.capacity - self.busy)

    def _new_session(self):
        # What waited here belongs to the ended session: the broker sends it
        # again (to us or another member); running it now would only repeat it.
        self.stats["handed_back"] += len(self.waiting)
        self.waiting.clear()
        self.owed = 0
        self._new_context_class()

    def _take(self, msg: Msg) -> None:
        if self.stopping:
            msg.nack(reason="function stopping")
            self.stats["handed_back"] += 1
            return
        self.waiting.append(msg)
        if self.sleepers:
            fut = self.sleepers.popleft()
            if not fut.done():
                fut.set_result(None)

    def _take_many(self, contexts, n) -> None:
        """`n` contexts (an iterable), in order."""
        if self.stopping:
            for ctx in contexts:
                self._take(ctx)
            return
        self.waiting.extend(contexts)
        sleepers = self.sleepers
        woken = 0
        while sleepers and woken < n:  # an instance per message, as _take does
            fut = sleepers.popleft()
            if not fut.done():
                fut.set_result(None)
                woken += 1

    def _finished(self) -> None:
        if self.stopping:
            return
        self.owed += 1
        if self.owed >= self.credit_batch or (not self.waiting and self.busy == 0):
            n, self.owed = self.owed, 0
            self.sub.grant(n)

    # ------------------------------------------------------------ instances

    def start(self, loop) -> None:
        self.workers = [loop.create_task(self._worker()) for _ in range(self.instances)]

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        sync = not self.is_async
        while True:
            while not self.waiting:
                if self.stopping:
                    return
                fut = loop.create_future()
                self.sleepers.append(fut)
                await fut
            if sync:
                # A plain function runs without a coroutine per message, a
                # run of them at a time; the loop gets a turn between runs
                # (I/O, heartbeats, the other instances).
                pending = self._run_batch()
                if pending is not None:  # a handler returned an awaitable
                    self.busy += 1
                    try:
                        await pending
                    finally:
                        self.busy -= 1
                        self._finished()
                if self.busy == 0 and not self.waiting:
                    self.idle_event.set()
                    self._credit_if_dry()
                await asyncio.sleep(0)
                continue
            msg = self.waiting.popleft()
            self.busy += 1
            try:
                await self._run(msg)
            finally:
                self.busy -= 1
                self._finished()
                if self.busy == 0 and not self.waiting:
                    self.idle_event.set()

    def _run_batch(self):
        """Up to 256 waiting messages through a plain handler, in one go (the
        common case inlined: no reply, not sampled). What is counted per
        message is only what must be: its end time and its seq; durations,
        ACK runs of consecutive seqs, counters and credit are worked out
        once, after the run (nothing written in a run reaches the socket
        before it ends anyway). An awaitable when a handler returned one
        (the run stops there)."""
        waiting = self.waiting
        if self.stopping or not waiting:
            return None
        handler, pt = self.handler, self.payload_type
        # The payload as the handler takes it; what this cannot read (other
        # keys, not UTF-8; a dataclass's own errors) decode() says again.
        load = (msgpack.unpackb if pt is None else bytes if pt is bytes
                else functools.partial(decode, cls=pt))
        time_ns = time.time_ns
        draws = self.trace_sample > 0  # else only a traceparent can sample
        client = self.node.client
        # What waits came in this pool's current session (a new one clears
        # it): ACKs go out unless the client began another meanwhile.
        acking = self.ctx_class._session == client._session
        seqs = []  # of the messages this run settles, in order (increasing)
        settled = seqs.append
        stamps = [time_ns()]  # when the run began, then when each message ended
        stamp = stamps.append
        done = taken = min(len(waiting), 256)  # each finished one owes a credit
        try:
            # A sync handler cannot await: nothing stops the pool meanwhile.
            for i in range(taken):
                msg = waiting.popleft()
                h = msg.h
                try:
                    try:
                        value = load(msg.payload)
                    except (ValueError, UnicodeDecodeError):
                        value = decode(msg.payload, pt)
                    result = handler(value, msg)
                except Exception as e:
                    # Its own duration and span; the durations so far are
                    # kept, and the run's clock starts again.
                    self._settle_failure(msg, msg, e, stamps[-1])
                    self._keep_durations(stamps)
                    stamps = [time_ns()]
                    stamp = stamps.append
                    continue
                if result is not None and hasattr(result, "__await__"):
                    done = i
                    return self._finish_async(msg, msg, result, stamps[-1])
                if _H_REPLY_TO in h and h[_H_REPLY_TO] and not msg._replied:
                    msg.reply(result)
                if not msg._settled:  # (unless the handler did: ctx.ack()/nack())
                    msg._settled = True
                    settled(msg.seq)
                stamp(time_ns())
                # As Context.sampled decides: a traceparent's flag, inlined
                # (a traced stream asks for every message), else a draw.
                if _H_TRACEPARENT in h and len(tp := h[_H_TRACEPARENT]) == 55:
                    sampled = tp[54] in "13579bdf"
                else:
                    sampled = draws and msg.sampled
                if sampled:
                    self._span(msg, msg, stamps[-2], stamps[-1] - stamps[-2], trace.OK, "", "")
            return None
        finally:
            if seqs and acking:
                self._ack_seqs(client, seqs)
            self._keep_durations(stamps)
            if not self.stopping:
                self.owed += done
                if self.owed >= self.credit_batch:
                    self._grant()

    def _keep_durations(self, stamps) -> None:
        """The durations of a run's successes: the gaps between its stamps."""
        n = len(stamps) - 1
        if n > 0:
            self.durations.add_gaps(stamps)
            self.ok += n

    def _ack_seqs(self, client, seqs) -> None:
        """ACKs for increasing seqs: one run when they are consecutive (the
        usual case, seen from the ends), else a run per gap."""
        sub = self.sub
        session = self.ctx_class._session
        first, n = seqs[0], len(seqs)
        if seqs[-1] - first == n - 1:
            client._ack_run(sub, session, sub.sid, first, n)
            return
        run_first, run_n = first, 0
        for seq in seqs:
            if run_first + run_n == seq:
                run_n += 1
            else:
                client._ack_run(sub, session, sub.sid, run_first, run_n)
                run_first, run_n = seq, 1
        client._ack_run(sub, session, sub.sid, run_first, run_n)

    def _grant(self) -> None:
        n, self.owed = self.owed, 0
        if n:
            self.sub.grant(n)

    def _credit_if_dry(self) -> None:
        if self.owed and not self.stopping:
            self._grant()

    async def _finish_async(self, msg, ctx, awaitable, start):
        try:
            result = await awaitable
        except Exception as e:
            self._settle_failure(msg, ctx, e, start)
            return
        self._succeeded(msg, ctx, result, start)

    async def _run(self, msg: Msg) -> None:
        ctx = msg
        start = time.time_ns()
        try:
            pt = self.payload_type
            result = await self.handler(msg.payload if pt is bytes else decode(msg.payload, pt),
                                        ctx)
        except asyncio.CancelledError:
            msg.nack(reason="cancelled")
            raise
        except Exception as e:
            self._settle_failure(msg, ctx, e, start)
            return
        self._succeeded(msg, ctx, result, start)

    def _succeeded(self, msg, ctx, result, start) -> None:
        if not ctx._replied and msg.h.get(wire.H_REPLY_TO):
            ctx.reply(result)
        msg.ack()
        self.ok += 1
        took = time.time_ns() - start
        self.durations.add(took)
        if ctx.sampled:
            self._span(ctx, msg, start, took, trace.OK, "", "")

    def _span(self, ctx, msg, start, took, status, cause, callee) -> None:
        hi, lo, parent, span = ctx.ids()
        self.node._record(trace.Span(hi, lo, span, parent, self.full_name, msg.topic,
                                     msg.msg_id or b"", msg.delivery, False, False, start, took,
                                     status, cause, callee))

    def _settle_failure(self, msg, ctx, e, start) -> None:
        node = self.node
        callee = ""
        if isinstance(e, Retry):
            status, cause = trace.ERROR, str(e) or "retry"
            self.stats["errors"] += 1
            msg.nack(delay=e.delay, reason=cause)
        elif isinstance(e, Reject):
            status, cause = trace.DEAD_LETTERED, str(e) or "rejected"
            self.stats["rejected"] += 1
            msg.nack(dead_letter=True, reason=cause)
            self._fail_request(ctx, "rejected", cause)
        else:  # a crash: the message's fault after poison_after
            why = f"{type(e).__name__}: {e}"
            self.stats["crashes"] += 1
            if ctx._request_failure and isinstance(e, PlexusError):
                status, cause, callee = ctx._request_failure
            else:
                status, cause = trace.CRASH, why
            delivery = msg.delivery
            if delivery >= self.poison_after:
                self.stats["quarantined"] += 1
                text = f"crashed on {delivery} deliveries: {why}"
                msg.nack(dead_letter=True, reason=text)
                node._event("quarantine", self, (f"msg {_show_id(msg.msg_id)} " if msg.msg_id
                                                 else "") + text)
                self._fail_request(ctx, "crash", why)
            else:
                msg.nack(reason=f"crash: {why}")
        took = time.time_ns() - start
        self.durations.add(took)
        self._span(ctx, msg, start, took, status, cause, callee)  # failed spans always

    def _fail_request(self, ctx, how, cause) -> None:
        if ctx.msg.reply_to and not ctx._replied:
            ctx._replied = True
            self.node.client.publish(ctx.msg.reply_to, b"", headers={
                wire.FAILURE_HEADER: how, wire.FAILURE_FROM_HEADER: self.full_name,
                wire.FAILURE_CAUSE_HEADER: cause[:1024]})

    async def drain(self, timeout) -> None:
        """Stops taking work: credit withdrawn, what waits handed back, what
        runs finished (within `timeout`), acked, unsubscribed."""
        self.stopping = True
        if self.sub is not None and self.node.client.connected:
            self.sub.set_credit(0)
        while self.waiting:
            self.waiting.popleft().nack(reason="node stopping")
            self.stats["handed_back"] += 1
        for fut in self.sleepers:
            if not fut.done():
                fut.set_result(None)
        if self.busy:
            self.idle_event.clear()
            try:
                await asyncio.wait_for(self.idle_event.wait(), timeout)
            except asyncio.TimeoutError:
                self.stats["handed_back"] += self.busy
                for w in self.workers:
                    w.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        if self.sub is not None:
            await self.node.client.unsubscribe(self.sub)

    def snapshot(self) -> dict:
        p50, p99, p999 = self.durations.get()
        s = self.stats
        return {"service": self.service, "function": self.name, "ok": self.ok,
                "errors": s["errors"], "crashes": s["crashes"], "restarts": 0,
                "rejected": s["rejected"], "quarantined": s["quarantined"], "recycled": 0,
                "escalations": 0, "revivals": 0, "stopped": self.stopping,
                "instances": self.instances, "live": 0 if self.stopping else self.instances,
                "cold_starts": 0, "cold_start_ns_total": 0, "cold_start_ns_max": 0, "inits": 0,
                "init_ns_max": 0, "invocations": len(self.durations), "duration_p50_ns": p50,
                "duration_p99_ns": p99, "duration_p999_ns": p999, "in_flight": self.busy,
                "queue_depth": len(self.waiting),
                "credit": max(0, self.capacity - self.busy - len(self.waiting) - self.owed)
                if not self.stopping else 0,
                "handed_back": s["handed_back"]}


def _show_id(mid) -> str:
    if isinstance(mid, bytes):
        try:
            text = mid.decode()
            if text.isprintable():
                return text
        except UnicodeDecodeError:
            pass
        return mid.hex()
    return str(mid)


class Node:
    """A process of functions on one broker connection.

    `broker`: an endpoint (or comma-separated list); default from --broker,
    then $PLEXUS_BROKER, then tcp://127.0.0.1:7400. `service`: the default
    service of the functions declared here. `trace_sample`: the share of
    new traces whose successful spans are published (failed ones always are;
    an incoming traceparent's sampled flag decides for the traces it carries).
    """

    def __init__(self, broker=None, *, name=None, service="default", trace_sample=None,
                 drain_timeout=None, argv=None, creds=None):
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--broker")
        p.add_argument("--creds")
        p.add_argument("--node-id")
        p.add_argument("--trace-sample", type=float)
        p.add_argument("--drain-timeout", type=float)
        args, self.argv = p.parse_known_args(sys.argv[1:] if argv is None else argv)
        self.broker = (broker or args.broker or os.environ.get("PLEXUS_BROKER")
                       or "tcp://127.0.0.1:7400")
        # A credentials file for a broker with --auth (CurveZMQ), as a C++
        # node's: creds=, else --creds, else $PLEXUS_CREDS; read now, so a
        # bad file is an error before anything starts.
        self.creds = creds_module.resolve(creds or args.creds or os.environ.get("PLEXUS_CREDS"))
        self.sys_denied = False  # the broker's auth file denies this node's $SYS publishes
        self.name = name or args.node_id or f"py-{os.uname().nodename.split('.')[0]}-{os.getpid()}"
        self.service_name = service
        ts = trace_sample if trace_sample is not None else args.trace_sample
        self.trace_sample = 0.01 if ts is None else ts
        dt = drain_timeout if drain_timeout is not None else args.drain_timeout
        self.drain_timeout = 10.0 if dt is None else dt
        self.client = None
        self.pools = []
        self._spans_unsent = []
        self._spans_kept = collections.deque(maxlen=16384)
        self._tasks = []
        self._stop = None
        self._started = False
        self.spans_dropped = 0

    # ------------------------------------------------------------ declaring

    def function(self, name, *, on, queue=None, service=None, instances=1, prefetch=64,
                 max_deliver=5, poison_after=3, ack_wait=30.0):
        """Declares a function: a handler `(payload, ctx)` (sync or async) of
        the messages on pattern `on`, in queue group `queue` (default
        "<service>.<name>", as a C++ function). The payload is a dict (msgpack
        map), a dataclass when the first parameter is annotated with one, or
        bytes when annotated `bytes`."""
        def register(fn):
            if self._started:
                raise RuntimeError("declare functions before the node starts")
            self.pools.append(_Pool(self, name, service or self.service_name, on, queue, fn,
                                    instances, prefetch, max_deliver, poison_after, ack_wait))
            return fn
        return register

    # ------------------------------------------------------------ running

    async def start(self) -> None:
        """Connects, subscribes every function, announces `$SYS.node.<id>.up`."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.client = Client(self.broker, name=self.name, creds=self.creds)
        await self.client.connect()
        self._started = True
        for pool in self.pools:
            self.client.subscribe_nowait(pool.subscription(self.client))
            pool.start(loop)
        try:
            await self.client.subscribe("$SYS.trace-query", self._answer_query)
        except (errors.PermissionDenied, errors.Forbidden):
            pass  # a user without `$SYS.trace-query`: `plexus trace` does not see this node
        self._tasks = [loop.create_task(self._span_loop()), loop.create_task(self._stats_loop())]
        up = self.client.publish_confirmed(f"$SYS.node.{self.name}.up",
                                           [p.full_name for p in self.pools],
                                           raise_on_error=False)
        up.add_done_callback(self._up_confirmed)

    def _up_confirmed(self, fut) -> None:
        # Nobody need listen; but a user the broker may not let publish under
        # $SYS would spend its error budget on stats and spans (each ERR 114
        # does) and lose its session: then the node keeps them to itself.
        if not fut.cancelled() and fut.exception() is None and fut.result() in (
                errors.PERMISSION_DENIED, errors.FORBIDDEN):
            self.sys_denied = True

    async def stop(self) -> None:
        """Graceful drain: no new work, in-flight finished and acked, spans and
        stats out, BYE."""
        if not self._started:
            return
        self._started = False
        await asyncio.gather(*(p.drain(self.drain_timeout) for p in self.pools))
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._publish_spans()
        self._publish_stats()
        await self.client.close()

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def serve(self, duration=None) -> None:
        """start(), then run until SIGTERM/SIGINT (or `duration` s), then stop()."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            if duration:
                try:
                    await asyncio.wait_for(self._stop.wait(), duration)
                except asyncio.TimeoutError:
                    pass
            else:
                await self._stop.wait()
        finally:
            await self.stop()

    def run(self, duration=None) -> None:
        """Blocks: serve() on a new event loop."""
        asyncio.run(self.serve(duration))

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    def stats(self) -> list[dict]:
        """The functions' counters (the `$SYS.node.<id>.stats` maps)."""
        return [p.snapshot() for p in self.pools]

    # ------------------------------------------------------------ events, spans, stats

    def _event(self, kind, pool, reason) -> None:
        if self.sys_denied:
            return
        ev = {"kind": kind, "node": self.name, "service": pool.service, "function": pool.name,
              "reason": reason[:1024], "delay_ms": 0, "intensity": 0, "attempt": 0}
        self.client.publish(f"$SYS.supervisor.{kind}.{pool.service}.{pool.name}", ev)

    def _record(self, span) -> None:
        self._spans_kept.append(span)
        if len(self._spans_unsent) < 100000:
            self._spans_unsent.append(span)
        else:
            self.spans_dropped += 1

    def _publish_spans(self) -> None:
        if self.sys_denied:
            self._spans_unsent = []  # kept in _spans_kept for trace queries all the same
            return
        if not self._spans_unsent or self.client is None or not self.client.connected:
            return
        spans, self._spans_unsent = self._spans_unsent, []
        topic = f"$SYS.trace.{self.name}"
        for i in range(0, len(spans), 2000):  # well under 256 KiB a message
            self.client.publish(topic, trace.encode_span_batch(self.name, spans[i:i + 2000]))

    async def _span_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self._publish_spans()

    def _publish_stats(self) -> None:
        if self.client is not None and self.client.connected and not self.sys_denied:
            self.client.publish(f"$SYS.node.{self.name}.stats", self.stats())

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._publish_stats()

    def _answer_query(self, msg: Msg) -> None:
        # "*" (plexus graph: every span kept) or a trace id of 32 hex digits.
        if not msg.reply_to:
            return
        q = msg.payload
        if q == b"*":
            found = list(self._spans_kept)
        else:
            if len(q) != 32:
                return
            try:
                hi, lo = int(q[:16], 16), int(q[16:], 16)
            except ValueError:
                return
            found = [s for s in self._spans_kept if s.trace_hi == hi and s.trace_lo == lo]
        for i in range(0, len(found), 2000):  # only nodes that have some answer do
            self.client.publish(msg.reply_to,
                                trace.encode_span_batch(self.name, found[i:i + 2000]))
