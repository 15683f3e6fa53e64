# SPDX-License-Identifier: Apache-2.0
"""An asyncio client of a plexus broker (brokers/PROTOCOL.md).

One DEALER socket, driven from the event loop through its file descriptor
(no thread): the session (HELLO/WELCOME), heartbeats both ways, failover
across the endpoints the brokers advertise, subscriptions restored on a new
session, confirmed publishes kept until their CONFIRM and re-sent after a
failover under the same msg id, request/reply over a reply inbox,
batching (everything queued in one turn of the loop goes out as one frame),
CurveZMQ for a broker with --auth (`creds`), and flow control: PAUSE/RESUME
per queue group, with a publish window learnt from PING/PONG.
The logic mirrors framework/src/transport/connector_core.cpp.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import time

import msgpack
import zmq

from . import creds as _creds
from . import errors, wire
from .errors import PlexusError, RequestFailed, error_for
from .wire import (ACK, BYE, CONFIRM, CREDIT, ERR, H_BROKERS, H_CODE, H_COUNT, H_CREDIT,
                   H_DEADLINE, H_DELIVERY, H_FLAGS, H_HEADERS, H_HEARTBEAT, H_MAX_PAYLOAD,
                   H_MSG_ID, H_NODE, H_OP, H_REPLY_TO, H_SEQ, H_SID, H_TEXT, H_TOPIC,
                   H_TRACEPARENT, H_VERSION, HELLO, MSG, NACK, PING, PONG, PUB, SUB, UNSUB,
                   VERSION, WELCOME)

_packb = msgpack.Packer(use_bin_type=True).pack
_RETRY_UNKEPT = (errors.FULL, errors.UNAVAILABLE)
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_SUB_REFUSALS = frozenset((errors.PERMISSION_DENIED, errors.FORBIDDEN,
                           errors.TOO_MANY_SUBSCRIPTIONS))
_PING = _packb({H_VERSION: VERSION, H_OP: PING})
_BIN8 = wire._BIN8


def encode(data) -> bytes:
    """A payload as bytes: bytes-like as is, a dataclass as its dict, anything
    else as msgpack (dicts, lists, str, numbers, None)."""
    if type(data) is bytes:
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    return _packb(data)


_unpackb = msgpack.unpackb


def decode(payload: bytes, cls=None):
    """A msgpack payload as Python values; a dict becomes `cls(**d)` when
    `cls` is a dataclass (unknown keys are left out). Strings that are not
    UTF-8 are kept (surrogateescape); lengths are bounded by the payload's."""
    try:
        value = _unpackb(payload)  # the common case: str keys, UTF-8
    except (ValueError, UnicodeDecodeError):  # other keys, or bytes that are not UTF-8
        value = _unpackb(payload, strict_map_key=False, unicode_errors="surrogateescape")
    if cls is not None and isinstance(value, dict) and dataclasses.is_dataclass(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names})
    return value


def new_msg_id() -> bytes:
    return os.urandom(16)


class Msg:
    """A message delivered to a subscription (or a reply)."""

    __slots__ = ("h", "payload", "seq", "_client", "_session", "_settled", "_sub")

    def __init__(self, client, sub, h, payload):
        self._client = client
        self._sub = sub
        self._session = client._session
        self._settled = False
        # The header: a dict keyed by wire field numbers. A MSG run's
        # messages share their run's, so each keeps its own seq apart.
        self.h = h
        self.seq = h.get(H_SEQ, 0)  # the delivery tag its ACK names
        self.payload = payload

    topic = property(lambda self: self.h.get(H_TOPIC, ""))
    sid = property(lambda self: self.h.get(H_SID, 0))
    delivery = property(lambda self: self.h.get(H_DELIVERY, 0))
    msg_id = property(lambda self: self.h.get(H_MSG_ID, b""))
    reply_to = property(lambda self: self.h.get(H_REPLY_TO, ""))
    headers = property(lambda self: self.h.get(H_HEADERS) or {})
    deadline = property(lambda self: self.h.get(H_DEADLINE, 0))
    traceparent = property(lambda self: self.h.get(H_TRACEPARENT, ""))

    def data(self, cls=None):
        """The payload decoded from msgpack (a dataclass when `cls` is one)."""
        return decode(self.payload, cls)

    @property
    def needs_ack(self) -> bool:
        return self._sub is not None and self._sub.ack and not self._settled

    def ack(self) -> None:
        """Settles an at-least-once delivery (consecutive ACKs go out as one range)."""
        if self._settled or self._sub is None or not self._sub.ack:
            return
        self._settled = True
        self._client._ack(self)

    def nack(self, delay: float = 0.0, dead_letter: bool = False, reason: str = "") -> None:
        """Gives it back: redelivered at once, after `delay` seconds, or
        dead-lettered now."""
        if self._settled or self._sub is None or not self._sub.ack:
            return
        self._settled = True
        self._client._nack(self, delay, dead_letter, reason)

    def respond(self, data, headers=None, traceparent=None) -> None:
        """Publishes `data` on the message's reply_to (a request's answer)."""
        if not self.reply_to:
            raise ValueError("the message has no reply_to")
        self._client.publish(self.reply_to, data, headers=headers, traceparent=traceparent)

    def __repr__(self):
        return f"Msg(topic={self.topic!r}, delivery={self.delivery}, {len(self.payload)} bytes)"


