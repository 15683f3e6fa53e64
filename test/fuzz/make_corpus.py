#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the fuzz seed corpus: corpus/envelope/, corpus/topic/, corpus/broker/
and corpus/spans/.

msgpack is written by hand (no packages), following encode_header: a map with
integer keys, 0 = version (1), 1 = op, plus the fields the op requires (see
required() in brokers/protocol/wire/codec.cpp). Deterministic; rerun after
changing it and commit the output. Files it did not write are left alone, so
crash inputs saved next to the seeds survive.

Envelope seeds are read three ways by fuzz_envelope.cpp: the whole file as a
header frame and as a batch frame, and "msg-*" files as control bytes (frame
count, split points) followed by the frames of one message.
"""

import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent

# ops (wire.hpp)
HELLO, WELCOME, SUB, UNSUB, PUB, MSG, ACK, NACK, CREDIT, CONFIRM = range(1, 11)
PING, PONG, ERR, BYE = range(11, 15)
PAUSE, RESUME = 16, 17  # 15 is unassigned
PEER_HELLO, INTEREST_ADD, INTEREST_REMOVE, FWD, CONFIRM_RELAY = range(32, 37)

# fields (wire.hpp)
(VERSION, OP, SID, TOPIC, QUEUE, MSG_ID, REPLY_TO, HEADERS, DEADLINE, TRACEPARENT,
 FLAGS, SEQ, DELIVERY, CREDIT_F, ACK_MODE, ACK_WAIT, MAX_DELIVER, ACTION, DELAY,
 CODE, TEXT, NODE, HEARTBEAT, BROKERS, MAX_PAYLOAD) = range(25)


# ------------------------------------------------------------------ msgpack

def uint(v):
    if v < 0x80:
        return bytes([v])
    if v <= 0xff:
        return b"\xcc" + struct.pack(">B", v)
    if v <= 0xffff:
        return b"\xcd" + struct.pack(">H", v)
    if v <= 0xffffffff:
        return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)


def uint64(v):
    """Not minimal: what a sloppy encoder might send."""
    return b"\xcf" + struct.pack(">Q", v)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    if n <= 0xff:
        return b"\xd9" + struct.pack(">B", n) + b
    if n <= 0xffff:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def str16(text):
    b = text.encode()
    return b"\xda" + struct.pack(">H", len(b)) + b


def binary(data):
    n = len(data)
    if n <= 0xff:
        return b"\xc4" + struct.pack(">B", n) + data
    if n <= 0xffff:
        return b"\xc5" + struct.pack(">H", n) + data
    return b"\xc6" + struct.pack(">I", n) + data


def map_head(n):
    if n < 16:
        return bytes([0x80 | n])
    if n <= 0xffff:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def array_head(n):
    if n < 16:
        return bytes([0x90 | n])
    if n <= 0xffff:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def mp_map(pairs):
    return map_head(len(pairs)) + b"".join(k + v for k, v in pairs)


def str_map(items):
    return map_head(len(items)) + b"".join(s(k) + s(v) for k, v in items)


def str_list(items):
    return array_head(len(items)) + b"".join(s(v) for v in items)


def header(op, *fields, version=1):
    """fields: (key, encoded value) pairs after version and op."""
    return mp_map([(uint(VERSION), uint(version)), (uint(OP), uint(op))]
                  + [(uint(k), v) for k, v in fields])


# ------------------------------------------------------------------ envelope

def valid_headers():
    """One valid header per op, with the fields encode_header would write."""
    return {
        "hello": header(HELLO, (NODE, s("client-1"))),
        "hello-flow": header(HELLO, (NODE, s("client-1")), (FLAGS, uint(1))),
        "pause": header(PAUSE, (TOPIC, s("orders.>")), (QUEUE, s("workers"))),
        "resume": header(RESUME, (TOPIC, s("orders.>")), (QUEUE, s("workers"))),
        "welcome": header(WELCOME, (NODE, s("broker-a")), (HEARTBEAT, uint(5000)),
                          (MAX_PAYLOAD, uint(1 << 20)),
                          (BROKERS, str_list(["tcp://b1:4222", "tcp://b2:4222"]))),
        "sub": header(SUB, (SID, uint(1)), (TOPIC, s("orders.*.shipped"))),
        "sub-queue": header(SUB, (SID, uint(2)), (TOPIC, s("orders.>")), (QUEUE, s("workers")),
                            (ACK_MODE, uint(1)), (ACK_WAIT, uint(30000)),
                            (MAX_DELIVER, uint(5)), (CREDIT_F, uint(100))),
        "unsub": header(UNSUB, (SID, uint(1))),
        "unsub-topic": header(UNSUB, (SID, uint(1)), (TOPIC, s("orders.>"))),
        "pub": header(PUB, (TOPIC, s("orders.eu.shipped"))),
        "pub-full": header(PUB, (TOPIC, s("orders.eu.shipped")), (MSG_ID, binary(b"m-0001")),
                           (REPLY_TO, s("_INBOX.c1.7")),
                           (HEADERS, str_map([("content-type", "application/json"),
                                              ("x-tenant", "acme"), ("x-tenant", "dup")])),
                           (DEADLINE, uint(1_700_000_000_000_000_000)),
                           (TRACEPARENT, s("00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                           "00f067aa0ba902b7-01")),
                           (FLAGS, uint(1))),
        "pub-confirm-str-msgid": header(PUB, (TOPIC, s("a.b")), (MSG_ID, s("id-as-str")),
                                        (FLAGS, uint(1))),
        "msg": header(MSG, (SID, uint(7)), (TOPIC, s("orders.eu.shipped")), (SEQ, uint(42)),
                      (DELIVERY, uint(1))),
        "ack": header(ACK, (SID, uint(7)), (SEQ, uint(42))),
        "nack": header(NACK, (SID, uint(7)), (SEQ, uint(42)), (ACTION, uint(1)),
                       (DELAY, uint(250)), (TEXT, s("busy"))),
        "credit": header(CREDIT, (SID, uint(7)), (CREDIT_F, uint(64))),
        "confirm": header(CONFIRM, (MSG_ID, binary(b"m-0001"))),
        "ping": header(PING),
        "pong": header(PONG),
        "err": header(ERR, (CODE, uint(20)), (TEXT, s("topic: bad topic (empty token)"))),
        "bye": header(BYE),
        "peer-hello": header(PEER_HELLO, (NODE, s("broker-b")),
                             (BROKERS, str_list(["tcp://b1:4222"]))),
        "interest-add": header(INTEREST_ADD, (TOPIC, s("orders.>"))),
        "interest-remove": header(INTEREST_REMOVE, (TOPIC, s("orders.*"))),
        "fwd": header(FWD, (TOPIC, s("orders.eu.shipped")), (NODE, s("broker-a")),
                      (MSG_ID, binary(b"m-0001"))),
        "confirm-relay": header(CONFIRM_RELAY, (SEQ, uint(17)), (NODE, s("broker-a"))),
    }


def msg_seed(*frames):
    """Control bytes for fuzz_envelope's message split, then the frames."""
    count = len(frames)
    body = b"".join(frames)
    cuts, at = [], 0
    for f in frames[:-1]:
        at += len(f)
        cuts.append(at)
    return bytes([count - 1]) + b"".join(struct.pack(">H", c) for c in cuts) + body


