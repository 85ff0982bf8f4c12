"""Adversarial tests of the HTTP service: generated hostile inputs, poisoned batches, limits, readiness.

The service test helpers (an in-process app, a small memory collection) live in ``tests/service``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "service"))
