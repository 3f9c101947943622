"""`make demo`: the end-to-end pipeline on the sandboxes (built by issue 7)."""

from __future__ import annotations

import sys

sys.stderr.write("make demo: not built yet - the pipeline lands with issue 7.\n")
sys.exit(1)
