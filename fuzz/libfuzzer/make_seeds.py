#!/usr/bin/env python3
"""Writes the seeds in seeds/<target>/. Run from fuzz/libfuzzer:
python3 make_seeds.py

Frames follow docs/PROTOCOL.md; most are its hex examples. Each conn seed is
[cfg][script length][script][peer stream] as src/lib.rs reads it. The codec
seeds are the golden vectors of zap/testdata/ (converted here) and the
messages of `zap_fuzz::seeds()` (all, all_default, tree: encoded by the
derive, kept as files).
"""

import glob
import os
import re
import struct

PREFACE = b"ZAP-RPC\x01"


def frame(kind, flags, stream, payload=b""):
    return struct.pack("<IBBI", len(payload), kind, flags, stream) + payload


def md(*entries):
    body = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<I", len(v)) + v for k, v in entries
    )
    return struct.pack("<I", len(body)) + body


def settings_payload(pairs):
    return b"".join(struct.pack("<HI", i, v) for i, v in pairs)


DEFAULT_SETTINGS = [
    (1, 16842752),
    (2, 1024),
    (3, 1 << 20),
    (4, 16 << 20),
    (5, 16 << 10),
    (6, 16 << 20),
]
SMALL_SETTINGS = [(1, 16384), (2, 2), (3, 200), (4, 600), (5, 64), (6, 1000)]


def settings(pairs=DEFAULT_SETTINGS):
    return frame(0, 0, 0, settings_payload(pairs))


def open_payload(method, timeout_us=0, metadata=md(), message=None):
    p = struct.pack("<H", len(method)) + method + struct.pack("<Q", timeout_us) + metadata
    return p + (message or b"")


def open_(stream, method=b"/echo.Echo/Say", timeout_us=0, metadata=md(), message=None, end=False):
    flags = (1 if end else 0) | (2 if message is not None else 0)
    return frame(1, flags, stream, open_payload(method, timeout_us, metadata, message))


def message(stream, data, end=False):
    return frame(2, 1 if end else 0, stream, data)


def headers(stream, metadata):
    return frame(3, 0, stream, metadata)


def close_payload(code=0, msg=b"", details=b"", hdrs=None, trailers=md(), message=None):
    p = struct.pack("<I", code) + struct.pack("<H", len(msg)) + msg
    p += struct.pack("<I", len(details)) + details
    if hdrs is not None:
        p += hdrs
    p += trailers
    return p + (message or b"")


def close(stream, code=0, msg=b"", details=b"", hdrs=None, trailers=md(), message=None):
    flags = (4 if hdrs is not None else 0) | (2 if message is not None else 0)
    return frame(4, flags, stream, close_payload(code, msg, details, hdrs, trailers, message))


def cancel(stream, code=1):
    return frame(5, 0, stream, struct.pack("<I", code))


def window(stream, inc):
    return frame(6, 0, stream, struct.pack("<I", inc))


def ping(ack=False, data=b"keepaliv"):
    return frame(7, 1 if ack else 0, 0, data)


def goaway(last, code=0, debug=b""):
    return frame(8, 0, 0, struct.pack("<IIH", last, code, len(debug)) + debug)


def end(stream):
    return frame(9, 0, stream)


USER = md((b"x-user", b"alice"))
SERVED = md((b"x-served-by", b"s1"))
RETRY = md((b"retry-bin", b"\x01"))

# The examples of docs/PROTOCOL.md §2-§4.
EXAMPLES = {
    "settings": settings(),
    "unary_request": open_(1, timeout_us=1_000_000, metadata=USER, message=b"hi", end=True),
    "message": message(1, b"abc"),
    "end": end(1),
    "headers": headers(1, SERVED),
    "unary_response": close(1, hdrs=md(), message=b"hi"),
    "error_response": close(3, code=5, msg=b"not found", trailers=RETRY),
    "cancel": cancel(1),
    "window": window(0, 65536),
    "ping": ping(),
    "ping_ack": ping(ack=True),
    "goaway": goaway(7, debug=b"bye"),
}


