"""sha256 digests: of a file, of bytes or text, and of a JSON-able value (cache keys).
The one place orch hashes anything with sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def sha256_bytes(data: bytes | str) -> str:
    """The hex sha256 of ``data`` (text is hashed as UTF-8)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def sha256_file(path: Path) -> str:
    """The hex sha256 of the file's content, read in blocks. Raises OSError if unreadable."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_or_none(path: Path) -> str | None:
    """Like :func:`sha256_file`, but None for a file that cannot be read."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def json_digest(data: Any) -> str:
    """The hex sha256 of ``data`` as canonical JSON (sorted keys; other values as ``str``)."""
    return sha256_bytes(json.dumps(data, sort_keys=True, default=str))


class Hasher:
    """An incremental sha256 for digests over several parts (files, names, separators)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, data: bytes | str) -> Hasher:
        self._digest.update(data.encode() if isinstance(data, str) else data)
        return self

    def update_file(self, path: Path) -> Hasher:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                self._digest.update(block)
        return self

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def git_blob_id(data: bytes) -> bytes:
    """git's (SHA-1) object id of a blob with this content, as raw bytes: what an index entry
    holds, to tell whether a file in the worktree still matches it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).digest()
