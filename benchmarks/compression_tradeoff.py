"""What a server's permessage-deflate settings trade: ratio against memory.

For each server setting, a client with trio_ws's default offer (the one a
browser makes: ``permessage-deflate; client_max_window_bits``) negotiates
with a server using that setting (``offer()`` → ``accept()`` → ``finalize()``,
the real code), then the workloads go both ways through the real
compressors and decompressors: each message is compressed by its sender
(``compress_message``) and inflated by the receiver (``inflate_message``,
which must give it back). Reported per workload and direction: compressed
bytes over payload bytes, and the memory Python traces for the *server's*
zlib state after the traffic (a connection's idle cost between messages).
No sockets, no timing: the figures are exact and the same on every run.
Not a test: run it by hand::

    python benchmarks/compression_tradeoff.py
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Callable

from trio_ws import DeflateOptions
from trio_ws.core.deflate import PerMessageDeflate
from trio_ws.core.size_limit import MessageSizeLimit

KiB = 1024
MiB = 1024 * KiB

#: (label, server options); the client keeps DeflateOptions().
SETTINGS: list[tuple[str, DeflateOptions]] = [
    ("default (12-bit windows; websockets' too)", DeflateOptions()),
    ("server asks client_no_context_takeover", DeflateOptions(client_no_context_takeover=True)),
    ("server caps the client window at 10 bits", DeflateOptions(client_max_window_bits=10)),
    ("server caps the client window at 9 bits", DeflateOptions(client_max_window_bits=9)),
    ("11-bit windows both ways", DeflateOptions(11, 11)),
    ("server_no_context_takeover", DeflateOptions(server_no_context_takeover=True)),
]


def chat(rng: random.Random) -> list[str]:
    """200 small JSON events, 40 to 200 bytes."""
    words = ["hello", "ok", "see you", "lunch?", "on my way", "thanks", "brb", "done"]
    return [
        json.dumps({"t": "msg", "room": rng.randrange(20), "text": " ".join(rng.sample(words, 3))})
        for _ in range(200)
    ]


def api(rng: random.Random) -> list[str]:
    """20 JSON documents of about 2 KiB (as benchmarks/connections.py echoes)."""
    docs = []
    for _ in range(20):
        items = [
            {"id": rng.randrange(10**6), "user": f"user{rng.randrange(13)}", "score": i * 1.5}
            for i in range(40)
        ]
        docs.append(json.dumps({"page": rng.randrange(100), "items": items})[: 2 * KiB])
    return docs


def bulk(rng: random.Random) -> list[str]:
    """4 JSON documents of 64 KiB (as peers.py's compressed measure sends)."""
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan"]
    docs = []
    for _ in range(4):
        records: list[dict[str, object]] = []
        while len(json.dumps(records)) < 64 * KiB:
            records.extend(
                {
                    "id": rng.randrange(10**9),
                    "email": f"{rng.choice(names)}{rng.randrange(1000)}@example.org",
                    "score": round(rng.random() * 100, 3),
                    "created": 1_700_000_000 + rng.randrange(10**7),
                }
                for _ in range(32)
            )
        docs.append(json.dumps(records)[: 64 * KiB])
    return docs


WORKLOADS: dict[str, Callable[[random.Random], list[str]]] = {
    "chat, 40-200 B": chat,
    "API, 2 KiB": api,
    "bulk, 64 KiB": bulk,
}


def pair(server_options: DeflateOptions) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A client and a server extension that negotiated with each other."""
    client = PerMessageDeflate(DeflateOptions(), MessageSizeLimit(MiB), client=True)
    server = PerMessageDeflate(server_options, MessageSizeLimit(MiB), client=False)
    answer = server.accept(client.offer())
    assert answer is not None
    client.finalize("; ".join(["permessage-deflate", *filter(None, [answer])]))
    return client, server


def send(sender: PerMessageDeflate, receiver: PerMessageDeflate, messages: list[str]) -> int:
    """Compressed bytes for *messages* from *sender*, each checked on arrival."""
    total = 0
    for message in messages:
        payload = sender.compress_message(message.encode())
        assert receiver.inflate_message(payload, True, MiB) == message
        total += len(payload)
    return total


def measure(server_options: DeflateOptions, messages: list[str]) -> tuple[float, float, float]:
    """Ratio client→server, ratio server→client, server zlib KiB after the traffic."""
    raw = sum(len(m.encode()) for m in messages)
    tracemalloc.start()
    try:
        client, server = pair(server_options)
        up = down = 0
        for message in messages:  # alternate, as an echo would
            up += send(client, server, [message])
            down += send(server, client, [message])
        del client
        holding = tracemalloc.get_traced_memory()[0]
        del server  # what goes with it is what the server side held
        server_kib = (holding - tracemalloc.get_traced_memory()[0]) / KiB
    finally:
        tracemalloc.stop()
    return up / raw, down / raw, server_kib


def main() -> None:
    print("compressed/payload bytes, up (client to server) / down; server zlib after the traffic")
    print(f"{'server setting':44}" + "".join(f"{name:>16}" for name in WORKLOADS) + "  server zlib")
    for label, options in SETTINGS:
        row = f"{label:44}"
        memory = 0.0
        for make in WORKLOADS.values():
            up, down, kib = measure(options, make(random.Random(1)))
            row += f"{f'{up:.3f}/{down:.3f}':>16}"
            memory = max(memory, kib)
        print(row + f"  {memory:7.1f} KiB")


if __name__ == "__main__":
    main()
