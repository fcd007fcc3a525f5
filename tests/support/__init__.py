"""Shared test support, independent of trio_ws's own code.

``codec``
    the one test-side frame codec: build any frame, right or wrong, and
    split a byte stream into frames;
``handshake``
    upgrade requests, the accept token, reading and parsing HTTP heads, and
    the answer a correct server gives;
``peers``
    raw clients and servers over loopback sockets built on those two.

Nothing here imports ``trio_ws``: these modules are the oracle.
"""
