# SPDX-License-Identifier: Apache-2.0
"""A plexus wire-protocol client written from brokers/PROTOCOL.md alone.

It deliberately does only what the spec asks of a client, so a test built on
it shows whether the spec is enough to stay connected.
"""
import time
from collections import namedtuple

import msgpack
import zmq

VERSION = 1

# Header keys, in key order (PROTOCOL.md, "The header").
FIELDS = ("version", "op", "sid", "topic", "queue", "msg_id", "reply_to",
          "headers", "deadline", "traceparent", "flags", "seq", "delivery",
          "credit", "ack_mode", "ack_wait", "max_deliver", "action", "delay",
          "code", "text", "node", "heartbeat", "brokers", "max_payload", "count")
KEY = {name: key for key, name in enumerate(FIELDS)}

HELLO, WELCOME, SUB, UNSUB, PUB, MSG, ACK, NACK, CREDIT, CONFIRM = range(1, 11)
PING, PONG, ERR, BYE = 11, 12, 13, 14
PEER_HELLO, INTEREST_ADD, INTEREST_DEL, FWD, CONFIRM_RELAY = 32, 33, 34, 35, 36
OPS = set(range(1, 15)) | set(range(32, 37))
WITH_PAYLOAD = {PUB, MSG, FWD}
OP_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", SUB: "SUB", UNSUB: "UNSUB",
            PUB: "PUB", MSG: "MSG", ACK: "ACK", NACK: "NACK", CREDIT: "CREDIT",
            CONFIRM: "CONFIRM", PING: "PING", PONG: "PONG", ERR: "ERR",
            BYE: "BYE"}

# header: dict by field name (unknown keys stay ints); payload: bytes or None.
Envelope = namedtuple("Envelope", "op header payload")


class ProtocolError(Exception):
    pass


def encode_header(op, **fields):
    header = {KEY["version"]: VERSION, KEY["op"]: op}
    for name, value in fields.items():
        header[KEY[name]] = value
    return msgpack.packb(header, use_bin_type=True)


def _unpack(data):
    # Integer map keys need strict_map_key=False; str fields are UTF-8 "passed
    # through, not validated", so keep undecodable bytes instead of failing.
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape")


def _header(raw):
    if not isinstance(raw, dict):
        raise ProtocolError("not_a_map")
    header = {}
    for key, value in raw.items():
        if not isinstance(key, int) or isinstance(key, bool) or key < 0:
            raise ProtocolError(f"wrong_type at map key: {key!r}")
        header[FIELDS[key] if key < len(FIELDS) else key] = value
    if header.get("version") != VERSION:
        raise ProtocolError(f"bad_version: {header.get('version')!r}")
    if header.get("op") not in OPS:
        raise ProtocolError(f"unknown_op: {header.get('op')!r}")
    # msg_id is "bin or str": hand it out as bytes either way.
    if isinstance(header.get("msg_id"), str):
        header["msg_id"] = header["msg_id"].encode("utf-8", "surrogateescape")
    return header


def _envelope(header, payload):
    op = header["op"]
    if op in WITH_PAYLOAD and payload is None:
        raise ProtocolError(f"missing_payload on op {op}")
    if op not in WITH_PAYLOAD and payload is not None:
        raise ProtocolError(f"unexpected_payload on op {op}")
    return Envelope(op, header, payload)


def _is_map(lead):
    return 0x80 <= lead <= 0x8F or lead in (0xDE, 0xDF)


def _is_array(lead):
    return 0x90 <= lead <= 0x9F or lead in (0xDC, 0xDD)


def decode(frames):
    """One ZeroMQ message (list of frames) -> list of Envelopes."""
    first = frames[0] if frames else b""
    if not first:
        raise ProtocolError("empty first frame")
    lead = first[0]
    if _is_map(lead):
        if len(frames) > 2:
            raise ProtocolError("too_many_frames")
        return [_envelope(_header(_unpack(first)),
                          frames[1] if len(frames) == 2 else None)]
    if _is_array(lead):
        if len(frames) != 1:
            raise ProtocolError("too_many_frames after a batch")
        entries = _unpack(first)
        if not entries or len(entries) % 2:
            raise ProtocolError(f"bad_batch: {len(entries)} elements")
        out = []
        for i in range(0, len(entries), 2):
            payload = entries[i + 1]
            if payload is not None and not isinstance(payload, bytes):
                raise ProtocolError(f"bad_batch: entry {i // 2} payload type")
            try:
                out.append(_envelope(_header(entries[i]), payload))
            except ProtocolError as e:  # all or nothing, naming the entry
                raise ProtocolError(f"batch entry {i // 2}: {e}") from None
        return out
    raise ProtocolError(f"first byte 0x{lead:02x} is neither map nor array")


class Client:
    """One DEALER connection to a broker. Not thread-safe (ZeroMQ sockets)."""

    def __init__(self, ctx, endpoint, node, send_timeout=5.0):
        self.node = node
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A broker that stops reading must fail the caller, not hang it.
        self.sock.setsockopt(zmq.SNDTIMEO, int(send_timeout * 1000))
        self.sock.connect(endpoint)
        self.welcome = None
        self.pings = []     # monotonic times of PINGs received (and answered)
        self.batches = 0    # batch frames received

    def close(self):
        self.sock.close(0)

    def send(self, op, payload=None, **fields):
        frames = [encode_header(op, **fields)]
        if payload is not None:
            frames.append(payload)
        self.sock.send_multipart(frames)

    def hello(self, timeout):
        """HELLO, then wait for WELCOME; raises TimeoutError or ProtocolError."""
        self.send(HELLO, node=self.node)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for env in self.recv(left):
                if env.op == WELCOME:
                    self.welcome = env.header
                    return env.header
                raise ProtocolError(f"expected WELCOME, got {describe(env)}")
        raise TimeoutError(f"no WELCOME within {timeout} s")

    def sub(self, sid, pattern, **fields):
        self.send(SUB, sid=sid, topic=pattern, **fields)

    def pub(self, topic, payload, **fields):
        self.send(PUB, payload, topic=topic, **fields)

    def pub_batch(self, topic, payloads):
        """Several PUBs in one batch frame (at most 1024 entries, 32 KiB)."""
        entries = []
        for payload in payloads:
            entries += [{KEY["version"]: VERSION, KEY["op"]: PUB, KEY["topic"]: topic}, payload]
        self.sock.send(msgpack.packb(entries, use_bin_type=True))

    def recv(self, timeout=0.0, limit=1000):
        """Envelopes that arrive within timeout (s), up to limit.

        PINGs are answered with PONG here and not returned; ERR, BYE and
        everything else are handed to the caller."""
        out = []
        if not self.sock.poll(max(0, int(timeout * 1000))):
            return out
        while len(out) < limit:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if frames and frames[0][:1] and _is_array(frames[0][0]):
                self.batches += 1
            for env in decode(frames):
                if env.op == PING:
                    self.pings.append(time.monotonic())
                    self.send(PONG)
                else:
                    out.append(env)
        return out


def describe(env):
    name = OP_NAMES.get(env.op, str(env.op))
    if env.op in (ERR, BYE):
        return f"{name} code={env.header.get('code', 0)} text={env.header.get('text', '')!r}"
    return name