class Subscription:
    """A subscription: messages go to its callback, or wait for `async for`
    / next_msg() when it has none."""

    # A subclass's ways to take a batch frame's deliveries at once: MSGs
    # (headers, payloads), or a MSG run (its header, payloads, first seq).
    take_many = None
    take_run = None

    def __init__(self, client, sid, pattern, callback, queue, ack, credit, ack_wait,
                 max_deliver, auto_credit):
        self._client = client
        self.sid = sid
        self.pattern = pattern
        self.queue = queue
        self.ack = ack
        self.credit = credit
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.auto_credit = auto_credit
        self._callback = callback
        self._pending = None if callback else asyncio.Queue()
        self._owed = 0      # settled deliveries not yet granted back
        self.held = 0       # deliveries of this session not settled
        self.delivered = 0
        self.closed = False
        self.error = None   # the broker's refusal of the SUB (a PlexusError), if it refused
        # Set by the Node: the credit a new session's SUB asks for.
        self.restore_credit = None
        self.on_new_session = None

    def _sub_header(self) -> bytes:
        h = {H_VERSION: VERSION, H_OP: SUB, H_SID: self.sid, H_TOPIC: self.pattern}
        if self.queue:
            h[wire.H_QUEUE] = self.queue
        if self.ack:
            h[wire.H_ACK_MODE] = 1
        credit = self.restore_credit() if self.restore_credit else self.credit
        if credit:
            h[H_CREDIT] = credit
        if self.ack_wait:
            h[wire.H_ACK_WAIT] = int(self.ack_wait * 1000)
        if self.max_deliver:
            h[wire.H_MAX_DELIVER] = self.max_deliver
        return _packb(h)

    def grant(self, n: int) -> None:
        """The broker may send `n` more (queue groups receive only against credit)."""
        if n > 0:
            self._client._send_settle(_packb({H_VERSION: VERSION, H_OP: CREDIT, H_SID: self.sid,
                                              H_CREDIT: n}))

    def set_credit(self, n: int) -> None:
        """The credit becomes `n`: 0 is how a member leaves without losing anything."""
        self._client._send_settle(_packb({H_VERSION: VERSION, H_OP: CREDIT, H_SID: self.sid,
                                          H_CREDIT: n, H_FLAGS: wire.CREDIT_SET}))

    def _settled_one(self, session) -> None:
        if session != self._client._session:
            return
        self.held -= 1
        if self.auto_credit and self.credit:
            self._owed += 1
            if self._owed >= max(1, self.credit // 4) or self.held == 0:
                n, self._owed = self._owed, 0
                self.grant(n)

    def _deliver_one(self, h, payload) -> None:
        self._deliver(Msg(self._client, self, h, payload))

    def _deliver(self, msg) -> None:
        self.delivered += 1
        if self.ack:
            self.held += 1
        if self._callback is not None:
            r = self._callback(msg)
            if r is not None and asyncio.iscoroutine(r):
                asyncio.ensure_future(r)
        else:
            self._pending.put_nowait(msg)

    async def next_msg(self, timeout=None) -> Msg:
        if self._pending is None:
            raise RuntimeError("this subscription has a callback")
        return await asyncio.wait_for(self._pending.get(), timeout)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.closed and (self._pending is None or self._pending.empty()):
            raise StopAsyncIteration
        msg = await self.next_msg()
        if msg is None:  # unsubscribed
            raise StopAsyncIteration
        return msg

    async def unsubscribe(self) -> None:
        await self._client.unsubscribe(self)


class Client:
    """A plexus client on asyncio.

    `servers`: one endpoint or a list (tcp://host:port, ipc://path); the
    brokers' WELCOME adds the cluster's other endpoints for failover."""

    def __init__(self, servers="tcp://127.0.0.1:7400", *, name=None, connect_timeout=10.0,
                 hello_timeout=2.0, max_batch_bytes=256 * 1024, max_batch_entries=1024,
                 retry_unkept=True, on_error=None, lineage=None, creds=None,
                 flow_control=True, when_paused="hold", publish_window=8192,
                 publish_window_bytes=8 << 20, max_held=65536, msg_runs=True,
                 retry_backoff=(0.05, 2.0)):
        if isinstance(servers, str):
            servers = [s for s in servers.split(",") if s]
        if not servers:
            raise ValueError("no broker endpoint")
        self.endpoints = list(servers)
        self.name = name or f"py-{os.getpid()}-{os.urandom(3).hex()}"
        self.lineage = lineage or (int.from_bytes(os.urandom(8), "little") or 1)
        self.connect_timeout = connect_timeout
        self.hello_timeout = hello_timeout
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_entries = min(max_batch_entries, wire.MAX_BATCH_ENTRIES)
        self.retry_unkept = retry_unkept
        # Confirmed publishes answered 115, 116 (or 103 while paused) go
        # again after (first, most) seconds, doubling; a RESUME sends the
        # 103s at once.
        self.retry_backoff = retry_backoff
        self.on_error = on_error
        # CurveZMQ for a broker with --auth: a credentials file (`plexus keys
        # user`) or a plexus.creds.Credentials; None is plaintext.
        self.creds = _creds.resolve(creds)
        if self.creds is not None and not zmq.has("curve"):
            raise RuntimeError("this libzmq has no CURVE support: it cannot use creds")
        self.handshake_failure = ""  # why the last CURVE handshake failed, if it did
        # Flow control (PROTOCOL.md "Flow control"): HELLO says this client
        # honours PAUSE/RESUME; while the broker pauses a queue group, PUBs to
        # its topics are held here in order and written on RESUME (requests
        # are not held). `when_paused` for publish(): "hold" (flush() waits
        # for them: a publisher that awaits it is slowed), "drop" (counted:
        # stats["paused_drops"]) or "fail" (Overloaded, 103). The publish
        # window bounds PUBs written that the broker has not read yet.
        if when_paused not in ("hold", "drop", "fail"):
            raise ValueError(f"when_paused must be hold, drop or fail, not {when_paused!r}")
        self.flow_control = flow_control
        # HELLO asks for MSG runs (PROTOCOL.md "MSG runs"): a subscription's
        # consecutive deliveries that differ only in seq and payload come as
        # one batch entry, decoded with one header for all of them.
        self.msg_runs = msg_runs
        self.when_paused = when_paused
        # "hold" keeps at most this many PUBs while paused; past it publish()
        # raises Overloaded, as "fail" does (memory stays bounded when the
        # publisher never awaits flush()).
        self.max_held = max_held
        self.publish_window = publish_window
        self.publish_window_bytes = publish_window_bytes
        self.broker = ""          # the broker id of the session
        self.max_payload = 0
        self.heartbeat = 1.0      # the broker's (WELCOME)
        self.liveness = 3
        self.stats = collections.Counter()
        self.errors = []          # (code, text) of ERRs nobody else took, the last 100
        self._ctx = zmq.Context.instance()
        self._loop = None
        self._sock = None
        self._monitor = None
        self._fd = None
        self._current = -1
        self._session = 0
        self._welcomed = False
        self._closing = False
        self._closed = False
        self._controls = collections.deque()   # header bytes: HELLO, PONG, BYE
        # Per PING written, in order: (waiter or None, PUBs and their bytes
        # written before it); the k-th PONG answers the k-th.
        self._pings = collections.deque()
        self._flow = False                     # this session does flow control
        self._paused = []                      # patterns the broker paused
        self._held = collections.deque()       # PUB entries held back, in order
        self._pubs_written = self._pub_bytes_written = 0
        self._pubs_read = self._pub_bytes_read = 0
        self._since_mark = 0                   # PUBs written since the last PING
        # (header, payload or None, settles, tag): tag is the topic of a PUB
        # flow control may hold back, the waiter (or None) of a PING.
        self._out = collections.deque()
        self._acks = {}                        # sid -> [first seq, count, session]
        self._flush_scheduled = False
        self._blocked = False
        self._flush_waiters = []
        self._plain_headers = {}
        self._subs = {}
        self._next_sid = 1
        self._unconfirmed = {}                 # msg_id -> [header, payload, future, retries]
        # Confirmed publishes a flow-control broker refused with 103 (their
        # group was paused), each waiting for its backoff: a RESUME sends
        # them at once instead, as the C++ connector does. msg_id -> timer.
        self._overload_retries = {}
        self._requests = {}                    # id -> future
        self._next_request = 0
        self._inbox_prefix = f"_INBOX.{self.name}."
        self._inbox_sub = None
        self._welcome_event = None
        self._refused_event = None
        self._refusals = 0
        self._ticker = None
        self._dialed_at = 0.0
        self._last_heard = 0.0
        self._last_sent = 0.0
        self._last_ping = 0.0
        self._backoff = 0.1
        self._next_attempt = 0.0

    # ---------------------------------------------------------------- lifecycle

    async def connect(self, timeout=None) -> "Client":
        """Dials the first endpoint (then the others) until a session begins."""
        self._loop = asyncio.get_running_loop()
        self._welcome_event = asyncio.Event()
        self._inbox_sub = Subscription(self, self._new_sid(), self._inbox_prefix + ">",
                                       self._on_reply, None, False, 0, 0, 0, False)
        self._subs[self._inbox_sub.sid] = self._inbox_sub
        self._refused_event = asyncio.Event()
        self._refusals = 0
        self._dial()
        self._ticker = self._loop.create_task(self._tick_loop())
        waits = (self._loop.create_task(self._welcome_event.wait()),
                 self._loop.create_task(self._refused_event.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout or self.connect_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if self._welcomed:
            return self
        failure = self.handshake_failure
        await self.close()
        why = f"no broker answered at {', '.join(self.endpoints)}"
        if failure:
            raise errors.HandshakeFailed(f"{why}: {failure}", failure)
        raise ConnectionError(why)

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.close()

    @property
    def connected(self) -> bool:
        return self._welcomed

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current % len(self.endpoints)] if self._current >= 0 else ""

    async def wait_connected(self, timeout=None) -> None:
        await asyncio.wait_for(self._welcome_event.wait(), timeout)

    async def close(self, timeout=2.0) -> None:
        """Writes what is queued, says BYE and closes. Open requests fail with
        Disconnected; unconfirmed publishes too."""
        if self._closed:
            return
        linger = 0
        if self._welcomed and self._sock is not None and not self._closing:
            # Written to the socket is not yet taken by the broker: a round
            # trip behind everything queued says it was (a socket closed with
            # frames in its pipe drops them).
            self._flush_acks()
            try:
                await asyncio.wait_for(self.ping(timeout), timeout)
            except (asyncio.TimeoutError, PlexusError, ConnectionError):
                pass
            self._closing = True
            self._controls.append(_packb({H_VERSION: VERSION, H_OP: wire.BYE}))
            self._write()
            linger = 200  # ms for the BYE
        self._closing = True
        self._closed = True
        if self._ticker:
            self._ticker.cancel()
        self._hang_up(final=True, linger=linger)
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(errors.Disconnected(text="client closed"))
        self._requests.clear()
        for entry in self._unconfirmed.values():
            if not entry[2].done():
                entry[2].set_exception(errors.Disconnected(text="client closed"))
                entry[2].exception()  # retrieved: nobody may await it any more
        self._unconfirmed.clear()
        for w in self._flush_waiters:
            if not w.done():
                w.set_exception(ConnectionError("client closed"))
        for s in self._subs.values():
            s.closed = True

    # ---------------------------------------------------------------- the link

    def _dial(self) -> None:
        self._hang_up()
        self._current += 1
        endpoint = self.endpoints[self._current % len(self.endpoints)]
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.SNDHWM, 10000)
        sock.setsockopt(zmq.RCVHWM, 10000)
        if self.creds is not None:
            sock.curve_serverkey = self.creds.broker_key.encode()
            sock.curve_publickey = self.creds.public_key.encode()
            sock.curve_secretkey = self.creds.secret_key.encode()
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED)
        sock.connect(endpoint)
        self._sock = sock
        self._fd = sock.getsockopt(zmq.FD)
        self._loop.add_reader(self._fd, self._on_events)
        now = time.monotonic()
        self._dialed_at = self._last_heard = now
        self._begin_session()

    def _begin_session(self) -> None:
        self._session = self._session % 0xFFFF + 1
        self._welcomed = False
        self._dialed_at = time.monotonic()  # the HELLO's own deadline
        self._controls.clear()
        self._blocked = False
        # Settlements (and PINGs) of the ended session mean nothing to the next one.
        self._fail_pings()
        self._unpause()
        if any(e[2] for e in self._out):
            self._out = collections.deque(e for e in self._out if not e[2])
        self._acks.clear()
        hello = {H_VERSION: VERSION, H_OP: HELLO, H_NODE: self.name,
                 H_HEARTBEAT: int(self.heartbeat * 1000), H_SEQ: self.lineage}
        flags = ((wire.FLAG_FLOW_CONTROL if self.flow_control else 0)
                 | (wire.FLAG_MSG_RUNS if self.msg_runs else 0))
        if flags:
            hello[H_FLAGS] = flags
        self._controls.append(_packb(hello))
        self._kick()

    def _hang_up(self, final=False, linger=0) -> None:
        if self._sock is not None:
            try:
                self._loop.remove_reader(self._fd)
            except Exception:
                pass
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._sock.close(linger)
            self._sock = None
            self._monitor = None
        if self._welcomed and not final:
            self.stats["reconnects"] += 1
        self._welcomed = False
        self._fail_pings()
        self._unpause()
        if not final:
            # Unsent envelopes go: subscriptions and unconfirmed publishes are
            # restored after the next WELCOME; plain publishes are at most once.
            self._out.clear()
        self._controls.clear()
        self._acks.clear()
        if self._welcome_event is not None:
            self._welcome_event.clear()

    def _lost(self, why: str) -> None:
        """The session is gone: dial the next endpoint (at once after a session,
        after a growing backoff after a failed attempt)."""
        if self._closed:
            return
        was = self._welcomed
        self._report(errors.SESSION_LOST, why)
        self._hang_up()
        now = time.monotonic()
        if was:
            self._backoff = 0.1
            self._next_attempt = now
            self._dial()
        else:
            self._next_attempt = now + self._backoff
            self._backoff = min(self._backoff * 2, 2.0)

    async def _tick_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(0.05)
            try:
                self._tick()
            except Exception as e:  # never let the timer die
                self._report(-1, f"tick: {e!r}")

    def _tick(self) -> None:
        now = time.monotonic()
        if self._sock is None:
            if now >= self._next_attempt and not self._closing:
                self._dial()
            return
        # A dead link (kill -9 of the broker) shows on the monitor at once.
        try:
            while self._monitor.poll(0):
                ev = self._monitor.recv_multipart(zmq.NOBLOCK)
                event = int.from_bytes(ev[0][:2], "little")
                if event == zmq.EVENT_DISCONNECTED and self._welcomed:
                    self._lost(f"the link to {self.endpoint} closed")
                    return
                if event & _HANDSHAKE_FAILED:
                    self._handshake_refused(event)
                    return
        except zmq.ZMQError:
            pass
        if not self._welcomed:
            if now - self._dialed_at >= self.hello_timeout:
                self._lost(f"no WELCOME from {self.endpoint} within {self.hello_timeout} s")
            else:
                self._on_events()
            return
        hb = self.heartbeat
        if now - self._last_heard >= hb * self.liveness:
            self._lost(f"the broker at {self.endpoint} was silent for {hb * self.liveness:.1f} s")
            return
        quiet_out = now - self._last_sent >= hb / 2
        quiet_in = now - self._last_heard >= hb / 2 and now - self._last_ping >= hb / 2
        if quiet_out or quiet_in:
            self._queue_ping()
        # A safety net for the edge-triggered descriptor.
        self._on_events()

    def _handshake_refused(self, event) -> None:
        """The broker refused our key (ZAP), or its key is not the one we were
        given, or it wants CURVE and we have none: say which (connect()
        raises it once every endpoint refused; on_error hears it)."""
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            text = "the broker refused this client's CURVE key (not in its auth file)"
        elif self.creds is not None:
            text = "the CURVE handshake failed (is the broker key right? does the broker use --auth?)"
        else:
            text = ("the handshake failed (does the broker use --auth? then connect with creds=, "
                    "a credentials file from `plexus keys user`)")
        self.handshake_failure = text
        # A refusal is sure; a handshake that failed without detail (a wrong
        # broker key, a server that closed) counts once it happened thrice.
        self._refusals += 1 if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL else 3
        if (self._refused_event is not None and not self._welcomed
                and self._refusals >= 3 * len(self.endpoints)):
            self._refused_event.set()
        self._lost(f"{text} ({self.endpoint})")

    def _queue_ping(self, waiter=None) -> None:
        # Every PING goes in line with the envelopes (a settlement: the next
        # session does not send it) and the broker answers each with a PONG
        # in order, behind what came before it: the k-th PONG answers the
        # k-th PING, so `waiter` learns that all before it was taken.
        self._last_ping = time.monotonic()
        self._flush_acks()
        self._send_entry(_PING, None, True, waiter)

    def _fail_pings(self) -> None:
        pings, self._pings = self._pings, collections.deque()
        self._pubs_written = self._pub_bytes_written = 0
        self._pubs_read = self._pub_bytes_read = self._since_mark = 0
        waiters = [p[0] for p in pings]
        if any(e[0] is _PING for e in self._out):
            waiters += [e[3] for e in self._out if e[0] is _PING]
            self._out = collections.deque(e for e in self._out if e[0] is not _PING)
        for w in waiters:
            if w is not None and not w.done():
                w.set_exception(errors.Disconnected(text="the session ended"))

    # ---------------------------------------------------------------- reading

    def _on_events(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            ev = sock.getsockopt(zmq.EVENTS)
        except zmq.ZMQError:
            return
        if ev & zmq.POLLOUT and self._blocked:
            self._blocked = False
            self._write()
        n = 0
        while sock is self._sock and n < 256:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                return
            n += 1
            self._heard(frames)
        if n == 256 and sock is self._sock:
            self._loop.call_soon(self._on_events)  # let others have a turn

    def _heard(self, frames) -> None:
        self._last_heard = time.monotonic()
        try:
            envelopes = wire.decode(frames)
        except wire.ProtocolError as e:
            self.stats["bad_frames"] += 1
            self._report(2, f"a frame from the broker did not decode: {e}")
            return
        subs = self._subs
        kind = type(envelopes)
        if kind is wire.MsgRun:
            self.stats["msg_run_frames"] += 1
            sub = subs.get(envelopes.sid)
            if sub is not None and not sub.closed and sub.take_run is not None:
                sub.take_run(envelopes.h, envelopes.payloads, envelopes.first)
                return
        elif kind is wire.MsgBatch and envelopes.sid is not None:
            sub = subs.get(envelopes.sid)
            if sub is not None and not sub.closed and sub.take_many is not None:
                sub.take_many(envelopes.heads, envelopes.payloads)  # a run for one subscription
                return
        for h, payload in envelopes:
            op = h[H_OP]
            if op == MSG:
                sub = subs.get(h.get(H_SID, 0))
                if sub is None or sub.closed:
                    continue
                sub._deliver_one(h, payload)
            else:
                self._control(op, h)

    def _control(self, op, h) -> None:
        if op == WELCOME:
            if self._welcomed:
                return
            self._welcomed = True
            self._flow = self.flow_control and bool(h.get(H_FLAGS, 0) & wire.FLAG_FLOW_CONTROL)
            self.broker = h.get(H_NODE, "")
            self.max_payload = h.get(H_MAX_PAYLOAD, 0)
            if h.get(H_HEARTBEAT):
                self.heartbeat = h[H_HEARTBEAT] / 1000.0
            for b in h.get(H_BROKERS) or ():
                if b and b not in self.endpoints:
                    self.endpoints.append(b)
            self._backoff = 0.1
            self._refusals = 0
            self.handshake_failure = ""
            if self.stats["sessions"]:
                self.stats["resumed"] += 1
            self.stats["sessions"] += 1
            self._restore()
            self._welcome_event.set()
        elif op == CONFIRM:
            entry = self._unconfirmed.get(h.get(H_MSG_ID, b""))
            if entry is None:
                return  # a duplicate's second confirm
            code = h.get(H_CODE, 0)
            overloaded = code == errors.OVERLOADED and self._flow
            if self.retry_unkept and (code in _RETRY_UNKEPT or overloaded):
                # (103 from a flow-control broker: the group is paused; the
                # PUB crossed the PAUSE on its way. Its RESUME may come first.)
                entry[3] += 1
                mid = h[H_MSG_ID]
                delay = min(self.retry_backoff[0] * 2 ** (entry[3] - 1), self.retry_backoff[1])
                if overloaded:
                    old = self._overload_retries.pop(mid, None)
                    if old is not None:
                        old.cancel()
                    self._overload_retries[mid] = self._loop.call_later(
                        delay, self._retry_overloaded, mid)
                else:
                    self._loop.call_later(delay, self._resend, mid)
                return
            self._settle(h[H_MSG_ID], code, "")
        elif op == PING:
            if self._welcomed:
                self._controls.append(_packb({H_VERSION: VERSION, H_OP: PONG}))
                self._kick()
        elif op == ERR:
            self._on_err(h)
        elif op == BYE:
            why = h.get(H_TEXT, "") or "(no reason given)"
            if self._welcomed:
                self.stats["sessions_lost"] += 1
            self._lost(f"the broker ended the session: {why}")
        elif op == PONG:
            if self._pings:
                w, self._pubs_read, self._pub_bytes_read = self._pings.popleft()
                if w is not None and not w.done():
                    w.set_result(None)
                if self._flow:
                    self._kick()  # the publish window may have opened
        elif op == wire.PAUSE:
            if self._welcomed and self._flow:
                self._on_pause(h.get(H_TOPIC, ""))
        elif op == wire.RESUME:
            if self._welcomed and self._flow:
                self._on_resume(h.get(H_TOPIC, ""))

    def _on_err(self, h) -> None:
        code = h.get(H_CODE, 0)
        text = h.get(H_TEXT, "")
        if code == errors.PROTOCOL_VIOLATION and self._welcomed:
            # "HELLO must come first": the broker no longer knows this session.
            self.stats["sessions_lost"] += 1
            self._report(errors.SESSION_LOST, f"the broker no longer knew this session ({text})")
            self._welcomed = False
            self._welcome_event.clear()
            self._fail_pings()
            self._out.clear()
            self._begin_session()
            return
        if code == errors.SLOW_CONSUMER:
            self.stats["broker_dropped"] += h.get(H_COUNT, 0)
            self._report(code, text)
            return
        sub = self._subs.get(h.get(H_SID, 0)) if H_SID in h else None
        if sub is not None and code in _SUB_REFUSALS:
            # The broker made no subscription (e.g. 114: the user may not
            # subscribe to that pattern): subscribe() raises it, and the
            # subscription is not restored on a new session.
            sub.error = error_for(code, text)
            sub.closed = True
            self._subs.pop(sub.sid, None)
            if sub._pending is not None:
                sub._pending.put_nowait(None)
            self._report(code, text)
            return
        settled = False
        mid = h.get(H_MSG_ID)
        if mid and mid in self._unconfirmed:
            self._settle(mid, code, text)
            settled = True
        reply_to = h.get(H_REPLY_TO, "")
        if reply_to.startswith(self._inbox_prefix):
            self._complete(reply_to, error_for(code, text))
        elif not settled:
            self._report(code, text)

    def _report(self, code, text) -> None:
        self.errors.append((code, text))
        del self.errors[:-100]
        if self.on_error:
            try:
                self.on_error(code, text)
            except Exception:
                pass

    def _restore(self) -> None:
        """A new session: SUBs first, then every unconfirmed publish again."""
        again = []
        for sub in self._subs.values():
            if sub.closed:
                continue
            sub.held = 0
            sub._owed = 0
            if sub.on_new_session:
                sub.on_new_session()
            again.append((sub._sub_header(), None, False, None))
        resent = 0
        for head, payload, _fut, _n, topic in self._unconfirmed.values():
            again.append((head, payload, False, topic))
            resent += 1
        if self.stats["sessions"] > 1:
            self.stats["resent"] += resent
        self._out.extendleft(reversed(again))
        self._kick()

    # ---------------------------------------------------------------- writing

    def _kick(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._write)

    def _write(self) -> None:
        self._flush_scheduled = False
        sock = self._sock
        if sock is None or self._blocked:
            return
        if self._acks:
            self._flush_acks()
        wrote = False
        try:
            while self._controls:
                sock.send(self._controls[0], zmq.NOBLOCK)
                self._controls.popleft()
                wrote = True
            if self._welcomed:
                wrote = self._write_out(sock) or wrote
        except zmq.Again:
            self._blocked = True  # POLLOUT on the descriptor resumes it
        except zmq.ZMQError as e:
            self._report(-1, f"send failed: {e}")
        if wrote:
            self._last_sent = time.monotonic()
        if (not self._out and not self._controls and not self._held
                and self._flush_waiters):
            waiters, self._flush_waiters = self._flush_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        # A send may have consumed the descriptor's edge: look again soon.
        self._loop.call_soon(self._on_events)

    def _write_out(self, sock) -> bool:
        """Writes what _out holds, batched (raises zmq.Again when the socket
        is full); with flow control, PUBs only within the publish window."""
        out = self._out
        pings = self._pings
        flow = self._flow
        wrote = False
        bin8, bin_prefix, nil = _BIN8, wire.bin_prefix, wire.NIL
        quarter = max(1, self.publish_window // 4)
        while out:
            if flow and out[0][3].__class__ is str and self._window_full(1, len(out[0][1])):
                if not self._since_mark:
                    break  # a PING after the last PUB is out: its PONG opens the window
                out.appendleft((_PING, None, True, None))  # the marker, ahead
                self.stats["window_waits"] += 1
            if len(out) == 1:
                head, payload, _, tag = out[0]
                if payload is None:
                    sock.send(head, zmq.NOBLOCK)
                else:
                    sock.send_multipart((head, payload), zmq.NOBLOCK)
                out.popleft()
                if head is _PING:
                    pings.append((tag, self._pubs_written, self._pub_bytes_written))
                    self._since_mark = 0
                elif flow and tag.__class__ is str:
                    self._pubs_written += 1
                    self._pub_bytes_written += len(payload)
                    self._since_mark += 1
                wrote = True
                continue
            # One pass: [array32][header][bin prefix][payload]...
            parts = [b""]
            add = parts.append
            size = n = 0
            limit_n, limit_b = self.max_batch_entries, self.max_batch_bytes
            marks = []  # (index of a PING in this frame, its waiter)
            if not flow:
                for head, payload, _, tag in out:
                    if n and (n == limit_n or size > limit_b):
                        break
                    add(head)
                    if payload is None:
                        add(nil)
                        size += len(head) + 1
                        if head is _PING:
                            marks.append(tag)
                    else:
                        k = len(payload)
                        add(bin8[k] if k < 256 else bin_prefix(k))
                        add(payload)
                        size += len(head) + k + 5
                    n += 1
                pubs = pub_bytes = 0
            else:
                pubs = pub_bytes = 0
                # At most a quarter window between PINGs, within the window
                # (msgs, bytes): what this frame may take (past its first).
                max_pubs = quarter - self._since_mark
                if self.publish_window:
                    max_pubs = min(max_pubs, self.publish_window
                                   - (self._pubs_written - self._pubs_read))
                max_bytes = (self.publish_window_bytes
                             - (self._pub_bytes_written - self._pub_bytes_read)
                             if self.publish_window_bytes else 1 << 62)
                for head, payload, _, tag in out:
                    if n and (n == limit_n or size > limit_b):
                        break
                    if payload is None:
                        add(head)
                        add(nil)
                        size += len(head) + 1
                        if head is _PING:
                            # Its mark: the PUBs written before it in this frame too.
                            marks.append((tag, pubs, pub_bytes))
                    else:
                        k = len(payload)
                        if tag.__class__ is str:  # a PUB flow control counts
                            if n and (pubs >= max_pubs or pub_bytes + k > max_bytes):
                                break
                            pubs += 1
                            pub_bytes += k
                        add(head)
                        add(bin8[k] if k < 256 else bin_prefix(k))
                        add(payload)
                        size += len(head) + k + 5
                    n += 1
            parts[0] = wire.array32_prefix(2 * n)
            sock.send(b"".join(parts), zmq.NOBLOCK)
            if n == len(out):
                out.clear()
            else:
                for _ in range(n):
                    out.popleft()
            self.stats["batches_sent"] += 1
            wrote = True
            if marks:
                if flow:
                    base, base_bytes = self._pubs_written, self._pub_bytes_written
                    for tag, p, b in marks:
                        pings.append((tag, base + p, base_bytes + b))
                else:
                    for tag in marks:
                        pings.append((tag, 0, 0))
            if flow:
                self._pubs_written += pubs
                self._pub_bytes_written += pub_bytes
                # PUBs written since the frame's last PING (or before it, none).
                self._since_mark = (pubs - marks[-1][1]) if marks else self._since_mark + pubs
                if self._since_mark >= quarter:
                    out.appendleft((_PING, None, True, None))  # a marker every quarter window
        return wrote

    def _window_full(self, more_msgs, more_bytes) -> bool:
        unread = self._pubs_written - self._pubs_read
        if unread == 0 and more_msgs <= 1:
            return False  # one always goes, however large
        return ((self.publish_window and unread + more_msgs > self.publish_window)
                or (self.publish_window_bytes and self._pub_bytes_written - self._pub_bytes_read
                    + more_bytes > self.publish_window_bytes))

    # ---------------------------------------------------------------- flow control

    def _is_paused(self, topic) -> bool:
        matches = wire.matches
        for p in self._paused:
            if matches(p, topic):
                return True
        return False

    def _queue_pub(self, entry) -> None:
        """A PUB entry to _out, or held while its group is paused (and so are
        the later ones to the same topics: order)."""
        if self._paused and entry[3] is not None and self._is_paused(entry[3]):
            self._held.append(entry)
            return
        self._out.append(entry)
        self._kick()

    def _on_pause(self, pattern) -> None:
        if pattern in self._paused:
            return
        try:
            wire.check_pattern(pattern)
        except ValueError:
            return
        self.stats["pauses"] += 1
        self._paused.append(pattern)
        # What waits to be written and goes to that group is held back now, in order.
        keep = collections.deque()
        for e in self._out:
            if e[3].__class__ is str and wire.matches(pattern, e[3]):
                self._held.append(e)
            else:
                keep.append(e)
        self._out = keep

    def _on_resume(self, pattern) -> None:
        if pattern not in self._paused:
            return
        self._paused.remove(pattern)
        self.stats["resumes"] += 1
        # What no paused pattern holds back goes first, in order: nothing of
        # its topics was written meanwhile.
        still, go = collections.deque(), []
        for e in self._held:
            (still if self._paused and self._is_paused(e[3]) else go).append(e)
        self._held = still
        self._out.extendleft(reversed(go))
        self._overloaded_now()
        self._kick()

    def _unpause(self) -> None:
        # A new session re-sends every unconfirmed publish: no retry is due.
        for timer in self._overload_retries.values():
            timer.cancel()
        self._overload_retries.clear()
        self._paused.clear()
        if self._held:
            self._out.extendleft(reversed(self._held))
            self._held.clear()

    @property
    def paused(self) -> list:
        """The patterns whose queue groups the broker paused for this client."""
        return list(self._paused)

    @property
    def held(self) -> int:
        """PUBs held back while their queue group is paused."""
        return len(self._held)

    def _send_entry(self, head, payload=None, settles=False, tag=None) -> None:
        self._out.append((head, payload, settles, tag))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._write)

    def _send_settle(self, head) -> None:
        self._flush_acks()
        self._send_entry(head, None, True)

    async def flush(self, timeout=None) -> None:
        """Waits until everything queued so far was written to the socket
        (PUBs held while their queue group is paused too: a publisher that
        awaits this now and then is slowed to the group's pace)."""
        if not self._out and not self._controls and not self._acks and not self._held:
            return
        fut = self._loop.create_future()
        self._flush_waiters.append(fut)
        self._kick()
        await asyncio.wait_for(fut, timeout)

    @property
    def queued(self) -> int:
        """Envelopes waiting to be written."""
        return len(self._out)

    # ---------------------------------------------------------------- acks

    def _ack(self, msg) -> None:
        sub = msg._sub
        if msg._session == self._session:
            sid, seq = msg.h.get(H_SID, 0), msg.seq
            run = self._acks.get(sid)
            if run is not None and run[0] + run[1] == seq:
                run[1] += 1
            else:
                if run is not None:
                    self._emit_ack(sid, run)
                self._acks[sid] = [seq, 1]
                self._kick()
        sub._settled_one(msg._session)

    def _ack_run(self, sub, session, sid, first, count) -> None:
        """`count` consecutive deliveries from `first`, settled (the pools' path)."""
        if session == self._session:
            run = self._acks.get(sid)
            if run is not None and run[0] + run[1] == first:
                run[1] += count
            else:
                if run is not None:
                    self._emit_ack(sid, run)
                self._acks[sid] = [first, count]
                self._kick()
            sub.held -= count

    def _emit_ack(self, sid, run) -> None:
        h = {H_VERSION: VERSION, H_OP: ACK, H_SID: sid, H_SEQ: run[0]}
        if run[1] > 1:
            h[H_COUNT] = run[1]
        self._out.append((_packb(h), None, True, None))

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, {}
        for sid, run in acks.items():
            self._emit_ack(sid, run)

    def _nack(self, msg, delay, dead_letter, reason) -> None:
        if msg._session == self._session:
            h = {H_VERSION: VERSION, H_OP: NACK, H_SID: msg.sid, H_SEQ: msg.seq}
            if dead_letter:
                h[wire.H_ACTION] = wire.NACK_DEAD_LETTER
            elif delay > 0:
                h[wire.H_ACTION] = wire.NACK_DELAY
                h[wire.H_DELAY] = int(delay * 1000)
            if reason:
                h[H_TEXT] = reason[:1024]
            self._send_settle(_packb(h))
        msg._sub._settled_one(msg._session)

    # ---------------------------------------------------------------- publishing

    def _pub_header(self, topic, reply_to, headers, deadline, traceparent, msg_id, flags):
        h = {H_VERSION: VERSION, H_OP: PUB, H_TOPIC: topic}
        if msg_id:
            h[H_MSG_ID] = msg_id
        if reply_to:
            h[H_REPLY_TO] = reply_to
        if headers:
            h[H_HEADERS] = headers
        if deadline:
            h[H_DEADLINE] = deadline
        if traceparent:
            h[H_TRACEPARENT] = traceparent
        if flags:
            h[H_FLAGS] = flags
        return _packb(h)

    def publish(self, topic: str, data=b"", *, headers=None, reply_to=None, deadline=None,
                traceparent=None, msg_id=None) -> None:
        """At most once: queued now, written with whatever else is queued in
        this turn of the loop. `deadline`: seconds from now. Lost while the
        client has no session (use publish_confirmed for what must arrive)."""
        if self._closing:
            raise ConnectionError("client closed")
        if not (headers or reply_to or deadline or traceparent or msg_id):
            head = self._plain_headers.get(topic)
            if head is None:
                if len(self._plain_headers) > 1024:
                    self._plain_headers.clear()
                head = self._plain_headers[topic] = self._pub_header(topic, None, None, 0, None,
                                                                     None, 0)
        else:
            dl = time.time_ns() + int(deadline * 1e9) if deadline else 0
            head = self._pub_header(topic, reply_to, headers, dl, traceparent, msg_id, 0)
        entry = (head, data if type(data) is bytes else encode(data), False,
                 None if reply_to else topic)
        if self._paused and entry[3] is not None and self._is_paused(topic):
            if self.when_paused == "drop":
                self.stats["paused_drops"] += 1
                return
            if self.when_paused == "fail":
                raise errors.Overloaded(text=f"{topic}: its queue group is paused")
            if len(self._held) >= self.max_held:
                self.stats["paused_failures"] += 1
                raise errors.Overloaded(text=f"{topic}: its queue group is paused and {len(self._held)} "
                                             "PUBs are held (max_held): await flush()")
            self._held.append(entry)
            return
        self._out.append(entry)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._write)

    def publish_confirmed(self, topic: str, data=b"", *, headers=None, deadline=None,
                          traceparent=None, msg_id=None, raise_on_error=True) -> asyncio.Future:
        """At least once: an awaitable that is done with 0 once the broker
        confirms it, or fails with the PlexusError of another status (returns
        the code instead with raise_on_error=False). Kept until then, and sent
        again after a failover under the same msg id."""
        if self._closing:
            raise ConnectionError("client closed")
        msg_id = msg_id or new_msg_id()
        if isinstance(msg_id, str):
            msg_id = msg_id.encode("utf-8", "surrogateescape")
        fut = self._loop.create_future()
        fut._plexus_raise = raise_on_error  # type: ignore[attr-defined]
        dl = time.time_ns() + int(deadline * 1e9) if deadline else 0
        head = self._pub_header(topic, None, headers, dl, traceparent, msg_id, wire.FLAG_CONFIRM)
        payload = encode(data)
        entry = self._unconfirmed.get(msg_id)
        if entry is not None:  # one CONFIRM for both: chain the second to the first
            def relay(f, mine=fut):
                if mine.done():
                    return
                if f.exception() is not None:
                    mine.set_exception(f.exception()) if mine._plexus_raise else \
                        mine.set_result(getattr(f.exception(), "code", -1))
                else:
                    mine.set_result(f.result())
            entry[2].add_done_callback(relay)
        else:
            self._unconfirmed[msg_id] = [head, payload, fut, 0, topic]
        if self._welcomed:
            self._queue_pub((head, payload, False, topic))
        return fut

    def _resend(self, msg_id, counter="unkept_retries") -> None:
        entry = self._unconfirmed.get(msg_id)
        if entry is None or not self._welcomed:
            return  # settled meanwhile, or the next session re-sends it
        self.stats[counter] += 1
        self._queue_pub((entry[0], entry[1], False, entry[4]))  # held while still paused

    def _retry_overloaded(self, msg_id) -> None:
        self._overload_retries.pop(msg_id, None)
        self._resend(msg_id, "overload_retries")

    def _overloaded_now(self) -> None:
        """A RESUME: every publish refused with 103 goes again now, not after
        its backoff (one whose group is still paused is held)."""
        due, self._overload_retries = self._overload_retries, {}
        for msg_id, timer in due.items():
            timer.cancel()
            self._resend(msg_id, "overload_retries")

    def _settle(self, msg_id, code, text) -> None:
        entry = self._unconfirmed.pop(msg_id, None)
        if entry is None:
            return
        fut = entry[2]
        self.stats["confirmed" if code == 0 else "confirm_failed"] += 1
        if fut.done():
            return
        if code == 0 or not fut._plexus_raise:
            fut.set_result(code)
        else:
            fut.set_exception(error_for(code, text))

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    # ---------------------------------------------------------------- subscribing

    def _new_sid(self) -> int:
        sid = self._next_sid
        self._next_sid += 1
        return sid

    async def subscribe(self, pattern: str, callback=None, *, queue=None, ack=False,
                        credit=None, ack_wait=None, max_deliver=None, auto_credit=True):
        """Subscribes to a pattern (`*` one token, `>` the rest).

        `queue`: a queue group (one member gets each message, against credit:
        `credit` defaults to 256 for one). `ack`: at least once (each Msg is
        ack()ed or nack()ed; with auto_credit each settlement grants one credit
        back). `callback(msg)` runs on the loop (a coroutine is scheduled);
        without one, iterate the subscription. The SUB has taken effect when
        this returns (a PING/PONG round trip behind it)."""
        wire.check_pattern(pattern)
        if queue and credit is None:
            credit = 256
        sub = Subscription(self, self._new_sid(), pattern, callback, queue, ack, credit or 0,
                           ack_wait or 0, max_deliver or 0, auto_credit)
        self._subs[sub.sid] = sub
        if self._welcomed:
            self._send_entry(sub._sub_header())
            await self.ping()
            if sub.error is not None:
                raise sub.error
        return sub

    def subscribe_nowait(self, sub: Subscription) -> None:
        self._subs[sub.sid] = sub
        if self._welcomed:
            self._send_entry(sub._sub_header())

    async def unsubscribe(self, sub: Subscription) -> None:
        if sub.closed:
            return
        sub.closed = True
        self._subs.pop(sub.sid, None)
        if self._welcomed:
            self._send_settle(_packb({H_VERSION: VERSION, H_OP: UNSUB, H_SID: sub.sid}))
        if sub._pending is not None:
            sub._pending.put_nowait(None)

    async def ping(self, timeout=5.0) -> None:
        """A round trip through everything queued before it: when it returns,
        the broker has taken what went before (e.g. a SUB is in effect, or
        refused). Disconnected when the session ends first."""
        if self._closed:
            raise ConnectionError("client closed")
        if not self._welcomed:
            await asyncio.wait_for(self._welcome_event.wait(), timeout)
        fut = self._loop.create_future()
        self._queue_ping(fut)
        await asyncio.wait_for(fut, timeout)

    # ---------------------------------------------------------------- requests

    async def request(self, topic: str, data=b"", *, timeout=5.0, headers=None,
                      traceparent=None) -> Msg:
        """Publishes with a reply_to and waits for the answer: a Msg, or
        NoResponders (nobody subscribes), RequestTimeout (none within
        `timeout` s; also the deadline the responders see), RequestFailed (the
        responder failed and said why), another PlexusError."""
        if self._closing:
            raise ConnectionError("client closed")
        if not self._welcomed:
            await asyncio.wait_for(self._welcome_event.wait(), timeout)
        self._next_request += 1
        rid = self._next_request
        reply_to = self._inbox_prefix + str(rid)
        fut = self._loop.create_future()
        self._requests[rid] = fut
        dl = time.time_ns() + int(timeout * 1e9)
        self._send_entry(self._pub_header(topic, reply_to, headers, dl, traceparent, None, 0),
                         encode(data))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise errors.RequestTimeout(text=f"no reply to {topic} within {timeout} s") from None
        finally:
            self._requests.pop(rid, None)

    def _on_reply(self, msg: Msg) -> None:
        failure = msg.headers.get(wire.FAILURE_HEADER) if msg.headers else None
        if failure:
            self._complete(msg.topic, RequestFailed(
                errors.FAILED, msg.headers.get(wire.FAILURE_CAUSE_HEADER, ""), failure,
                msg.headers.get(wire.FAILURE_FROM_HEADER, "")))
        else:
            self._complete(msg.topic, msg)

    def _complete(self, inbox: str, outcome) -> None:
        try:
            rid = int(inbox[len(self._inbox_prefix):])
        except ValueError:
            return
        fut = self._requests.pop(rid, None)
        if fut is None or fut.done():
            return  # late, after a timeout
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


__all__ = ["Client", "Msg", "Subscription", "encode", "decode", "PlexusError"]
