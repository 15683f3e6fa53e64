# SPDX-License-Identifier: Apache-2.0
"""The plexus wire protocol, version 1 (brokers/PROTOCOL.md).

A header is a msgpack map with small integer keys; a message is either
``[header]``, ``[header][payload]`` or one batch frame, a msgpack array
``[header0, payload0, header1, payload1, ...]``; in a batch, a MSG run (op 18,
only when HELLO asked) is one header and an array of payloads for consecutive
MSGs to one subscription. Headers are handed around as
dicts keyed by the integer field numbers below (``H_TOPIC`` ...): no
translation to names on the hot path.
"""
from __future__ import annotations

import struct

import msgpack

VERSION = 1

# Header keys (PROTOCOL.md, "The header").
H_VERSION, H_OP, H_SID, H_TOPIC, H_QUEUE, H_MSG_ID, H_REPLY_TO, H_HEADERS = range(8)
H_DEADLINE, H_TRACEPARENT, H_FLAGS, H_SEQ, H_DELIVERY, H_CREDIT = range(8, 14)
H_ACK_MODE, H_ACK_WAIT, H_MAX_DELIVER, H_ACTION, H_DELAY, H_CODE, H_TEXT = range(14, 21)
H_NODE, H_HEARTBEAT, H_BROKERS, H_MAX_PAYLOAD, H_COUNT, H_PUBLISHER = range(21, 27)
H_AUTH, H_USER = 27, 28

FIELD_NAMES = ("version", "op", "sid", "topic", "queue", "msg_id", "reply_to",
               "headers", "deadline", "traceparent", "flags", "seq", "delivery",
               "credit", "ack_mode", "ack_wait", "max_deliver", "action", "delay",
               "code", "text", "node", "heartbeat", "brokers", "max_payload", "count",
               "publisher", "auth", "user")

# Ops.
HELLO, WELCOME, SUB, UNSUB, PUB, MSG, ACK, NACK, CREDIT, CONFIRM = range(1, 11)
PING, PONG, ERR, BYE = 11, 12, 13, 14
PAUSE, RESUME = 16, 17  # flow control: only to a client whose HELLO opts in
MSG_RUN = 18  # MSGs to one subscription as one batch entry: only to a client whose HELLO opts in
PEER_HELLO, INTEREST_ADD, INTEREST_DEL, FWD, CONFIRM_RELAY = 32, 33, 34, 35, 36
OPS = frozenset(range(1, 15)) | frozenset((PAUSE, RESUME, MSG_RUN)) | frozenset(range(32, 37))
WITH_PAYLOAD = frozenset((PUB, MSG, FWD))
OP_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", SUB: "SUB", UNSUB: "UNSUB", PUB: "PUB",
            MSG: "MSG", ACK: "ACK", NACK: "NACK", CREDIT: "CREDIT", CONFIRM: "CONFIRM",
            PING: "PING", PONG: "PONG", ERR: "ERR", BYE: "BYE", PAUSE: "PAUSE",
            RESUME: "RESUME", MSG_RUN: "MSG_RUN", PEER_HELLO: "PEER_HELLO",
            INTEREST_ADD: "INTEREST+", INTEREST_DEL: "INTEREST-", FWD: "FWD",
            CONFIRM_RELAY: "CONFIRM_RELAY"}

# PUB flags, CREDIT flags, NACK actions.
FLAG_CONFIRM = 1
FLAG_FLOW_CONTROL = 1  # HELLO: the client honours PAUSE/RESUME; WELCOME: the broker sends them
FLAG_MSG_RUNS = 2  # HELLO: the client reads MSG runs; WELCOME: the broker sends them
FLAG_SHARED_ID = 2
CREDIT_SET = 1
NACK_REQUEUE, NACK_DELAY, NACK_DEAD_LETTER = 0, 1, 2

# Limits the client keeps to when it writes (PROTOCOL.md, "Limits").
MAX_BATCH_ENTRIES = 1024
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_HEADERS = 32
MAX_MESSAGE_BYTES = 8 * 1024 + 1024 * 1024 + 4 * 1024 * 1024  # what ZMQ_MAXMSGSIZE allows

# User headers a failed request's answer carries (PROTOCOL.md, "System topics").
FAILURE_HEADER = "plexus-failure"
FAILURE_FROM_HEADER = "plexus-from"
FAILURE_CAUSE_HEADER = "plexus-cause"