def write(target, name, data):
    d = os.path.join("seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def conn(cfg, script, stream):
    assert len(script) <= 255
    return bytes([cfg, len(script)]) + bytes(script) + stream


# Script ops (op, arg), see src/lib.rs.
FEED1, FEED16, FEED256, FEED_ALL = 0x00, 0x01, 0x02, 0x03
MS, SECS, NEXT_TIMER = 0x04, 0x05, 0x06
OPEN, SEND, FINISH, CANCEL, CONSUMED, GOAWAY, CLOSE_CONN, EOF, ACCESS = (
    0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
)
# Server: op 0x07 sends headers, 0x09 closes OK, 0x0A closes with an error;
# flag bits: 0x10 end / headers, 0x20 raw stream id, 0x40 message / long
# status, 0x80 final message.


def main():
    # codec: zap/testdata/*.hex without comments and spaces.
    for path in sorted(glob.glob("../../zap/testdata/*.hex")):
        text = "".join(re.sub(r"\s+", "", line.split("#", 1)[0]) for line in open(path))
        name = "testdata_" + os.path.basename(path)[: -len(".hex")]
        write("codec", name, bytes.fromhex(text))

    # frame: [limits selector][frames...]
    for name, f in EXAMPLES.items():
        write("frame", name, b"\x00" + f)
    write("frame", "all", b"\x00" + b"".join(EXAMPLES.values()))
    write("frame", "all_unlimited", b"\x03" + b"".join(EXAMPLES.values()))
    write("frame", "small_limits", b"\x01" + open_(1, metadata=USER, message=b"x" * 40))
    write("frame", "open_streaming", b"\x00" + open_(9, b"/p.S/M", metadata=md((b"a-bin", b"\x00\xff"))))

    # settings_metadata_status: [selector][payload]
    write("settings_metadata_status", "settings", b"\x00" + settings_payload(DEFAULT_SETTINGS))
    write("settings_metadata_status", "settings_empty", b"\x00")
    write("settings_metadata_status", "settings_unknown_and_repeat",
          b"\x00" + settings_payload([(99, 1), (3, 0xFFFFFFFF), (3, 5), (1, 0)]))
    md16k = 1 | (2 << 2)
    write("settings_metadata_status", "metadata_served_by", bytes([md16k]) + SERVED)
    write("settings_metadata_status", "metadata_retry_bin", bytes([md16k]) + RETRY)
    write("settings_metadata_status", "metadata_empty", bytes([md16k]) + md())
    write("settings_metadata_status", "metadata_several",
          bytes([md16k]) + md((b"x-user", b"alice"), (b"x-user", b"bob"), (b"trace-bin", b"\x00\x01\x02"),
                              (b"k.v_1-2", b" ~")))
    write("settings_metadata_status", "metadata_small_limit", bytes([1 | (1 << 2)]) + USER)
    for name, flags, p in [
        ("close_unary_response", 6, close_payload(hdrs=md(), message=b"hi")),
        ("close_error", 0, close_payload(code=5, msg=b"not found", trailers=RETRY)),
        ("close_details_headers", 4,
         close_payload(code=13, msg="\u00e9chec".encode(), details=b"\x08\x0d", hdrs=SERVED, trailers=USER)),
        ("close_message_only", 2, close_payload(message=b"")),
    ]:
        write("settings_metadata_status", name, bytes([2 | (2 << 2) | (flags << 4)]) + p)

    # quic_reader: [selector: 0x80 control stream, low bits limits][frames]
    call = [
        open_(0, timeout_us=5000, metadata=USER, message=b"hi", end=True),
        open_(0, metadata=USER) + message(0, b"m1") + message(0, b"m2", end=True),
        open_(0) + end(0),
        headers(0, SERVED) + message(0, b"r1") + close(0, trailers=RETRY),
        close(0, hdrs=md(), message=b"hi"),
        close(0, code=5, msg=b"not found"),
    ]
    for i, s in enumerate(call):
        write("quic_reader", f"call_{i}", b"\x00" + s)
    write("quic_reader", "control_client", b"\x80" + settings())
    write("quic_reader", "control_server", b"\x80" + settings(SMALL_SETTINGS) + goaway(8, debug=b"drain"))
    write("quic_reader", "control_empty_settings", b"\x80" + settings([]))

    # conn_server: the client's byte stream.
    hello = PREFACE + settings()
    unary = open_(1, timeout_us=1_000_000, metadata=USER, message=b"hi", end=True)
    streaming = open_(3, metadata=USER) + message(3, b"m1") + message(3, b"m2") + end(3)
    extras = cancel(3) + window(0, 65536) + ping() + goaway(0, debug=b"bye")
    write("conn_server", "unary_all_at_once", conn(0x00, [], hello + unary))
    write("conn_server", "byte_by_byte", conn(0x00, [FEED1, 0] * 60, hello + unary))
    write("conn_server", "unary_answered",
          conn(0x01, [FEED_ALL, 0, 0x07 | 0x00, 1, CONSUMED, 0, 0x09 | 0x10 | 0x80, 0], unary))
    write("conn_server", "streaming_answered",
          conn(0x09, [FEED16, 5, 0x07, 0, SEND, 0x20, SEND, 0x40, FEED_ALL, 0, 0x0A | 0x40 | 0x10, 5],
               streaming))
    write("conn_server", "everything", conn(0x00, [], hello + unary + streaming + extras))
    write("conn_server", "small_windows",
          conn(0x03, [FEED_ALL, 0, SEND, 0xE0, SEND, 0xE0, CONSUMED, 0, CONSUMED, 0],
               open_(1, message=b"x" * 300) + message(1, b"y" * 300)))
    write("conn_server", "timers",
          conn(0x05, [MS, 40, FEED_ALL, 0, MS, 150, NEXT_TIMER, 0, NEXT_TIMER, 0],
               open_(1, timeout_us=20_000, metadata=USER)))
    write("conn_server", "deadline", conn(0x01, [FEED_ALL, 0, MS, 5, NEXT_TIMER, 0],
                                         open_(1, timeout_us=1000, message=b"", end=True)))
    write("conn_server", "slow_writer",
          conn(0x21, [FEED_ALL, 0, 0x07, 3, SEND | 0x40, 0, SEND | 0x40, 0, ACCESS, 10, SEND | 0xC0, 0],
               streaming))
    first = open_(1)
    write("conn_server", "refused_after_goaway",
          conn(0x01, [FEED1, len(first) - 1, GOAWAY, 0, FEED_ALL, 0], first + open_(5)))
    write("conn_server", "not_zap", conn(0x00, [], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
    write("conn_server", "tls_hello", conn(0x00, [], b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
    write("conn_server", "small_peer_settings", conn(0x11, [FEED_ALL, 0, SEND, 0xE0], unary))
    write("conn_server", "eof", conn(0x01, [FEED_ALL, 0, EOF, 0], streaming))
    write("conn_server", "close_connection", conn(0x01, [FEED_ALL, 0, CLOSE_CONN, 1], streaming))

    # conn_client: the server's byte stream; the script opens calls 1, 2...
    server_hello = settings()
    answers = (
        headers(1, SERVED) + message(1, b"r1") + close(1, hdrs=None, trailers=RETRY, message=b"hi")
        + close(2, code=5, msg=b"not found") + window(0, 1000) + ping() + goaway(2, debug=b"bye")
    )
    write("conn_client", "two_calls",
          conn(0x00, [OPEN, 0, OPEN | 0x50, 0x08, FEED_ALL, 0], server_hello + answers))
    write("conn_client", "byte_by_byte",
          conn(0x00, [OPEN | 0x50, 0] + [FEED1, 0] * 50, server_hello + close(1, hdrs=md(), message=b"hi")))
    write("conn_client", "streaming",
          conn(0x08, [OPEN, 1, SEND, 0x20, SEND | 0x10, 0x40, FEED_ALL, 0, CONSUMED, 0],
               server_hello + headers(1, SERVED) + message(1, b"a") + message(1, b"b") + close(1)))
    write("conn_client", "finish_cancel",
          conn(0x01, [OPEN, 0, OPEN, 2, FINISH, 0, CANCEL, 1, FEED_ALL, 0], close(1) + close(2)))
    write("conn_client", "deadline", conn(0x01, [OPEN | 0x50, 0x40, MS, 5, NEXT_TIMER, 0], b""))
    write("conn_client", "goaway_unprocessed",
          conn(0x01, [OPEN, 0, OPEN, 0, OPEN, 0, FEED_ALL, 0], goaway(1, debug=b"drain")))
    write("conn_client", "goaway_error", conn(0x01, [OPEN, 0, FEED_ALL, 0], goaway(0, code=2, debug=b"boom")))
    write("conn_client", "small_windows",
          conn(0x13, [OPEN | 0x40, 0xE0, SEND, 0x60, SEND, 0x60, SEND, 0x60, FEED_ALL, 0, SEND, 0x60], window(1, 500) + window(0, 500)))
    write("conn_client", "timers", conn(0x04, [OPEN, 0, SECS, 1, FEED_ALL, 0, NEXT_TIMER, 0, NEXT_TIMER, 0],
                                        server_hello + ping(ack=True)))
    write("conn_client", "slow_writer",
          conn(0x20, [OPEN, 0, SEND | 0x40, 0xE0, SEND | 0x40, 0xE0, ACCESS, 200, FEED_ALL, 0], server_hello))
    write("conn_client", "headers_then_close",
          conn(0x01, [OPEN, 4, FEED_ALL, 0], headers(1, md((b"big", b"v" * 200))) + close(1, trailers=USER)))


if __name__ == "__main__":
    main()
