"""Differential tests of trio_ws's protocol core against a bare wsproto connection.

``test_differential``
    receiving: the same random frame streams, cut at random read
    boundaries, to the core and to wsproto, with the intended differences
    listed as data;
``test_sending``
    sending: what the core frames, wsproto of the other side reads back.
"""