def envelope_seeds():
    seeds = {}
    headers = valid_headers()
    for name, h in headers.items():
        seeds["hdr-" + name] = h

    pub = headers["pub-full"]
    for cut in (1, 2, 5, len(pub) // 2, len(pub) - 1):
        seeds["trunc-pub-%d" % cut] = pub[:cut]
    welcome = headers["welcome"]
    seeds["trunc-welcome-in-brokers"] = welcome[:len(welcome) - 5]

    # hostile lengths and nesting
    seeds["array32-4g"] = b"\xdd\xff\xff\xff\xff"
    seeds["array16-64k"] = b"\xdc\xff\xff"
    seeds["nested-array-10000"] = b"\x91" * 10000
    seeds["str32-4g"] = b"\xdb\xff\xff\xff\xff"
    seeds["bin32-4g"] = b"\xc6\xff\xff\xff\xff"
    seeds["ext32-4g"] = b"\xc9\xff\xff\xff\xff\x00"
    seeds["map16-64k"] = b"\xde\xff\xff"
    seeds["map32-4g"] = b"\xdf\xff\xff\xff\xff"
    seeds["malformed-c1"] = b"\xc1"
    seeds["empty"] = b""
    seeds["hdr-topic-str32-4g"] = header(PUB, (TOPIC, b"\xdb\xff\xff\xff\xff"))
    seeds["hdr-unknown-ext32-4g"] = header(PING, (30, b"\xc9\xff\xff\xff\xff\x00"))
    seeds["hdr-topic-ext32-4g"] = header(PUB, (TOPIC, b"\xc9\xff\xff\xff\xff\x00"))
    seeds["hdr-headers-map32-4g"] = header(PUB, (TOPIC, s("a")),
                                           (HEADERS, b"\xdf\xff\xff\xff\xff"))
    seeds["hdr-brokers-array32-4g"] = header(PEER_HELLO, (NODE, s("b")),
                                             (BROKERS, b"\xdd\xff\xff\xff\xff"))
    seeds["hdr-map32-4g-fields"] = b"\xdf\xff\xff\xff\xff" + uint(VERSION) + uint(1)
    seeds["hdr-map16-huge"] = b"\xde\xff\xff" + uint(VERSION) + uint(1) + uint(OP) + uint(PING)
    seeds["hdr-unknown-nested-deep"] = header(PING, (31, b"\x91" * 100 + b"\xc0"))
    seeds["hdr-unknown-nested-10000"] = header(PING, (31, b"\x91" * 10000 + b"\xc0"))
    seeds["hdr-unknown-nested-map"] = header(
        PING, (30, mp_map([(s("k"), mp_map([(uint(1), str_list(["x"]))]))])))

    # unknown and odd fields
    seeds["hdr-unknown-field"] = header(PUB, (TOPIC, s("a.b")), (30, s("from a later version")))
    seeds["hdr-unknown-field-255"] = header(PING, (255, str_list(["a", "b"])), (100, uint(7)))
    seeds["hdr-key-negative"] = mp_map([(b"\xff", uint(1)), (uint(OP), uint(PING))])
    seeds["hdr-key-string"] = mp_map([(s("version"), uint(1)), (uint(OP), uint(PING))])
    seeds["hdr-duplicate-field"] = header(PUB, (TOPIC, s("a")), (TOPIC, s("b")))
    seeds["hdr-bad-version"] = header(PING, version=2)
    seeds["hdr-unknown-op"] = header(15)
    seeds["hdr-missing-op"] = mp_map([(uint(VERSION), uint(1))])
    seeds["hdr-missing-topic"] = header(PUB)
    seeds["hdr-confirm-without-msgid"] = header(PUB, (TOPIC, s("a")), (FLAGS, uint(1)))
    seeds["hdr-bad-topic"] = header(PUB, (TOPIC, s("a..b")))
    seeds["hdr-wildcard-pub"] = header(PUB, (TOPIC, s("a.*")))
    seeds["hdr-bad-pattern"] = header(SUB, (SID, uint(1)), (TOPIC, s("a.>.b")))
    seeds["hdr-bad-reply-to"] = header(PUB, (TOPIC, s("a")), (REPLY_TO, s("_INBOX.*")))
    seeds["hdr-ack-mode-2"] = header(SUB, (SID, uint(1)), (TOPIC, s("a")), (ACK_MODE, uint(2)))
    seeds["hdr-sid-u64"] = header(UNSUB, (SID, uint(1 << 40)))
    seeds["hdr-nonminimal"] = (b"\xde\x00\x04" + uint64(VERSION) + uint64(1) + uint64(OP)
                               + uint64(MSG) + uint64(SID) + uint64(3) + uint64(TOPIC)
                               + str16("x.y"))
    seeds["hdr-zero-fields"] = header(PING, (SID, uint(0)), (TOPIC, s("")),
                                      (HEADERS, map_head(0)), (BROKERS, array_head(0)))
    seeds["hdr-trailing-bytes"] = header(PING) + b"\xc0"
    seeds["hdr-headers-bin-value"] = header(PUB, (TOPIC, s("a")),
                                            (HEADERS, map_head(1) + s("k") + binary(b"v")))
    big = [("k%02d" % i, "v" * 1000) for i in range(9)]
    seeds["hdr-over-limit"] = header(PUB, (TOPIC, s("a")), (HEADERS, str_map(big)))
    # Exactly max_header_bytes (8192) with a fixstr msg_id, which re-encodes
    # as bin8: one byte longer.
    def at_limit(pad):
        items = big[:8] + [("pad", "p" * pad)]
        return header(PUB, (TOPIC, s("a")), (MSG_ID, s("m1")), (HEADERS, str_map(items)))
    pad = 0
    while len(at_limit(pad)) < 8192:
        pad += 1
    assert len(at_limit(pad)) == 8192
    seeds["hdr-at-limit-str-msgid"] = at_limit(pad)

    # messages: header frame (+ payload frame)
    seeds["msg-pub"] = msg_seed(headers["pub-full"], b'{"order":42}')
    seeds["msg-msg"] = msg_seed(headers["msg"], b"\x00\x01\x02payload")
    seeds["msg-fwd-empty-payload"] = msg_seed(headers["fwd"], b"")
    seeds["msg-ping"] = msg_seed(headers["ping"])
    seeds["msg-ack-with-payload"] = msg_seed(headers["ack"], b"x")
    seeds["msg-pub-no-payload"] = msg_seed(headers["pub"])
    seeds["msg-three-frames"] = msg_seed(headers["pub"], b"a", b"b")

    # batches: array of header, payload-or-nil pairs (batch_writer)
    def batch(*entries, head=None):
        body = b"".join(h + p for h, p in entries)
        n = 2 * len(entries)
        return (head if head is not None else b"\xdd" + struct.pack(">I", n)) + body

    three = [(headers["pub"], binary(b"hello")), (headers["ack"], b"\xc0"),
             (headers["msg"], binary(b"world"))]
    seeds["batch-3"] = batch(*three)
    seeds["batch-3-fixarray"] = batch(*three, head=array_head(6))
    seeds["batch-1-fwd"] = batch((headers["fwd"], binary(b"")))
    seeds["batch-odd-count"] = batch(*three, head=array_head(5))
    seeds["batch-count-lies"] = batch(*three, head=b"\xdd\x00\x00\x08\x00")
    seeds["batch-trailing"] = batch(*three) + b"\xc0"
    seeds["batch-pub-nil-payload"] = batch((headers["pub"], b"\xc0"))
    seeds["batch-ack-bin-payload"] = batch((headers["ack"], binary(b"x")))
    seeds["batch-bad-entry"] = batch((headers["pub"], binary(b"x")),
                                     (seeds["hdr-bad-topic"], binary(b"y")))
    seeds["batch-truncated"] = batch(*three)[:-3]
    seeds["batch-empty"] = array_head(0)
    return seeds


# ------------------------------------------------------------------ topics

def topic_seeds():
    long_ok = ".".join(["t%02d" % i for i in range(16)])          # 16 tokens
    long_bad = long_ok + ".x"                                      # 17 tokens
    bytes_256 = "a" * 127 + "." + "b" * 128                        # 256 bytes
    bytes_257 = bytes_256 + "c"
    pairs = {
        "exact": ("orders.eu.shipped", "orders.eu.shipped"),
        "star": ("orders.*.shipped", "orders.eu.shipped"),
        "star-miss": ("orders.*", "orders.eu.shipped"),
        "tail": ("orders.>", "orders.eu.shipped"),
        "tail-needs-one": ("orders.>", "orders"),
        "tail-all": (">", "a.b.c"),
        "tail-sys": (">", "$SYS.broker.b1.stats"),
        "star-dollar": ("*.x", "$x.x"),
        "sys-explicit": ("$SYS.>", "$SYS.conn.up"),
        "dlq": ("$DLQ.*", "$DLQ.orders"),
        "inbox": ("_INBOX.*.*", "_INBOX.c1.7"),
        "reserved-no-dot": ("$SYS", "_INBOX"),
        "case": ("Orders", "orders"),
        "utf8": ("caf\u00e9.*", "caf\u00e9.ordre"),
        "empty-token": ("a..b", "a..b"),
        "leading-dot": (".a", "a."),
        "partial-wild": ("a*", "b>"),
        "tail-not-last": ("a.>.b", "a.x.b"),
        "space": ("a b", "a\tb"),
        "del": ("a\x7f", "a"),
        "wild-topic": ("*", "a.*"),
        "dots": (".", ".."),
        "empty": ("", ""),
        "16-tokens": (long_ok, long_ok),
        "17-tokens": (long_bad, long_bad),
        "star-16": (".".join(["*"] * 16), long_ok),
        "256-bytes": (bytes_256, bytes_256),
        "257-bytes": (bytes_257, bytes_257),
    }
    seeds = {name: p.encode() + b"\x00" + t.encode() for name, (p, t) in pairs.items()}
    seeds["no-zero"] = b"orders.eu"
    seeds["high-bytes"] = b"\x80\xff.\xfe\x00\x80\xff.\xfe"
    return seeds


def broker_seeds():
    """Step sequences for fuzz_broker (see its header comment): a step byte
    (bits 0-1 the connection, bits 2-4 the action) and its arguments.
    Actions 5-7 build a well-formed envelope from five bytes: the op index,
    (pattern/topic index << 2) | sid - 1, options, seq/action, msg id flags."""
    def env(conn, op, b=0, c=0, d=0, e=0):
        return [20 + conn, op, b, c, d, e]
    hello0, hello1, hello2 = env(0, 0), env(1, 0), env(2, 0)
    # "a.>" in a queue group, acked, credit 7, max_deliver 3
    group_acked = lambda conn: env(conn, 1, 3 << 2, 1 | 2 | (7 << 2) | (2 << 5))
    pub_confirm = env(0, 3, 1 << 2, 0, 0, 1 | 16)  # "a.b", msg id, confirm
    nack = env(1, 5)                                 # NACK seq 1, requeue
    dlq_sub = env(0, 1, (5 << 2) | 1)                # "$DLQ.>"
    tick, long_tick, flush, disconnect1 = [8, 50], [8, 255], [16, 7], [12 + 1]
    seeds = {
        "session": hello0 + hello1 + group_acked(1) + pub_confirm + flush + tick + flush,
        "redelivery": hello0 + hello1 + hello2 + group_acked(1) + group_acked(2) + pub_confirm
                      + flush + nack + flush + long_tick * 4 + flush,
        "dead-letter": hello0 + hello1 + dlq_sub + group_acked(1) + pub_confirm + flush
                       + nack + nack + nack + long_tick + flush,
        "no-hello": env(0, 3, 4) + flush,
        "raw-garbage": [0, 5, 0xdd, 0xff, 0xff, 0xff, 0xff, 0] + [4, 5, 0x91, 0x91, 0x91, 0x91, 0x91]
                       + flush,
        "disconnect": hello0 + hello1 + group_acked(1) + pub_confirm + disconnect1 + flush + long_tick,
        "request": hello0 + env(0, 3, 4 << 2, 0, 0, 32) + flush,
    }
    return {name: bytes(steps) for name, steps in seeds.items()}


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def span_bytes(status, name, topic, trace, span_id, start_delta, duration, delivery, msg_id,
               parent=0, request=False, cold=False, cause=b"", callee=b""):
    """One span of a `$SYS.trace` batch (span_codec.cpp)."""
    texts = bool(cause or callee)
    head = status | (0x10 if request else 0) | (0x20 if cold else 0) | (0x40 if parent else 0) \
        | (0x80 if texts else 0)
    out = bytes([head]) + varint(name) + varint(topic) + struct.pack("<QQQ", trace >> 64,
                                                                      trace & (2**64 - 1), span_id)
    if parent:
        out += struct.pack("<Q", parent)
    zigzag = (start_delta << 1) if start_delta >= 0 else ((-start_delta) << 1) - 1
    out += varint(zigzag) + varint(duration) + varint(delivery) + varint(len(msg_id)) + msg_id
    if texts:
        out += varint(len(cause)) + cause + varint(len(callee)) + callee
    return out


def span_batch(node, names, topics, spans):
    return array_head(4) + s(node) + str_list(names) + str_list(topics) + binary(b"".join(spans))


def span_seeds():
    trace = 0x4bf92f3577b34da6a3ce929d0e0e4736
    chain = [
        span_bytes(0, 0, 0, trace, 0x1111, 1_764_201_600_000_000_000, 48_000, 1, b"o-1"),
        span_bytes(4, 1, 1, trace, 0x2222, 51_000, 9_000_000, 2, b"o-1/shipping.validate-address#0",
                   parent=0x1111, cold=True, cause=b"crash in shipping.send-confirmation: smtp down",
                   callee=b"shipping.send-confirmation"),
        span_bytes(5, 1, 2, trace, 0x3333, 60_000, 8_500_000, 1, b"", parent=0x2222, request=True,
                   cause=b"nobody serves loyalty.points", callee=b"loyalty.points"),
        span_bytes(2, 2, 1, trace, 0x4444, -20_000, 1_000, 3, b"", parent=0x2222,
                   cause=b"label printer jammed"),
    ]
    return {
        "chain": span_batch("node-7f3a", ["shipping.validate-address", "shipping.create-label",
                                          "shipping.send-confirmation"],
                            ["orders.shipped", "address.validated", "loyalty.points"], chain),
        "probe": span_batch("node-7f3a", [], [], []),
        "one-unnamed": span_batch("n", ["svc"], ["t"],
                                  [span_bytes(7, 0, 0, 1, 2, 5, 0, 2**32 - 1, b"\x00\x01")]),
    }


def write(dirname, seeds):
    out = HERE / "corpus" / dirname
    out.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(seeds.items()):
        (out / name).write_bytes(data)
    print("%s: %d seeds in %s" % (dirname, len(seeds), out.relative_to(HERE)))


if __name__ == "__main__":
    write("envelope", envelope_seeds())
    write("topic", topic_seeds())
    write("broker", broker_seeds())
    write("spans", span_seeds())
