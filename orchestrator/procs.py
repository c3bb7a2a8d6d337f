"""Processes of other (possibly killed) orch runs: whether a pid still exists. Owned here so the
patchset journals and sync's staging directories judge a leftover the same way."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """True when a process ``pid`` exists (also one of another user's, which we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
