"""Adversarial tests (issue 14): generated inputs, never only hand-picked ones."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the shared strategies module
