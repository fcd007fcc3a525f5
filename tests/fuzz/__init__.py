"""The property-based fuzzing of trio_ws, split by concern.

Used by ``tests/test_fuzz.py`` (short runs, in CI) and by
``benchmarks/fuzz_long.py`` (long runs). Nothing here relies on trio_ws's own
frame or HTTP code: frames are built with ``tests/support``'s codec, and what a
correct peer must answer is computed by an independent model of RFC 6455.

``model``
    the model (:func:`~tests.fuzz.model.expect`): what a correct endpoint
    makes of a byte stream;
``verdict``
    parsing what trio_ws sent and judging it against the model;
``strategies``
    Hypothesis generators of frames and frame streams;
``handshake_cases``
    fuzzed upgrade requests and answers, with their own checks;
``raw_peers``
    the raw client and server that run a frame case against trio_ws;
``leaks``
    the fd, task and error-log harness around each example;
``properties``
    the registry of properties by name.

Six properties, each a *strategy* of cases plus a *check* that runs one case
in a fresh ``trio.run`` and raises ``AssertionError`` when trio_ws misbehaves:

``server_heads``
    fuzzed upgrade requests against a trio_ws echo server;
``server_frames``
    fuzzed frame sequences from a raw client against a trio_ws echo server;
``client_frames``
    fuzzed frame sequences from a raw server against a trio_ws client;
``client_heads``
    fuzzed handshake answers from a raw server against a trio_ws client;
``server_deflate``
    compressed, garbage and bomb messages (RFC 7692) against a trio_ws
    echo server with permessage-deflate negotiated;
``server_stream``
    the ``server_frames`` cases against a handler that echoes through the
    streaming API (``get_message_stream``/``send_message_stream``).

Every check also verifies that no unexpected exception reached the
application, that trio_ws logged nothing at ERROR level, that no file
descriptor and no Trio task is left behind and (server side) that the server
still serves a well-behaved client afterwards.
"""
