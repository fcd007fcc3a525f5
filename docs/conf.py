"""Sphinx configuration; builds offline (no intersphinx, no remote images)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "trio_ws"
author = "trio_ws developers"
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_type_aliases = {"Message": "trio_ws.connection.Message"}
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["ref.python"]