class ProtocolError(Exception):
    """A frame from the broker that does not decode."""


def encode_header(fields: dict) -> bytes:
    """A header dict (int keys; version added) as msgpack bytes."""
    fields[H_VERSION] = VERSION
    return msgpack.packb(fields, use_bin_type=True)


def header(op: int, **named) -> bytes:
    """A header from field names: header(SUB, sid=1, topic="a.b")."""
    fields = {H_VERSION: VERSION, H_OP: op}
    for name, value in named.items():
        fields[FIELD_NAMES.index(name)] = value
    return msgpack.packb(fields, use_bin_type=True)


_BIN8 = [b"\xc4" + bytes((i,)) for i in range(256)]


def bin_prefix(n: int) -> bytes:
    """The msgpack bin header for `n` bytes."""
    if n < 0x100:
        return _BIN8[n]
    if n < 0x10000:
        return b"\xc5" + struct.pack(">H", n)
    return b"\xc6" + struct.pack(">I", n)


def array32_prefix(n: int) -> bytes:
    return b"\xdd" + struct.pack(">I", n)


NIL = b"\xc0"


def batch_frame(entries) -> bytes:
    """One batch frame from (header bytes, payload bytes or None) pairs.

    Headers are already encoded; payloads are framed as msgpack bin (nil for
    ops without one). Written as array32 as the C++ encoder does."""
    parts = [b"\xdd" + struct.pack(">I", 2 * len(entries))]
    for head, payload in entries:
        parts.append(head)
        if payload is None:
            parts.append(NIL)
        else:
            parts.append(bin_prefix(len(payload)))
            parts.append(payload)
    return b"".join(parts)


def _unpack(data):
    # Integer map keys need strict_map_key=False; strings are passed through,
    # not validated, so undecodable bytes are kept (surrogateescape).
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape",
                           max_bin_len=MAX_MESSAGE_BYTES, max_str_len=1 << 20,
                           max_array_len=2 * MAX_BATCH_ENTRIES, max_map_len=64,
                           max_ext_len=0)


# The type of each field this client reads (PROTOCOL.md, "The header"); a
# field of another type is wrong_type, as the C++ decoder says. msg_id is
# bin or str (made bytes by _check); keys it does not know are skipped.
_FIELD_TYPES = {H_VERSION: int, H_OP: int, H_SID: int, H_TOPIC: str, H_QUEUE: str,
                H_MSG_ID: bytes, H_REPLY_TO: str, H_HEADERS: dict, H_DEADLINE: int,
                H_TRACEPARENT: str, H_FLAGS: int, H_SEQ: int, H_DELIVERY: int,
                H_CREDIT: int, H_ACK_MODE: int, H_ACK_WAIT: int, H_MAX_DELIVER: int,
                H_ACTION: int, H_DELAY: int, H_CODE: int, H_TEXT: str, H_NODE: str,
                H_HEARTBEAT: int, H_BROKERS: list, H_MAX_PAYLOAD: int, H_COUNT: int,
                H_PUBLISHER: str, H_AUTH: bytes, H_USER: str}


def _wrong_type(h):
    """The name of the first field of `h` whose type is wrong, or None."""
    for key, value in h.items():
        want = _FIELD_TYPES.get(key)
        if want is None or type(value) is want:
            continue
        if key == H_MSG_ID and type(value) is str:
            continue
        return FIELD_NAMES[key]
    headers = h.get(H_HEADERS)
    if headers and not all(type(k) is str and type(v) is str for k, v in headers.items()):
        return "headers"
    brokers = h.get(H_BROKERS)
    if brokers and not all(type(b) is str for b in brokers):
        return "brokers"
    return None


def _check(h):
    if type(h) is not dict:
        raise ProtocolError("not_a_map")
    if h.get(H_VERSION) != VERSION:
        raise ProtocolError(f"bad_version: {h.get(H_VERSION)!r}")
    op = h.get(H_OP)
    if type(op) is not int or op not in OPS:
        raise ProtocolError(f"unknown_op: {op!r}")
    wrong = _wrong_type(h)
    if wrong is not None:
        raise ProtocolError(f"wrong_type: {wrong}")
    mid = h.get(H_MSG_ID)
    if mid is not None and type(mid) is str:  # "bin or str": bytes either way
        h[H_MSG_ID] = mid.encode("utf-8", "surrogateescape")
    return op


