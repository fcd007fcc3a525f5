"""The WebSocket protocol, sans-I/O: bytes in, events out; messages in, bytes out.

Nothing here touches a socket or a Trio task. The rest of the package does
the I/O around it. This package is the only one that imports wsproto, which
stays the authority for every frame the fast branch here does not handle.
"""
