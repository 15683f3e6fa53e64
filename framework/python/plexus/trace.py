# SPDX-License-Identifier: Apache-2.0
"""W3C trace context and the `$SYS.trace.<node>` span batch format
(framework/src/observe/span_codec.cpp; read by `plexus trace`/`plexus graph`).

    [node, [name, ...], [topic, ...], spans (bin)]

spans back to back, each: head (u8: status bits 0-3, 0x10 request, 0x20
cold start, 0x40 has a parent, 0x80 has a cause or callee), name index and
topic index (varint), trace_hi, trace_lo, span_id (u64 LE), parent_id (u64
LE, when flagged), start_ns (varint, zigzag of the difference to the span
before, the first to 0, modulo 2^64), duration_ns and delivery (varint),
msg_id (varint length, bytes), cause and callee (varint length, bytes each,
when flagged).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import msgpack

# span_status (plexus/trace.hpp)
OK, ERROR, CRASH, TIMEOUT, DOWNSTREAM, NO_RESPONDERS, REJECTED, DEAD_LETTERED = range(8)
CIRCUIT_OPEN = 8  # a request refused by the caller's open circuit breaker (C++ clients)
STATUS_NAMES = ("ok", "error", "crash", "timeout", "downstream", "no_responders",
                "rejected", "dead_lettered", "circuit_open")

_FLAG_REQUEST, _FLAG_COLD, _FLAG_PARENT, _FLAG_TEXTS = 0x10, 0x20, 0x40, 0x80
_MAX_TEXT = 1024  # span_text_max
_U64 = (1 << 64) - 1


def random_id() -> int:
    """A non-zero random 64-bit id."""
    while True:
        v = int.from_bytes(os.urandom(8), "little")
        if v:
            return v


def parse_traceparent(tp):
    """"00-<32 hex>-<16 hex>-<2 hex>" -> (trace_hi, trace_lo, parent, sampled),
    or None when it is not one (an all-zero trace id is invalid too)."""
    if not tp or len(tp) != 55 or tp[2] != "-" or tp[35] != "-" or tp[52] != "-":
        return None
    try:
        hi = int(tp[3:19], 16)
        lo = int(tp[19:35], 16)
        parent = int(tp[36:52], 16)
        flags = int(tp[53:55], 16)
    except ValueError:
        return None
    if hi == 0 and lo == 0:
        return None
    return hi, lo, parent, bool(flags & 1)


def format_traceparent(hi: int, lo: int, span: int, sampled: bool) -> str:
    return f"00-{hi:016x}{lo:016x}-{span:016x}-{'01' if sampled else '00'}"


@dataclass
class Span:
    """One span, as plexus::span (plexus/trace.hpp)."""
    trace_hi: int
    trace_lo: int
    span_id: int
    parent_id: int = 0
    name: str = ""         # "service.function"
    topic: str = ""
    msg_id: bytes = b""
    delivery: int = 0
    request: bool = False  # a request the handler made (else an invocation)
    cold_start: bool = False
    start_ns: int = 0      # Unix epoch ns
    duration_ns: int = 0
    status: int = OK
    cause: str = ""
    callee: str = ""
    node: str = ""

    @property
    def trace_id(self) -> str:
        return f"{self.trace_hi:016x}{self.trace_lo:016x}"

    @property
    def kind(self) -> str:
        return "request" if self.request else "invocation"

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status]


def _varint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _text(out: bytearray, b: bytes) -> None:
    b = b[:_MAX_TEXT]
    _varint(out, len(b))
    out += b


def _enc(s) -> bytes:
    return s if isinstance(s, bytes) else str(s).encode("utf-8", "surrogateescape")


def encode_span_batch(node: str, spans) -> bytes:
    """The `$SYS.trace.<node>` payload for `spans`."""
    names, name_at = [], {}
    topics, topic_at = [], {}
    body = bytearray()
    start = 0
    pack_q = struct.Struct("<QQQ").pack
    for s in spans:
        ni = name_at.get(s.name)
        if ni is None:
            ni = name_at[s.name] = len(names)
            names.append(s.name[:_MAX_TEXT])
        topic = s.topic[:_MAX_TEXT]
        ti = topic_at.get(topic)
        if ti is None:
            ti = topic_at[topic] = len(topics)
            topics.append(topic)
        cause, callee = _enc(s.cause), _enc(s.callee)
        texts = bool(cause or callee)
        body.append(s.status | (_FLAG_REQUEST if s.request else 0) | (_FLAG_COLD if s.cold_start else 0)
                    | (_FLAG_PARENT if s.parent_id else 0) | (_FLAG_TEXTS if texts else 0))
        _varint(body, ni)
        _varint(body, ti)
        body += pack_q(s.trace_hi, s.trace_lo, s.span_id)
        if s.parent_id:
            body += struct.pack("<Q", s.parent_id)
        delta = (s.start_ns - start) & _U64
        signed = delta - (1 << 64) if delta >> 63 else delta
        _varint(body, ((signed << 1) ^ (signed >> 63)) & _U64)
        start = s.start_ns
        _varint(body, s.duration_ns)
        _varint(body, s.delivery)
        _text(body, _enc(s.msg_id))
        if texts:
            _text(body, cause)
            _text(body, callee)
    return msgpack.packb([node, names, topics, bytes(body)], use_bin_type=True)


class _Reader:
    def __init__(self, b: bytes):
        self.b, self.i = b, 0

    def byte(self) -> int:
        if self.i >= len(self.b):
            raise ValueError("not a batch of spans")
        v = self.b[self.i]
        self.i += 1
        return v

    def varint(self) -> int:
        v, shift = 0, 0
        while shift < 64:
            c = self.byte()
            v |= (c & 0x7F) << shift
            if not c & 0x80:
                return v
            shift += 7
        raise ValueError("not a batch of spans")

    def u64(self) -> int:
        if self.i + 8 > len(self.b):
            raise ValueError("not a batch of spans")
        v = int.from_bytes(self.b[self.i:self.i + 8], "little")
        self.i += 8
        return v

    def text(self) -> bytes:
        n = self.varint()
        if n > _MAX_TEXT or self.i + n > len(self.b):
            raise ValueError("not a batch of spans")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v


def decode_spans(payload: bytes) -> list[Span]:
    """The spans of one `$SYS.trace.<node>` payload; ValueError otherwise."""
    try:
        root = msgpack.unpackb(payload, raw=False, unicode_errors="surrogateescape",
                               max_bin_len=1 << 22, max_array_len=65536, max_map_len=64)
    except Exception as e:
        raise ValueError(f"not a batch of spans: {e}") from None
    if not isinstance(root, list) or len(root) != 4 or not isinstance(root[3], bytes):
        raise ValueError("not a batch of spans")
    node, names, topics, body = root
    r = _Reader(body)
    out, start = [], 0
    while r.i < len(body):
        head = r.byte()
        status = head & 0x0F
        if status > CIRCUIT_OPEN:
            raise ValueError("not a batch of spans")
        ni, ti = r.varint(), r.varint()
        if ni >= len(names) or ti >= len(topics):
            raise ValueError("not a batch of spans")
        hi, lo, sid = r.u64(), r.u64(), r.u64()
        parent = r.u64() if head & _FLAG_PARENT else 0
        zz = r.varint()
        start = (start + ((zz >> 1) ^ -(zz & 1))) & _U64
        dur, delivery = r.varint(), r.varint()
        msg_id = r.text()
        cause = callee = ""
        if head & _FLAG_TEXTS:
            cause = r.text().decode("utf-8", "surrogateescape")
            callee = r.text().decode("utf-8", "surrogateescape")
        out.append(Span(hi, lo, sid, parent, names[ni], topics[ti], msg_id, delivery,
                        bool(head & _FLAG_REQUEST), bool(head & _FLAG_COLD), start, dur,
                        status, cause, callee, node))
    return out
