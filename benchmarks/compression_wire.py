"""Bytes on the wire and CPU per message under each compression policy.

Frames a workload of messages the way a trio_ws client does (header, mask
key, payload) with permessage-deflate negotiated, under three policies:
compress everything (trio_ws before the sending policy existed), the
default policy (``DeflateOptions()``: nothing under ``min_size``, binary
data probed), and compression off. Counts frame bytes (what goes into
TCP) and the time spent compressing and framing. Not a test: run it by hand,

    python benchmarks/compression_wire.py [--messages 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable

from trio_ws import DeflateOptions
from trio_ws.core.deflate import PerMessageDeflate
from trio_ws.core.frames import OPCODE_BINARY, OPCODE_TEXT, encode_message
from trio_ws.core.size_limit import MessageSizeLimit

Message = str | bytes


def json_document(rng: random.Random, size: int) -> str:
    items: list[dict[str, object]] = []
    text = "[]"
    while len(text) < size:
        items.append(
            {
                "id": rng.randrange(10**6),
                "user": f"user{rng.randrange(500)}",
                "active": rng.random() < 0.5,
                "score": round(rng.random() * 100, 2),
                "tags": rng.sample(["red", "green", "blue", "admin", "beta"], 2),
            }
        )
        text = json.dumps(items)
    return text


def json_api(rng: random.Random, count: int) -> list[Message]:
    """JSON messages from 16 B to 16 KiB, sizes spread evenly on a log scale."""
    out: list[Message] = []
    for _ in range(count):
        size = int(16 * 1024 ** rng.random())
        out.append(json_document(rng, size)[:size] if size > 2 else "{}")
    return out


def chat(rng: random.Random, count: int) -> list[Message]:
    """Small JSON events, 40 to 200 bytes."""
    words = ["hello", "ok", "see you", "lunch?", "on my way", "👍", "thanks", "brb"]
    return [
        json.dumps({"t": "msg", "room": rng.randrange(20), "text": " ".join(rng.sample(words, 3))})
        for _ in range(count)
    ]


def media(rng: random.Random, count: int) -> list[Message]:
    """Binary messages that do not compress (64 KiB of random bytes)."""
    return [os.urandom(64 * 1024) for _ in range(count // 20)]


WORKLOADS: dict[str, Callable[[random.Random, int], list[Message]]] = {
    "JSON API, 16 B-16 KiB": json_api,
    "chat events, 40-200 B": chat,
    "random binary, 64 KiB": media,
}


def negotiated(options: DeflateOptions) -> PerMessageDeflate:
    deflate = PerMessageDeflate(options, MessageSizeLimit(2**30), client=True)
    deflate.finalize("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12")
    return deflate


def run(messages: list[Message], policy: str, options: DeflateOptions) -> tuple[int, float]:
    """(frame bytes, seconds) to frame *messages* under *policy*."""
    deflate = negotiated(options)
    total = 0
    start = time.perf_counter()
    for message in messages:
        text = isinstance(message, str)
        payload = message.encode() if isinstance(message, str) else message
        opcode = OPCODE_TEXT if text else OPCODE_BINARY
        compress = policy == "always" or (
            policy == "default" and deflate.should_compress(payload, text)
        )
        if compress:
            payload = (
                deflate.compress_message(payload) if text else deflate.compress_binary(payload)
            )
        header, body = encode_message(opcode, payload, rsv1=compress, mask=True)
        total += len(header) + len(body)
    return total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--min-size", type=int, help="DeflateOptions.min_size for the policy")
    args = parser.parse_args()
    options = DeflateOptions() if args.min_size is None else DeflateOptions(min_size=args.min_size)
    print(f"default policy: min_size={options.min_size}")
    print(f"{'workload':24} {'policy':22} {'frame bytes':>12} {'ratio':>6} {'µs/msg':>7}")
    for name, make in WORKLOADS.items():
        messages = make(random.Random(1), args.messages)
        raw = sum(len(m.encode() if isinstance(m, str) else m) for m in messages)
        for policy, label in [
            ("always", "compress everything"),
            ("default", "default policy"),
            ("off", "compression off"),
        ]:
            size, seconds = run(messages, policy, options)
            print(
                f"{name:24} {label:22} {size:12,} {size / raw:6.3f} "
                f"{seconds / len(messages) * 1e6:7.1f}"
            )


if __name__ == "__main__":
    main()