class MsgBatch:
    """A batch frame of MSGs only (checked): the headers and the payloads,
    apart, so a receiver can hand a run of them on in one step. `sid`: the
    subscription every entry is for, or None when they are for several."""

    __slots__ = ("heads", "payloads", "sid")

    def __init__(self, heads, payloads, sid=None):
        self.heads, self.payloads, self.sid = heads, payloads, sid

    def __iter__(self):
        return zip(self.heads, self.payloads)

    def __len__(self):
        return len(self.heads)


class MsgRun:
    """A batch frame that is one MSG run (checked): `count` MSGs to `sid`
    alike but for their seqs (`first`, `first + 1`, ...; all 0 when `first`
    is 0) and payloads. `h` is the run's header, kept as every message's
    (its op says MSG_RUN, its seq the first's). Iterated, it gives each
    message as a MSG of its own."""

    __slots__ = ("h", "payloads", "sid", "first")

    def __init__(self, h, payloads):
        self.h, self.payloads = h, payloads
        self.sid, self.first = h[H_SID], h.get(H_SEQ, 0)

    def __iter__(self):
        return iter(_expand_run(self.h, self.payloads))

    def __len__(self):
        return len(self.payloads)


_BYTES_ONLY = {bytes}


def _check_run(h, payloads) -> None:
    """Raises ProtocolError unless `h` (a checked header of op MSG_RUN) and
    `payloads` make a MSG run: sid and topic, and a count that the array of
    bin payloads has."""
    if H_SID not in h or H_TOPIC not in h:
        raise ProtocolError("missing_field: a MSG run needs sid and topic")
    count = h.get(H_COUNT)
    if type(payloads) is not list or not payloads:
        raise ProtocolError("missing_payload: a MSG run's payload is an array of bin")
    if count != len(payloads):
        raise ProtocolError(f"bad_batch: a MSG run of count {count!r} has {len(payloads)} payloads")
    if set(map(type, payloads)) != _BYTES_ONLY:
        raise ProtocolError("missing_payload: a MSG run's payloads are bin")


def _expand_run(h, payloads):
    """A MSG run as the (header, payload) pairs of its MSGs."""
    first = h.get(H_SEQ, 0)
    out = []
    for i, payload in enumerate(payloads):
        m = dict(h)
        m[H_OP] = MSG
        del m[H_COUNT]
        if first:
            m[H_SEQ] = first + i
        else:
            m.pop(H_SEQ, None)
        out.append((m, payload))
    return out


def _msg_run(heads, payloads):
    """The sid every entry of a batch is for when each is a MSG of this
    version with a bin payload and fields of the types the client reads
    (the common case, checked in one sweep); None for several sids; False
    when some entry is not like that (then it is checked entry by entry)."""
    # Subscripts, not get(): a missing field (KeyError) is the slow path's
    # to judge, and they cost less than a call each.
    try:
        sid = heads[0][H_SID]
        if type(sid) is not int:
            return False
        for h in heads:
            # The fields the client itself reads are typed here (headers
            # and deadline are only the handler's to read).
            if (type(h) is not dict or h[H_OP] != MSG or h[H_VERSION] != VERSION
                    or type(h[H_TOPIC]) is not str or type(h.get(H_SEQ, 0)) is not int
                    or type(h.get(H_DELIVERY, 0)) is not int
                    or H_MSG_ID in h and type(h[H_MSG_ID]) is not bytes
                    or H_TRACEPARENT in h and type(h[H_TRACEPARENT]) is not str
                    or H_REPLY_TO in h and type(h[H_REPLY_TO]) is not str):
                return False
            if h[H_SID] != sid:
                if type(h[H_SID]) is not int:
                    return False
                sid = None
    except (KeyError, TypeError, IndexError):
        return False
    if set(map(type, payloads)) != _BYTES_ONLY:
        return False
    return sid


