"""The differential test of trio_ws's protocol core against bare wsproto."""