def decode(frames):
    """One ZeroMQ message (a list of frames) -> (header, payload) pairs, an
    iterable (all or nothing: a bad entry raises before any is handed out)."""
    first = frames[0] if frames else b""
    if not first:
        raise ProtocolError("empty first frame")
    lead = first[0]
    if 0x80 <= lead <= 0x8F or lead in (0xDE, 0xDF):
        if len(frames) > 2:
            raise ProtocolError("too_many_frames")
        try:
            h = _unpack(first)
        except Exception as e:
            raise ProtocolError(f"malformed header: {e}") from None
        op = _check(h)
        if op == MSG_RUN:
            raise ProtocolError("unexpected_op: a MSG run outside a batch")
        payload = frames[1] if len(frames) == 2 else None
        if op in WITH_PAYLOAD:
            if payload is None:
                raise ProtocolError("missing_payload")
        elif payload is not None:
            raise ProtocolError("unexpected_payload")
        return [(h, payload)]
    if 0x90 <= lead <= 0x9F or lead in (0xDC, 0xDD):
        if len(frames) != 1:
            raise ProtocolError("too_many_frames after a batch")
        try:
            entries = _unpack(first)
        except Exception as e:
            raise ProtocolError(f"malformed batch: {e}") from None
        n = len(entries)
        if n == 0 or n % 2:
            raise ProtocolError(f"bad_batch: {n} elements")
        if n == 2 and type(entries[0]) is dict and entries[0].get(H_OP) == MSG_RUN:
            h, payloads = entries  # one run: the common frame of a busy subscription
            try:
                _check(h)
                _check_run(h, payloads)
            except ProtocolError as e:
                raise ProtocolError(f"batch entry 0: {e}") from None
            return MsgRun(h, payloads)
        heads, payloads = entries[0::2], entries[1::2]
        sid = _msg_run(heads, payloads)
        if sid is not False:
            return MsgBatch(heads, payloads, sid)
        out = []
        for i in range(0, n, 2):
            h = entries[i]
            payload = entries[i + 1]
            try:
                op = _check(h)
                if op == MSG_RUN:
                    _check_run(h, payload)
            except ProtocolError as e:
                raise ProtocolError(f"batch entry {i // 2}: {e}") from None
            if op == MSG_RUN:
                out.extend(_expand_run(h, payload))
                continue
            if op in WITH_PAYLOAD:
                if type(payload) is not bytes:
                    raise ProtocolError(f"batch entry {i // 2}: missing_payload")
            elif payload is not None:
                raise ProtocolError(f"batch entry {i // 2}: unexpected_payload")
            out.append((h, payload))
        return out
    raise ProtocolError(f"first byte 0x{lead:02x} is neither a map nor an array")


# ---------------------------------------------------------------- topics

def _token_ok(tok: str) -> bool:
    if not tok:
        return False
    for ch in tok.encode("utf-8", "surrogateescape"):
        if ch <= 0x20 or ch == 0x7F:
            return False
    return True


def check_topic(topic: str) -> None:
    """Raises ValueError for what the broker would refuse as a PUB topic."""
    if len(topic.encode("utf-8", "surrogateescape")) > 256:
        raise ValueError(f"topic too long: {topic[:40]!r}...")
    toks = topic.split(".")
    if len(toks) > 16:
        raise ValueError(f"bad topic {topic!r}: more than 16 tokens")
    for t in toks:
        if not _token_ok(t):
            raise ValueError(f"bad topic {topic!r}: empty token or a forbidden byte")
        if t in ("*", ">"):
            raise ValueError(f"bad topic {topic!r}: a wildcard in a topic")


def check_pattern(pattern: str) -> None:
    """Raises ValueError for what the broker would refuse as a pattern."""
    toks = pattern.split(".")
    if len(toks) > 16 or len(pattern.encode("utf-8", "surrogateescape")) > 256:
        raise ValueError(f"bad pattern {pattern!r}: too long")
    for i, t in enumerate(toks):
        if not _token_ok(t):
            raise ValueError(f"bad pattern {pattern!r}: empty token or a forbidden byte")
        if t == ">" and i != len(toks) - 1:
            raise ValueError(f"bad pattern {pattern!r}: '>' before the last token")
        if t not in ("*", ">") and ("*" in t or ">" in t):
            raise ValueError(f"bad pattern {pattern!r}: a wildcard inside a token")


def matches(pattern: str, topic: str) -> bool:
    """Whether `topic` matches `pattern` (PROTOCOL.md, "Topics")."""
    p = pattern.split(".")
    t = topic.split(".")
    if p[0] in ("*", ">") and t[0].startswith("$"):
        return False
    for i, tok in enumerate(p):
        if tok == ">":
            return len(t) > i
        if i >= len(t) or (tok != "*" and tok != t[i]):
            return False
    return len(t) == len(p)
