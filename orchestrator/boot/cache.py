"""The boot cache: a boot of the same boot image (sha256), run the same way (platform,
memory, QEMU command, rules, timeouts, login script, launcher, orch version), that ended in a
pass or a fail is not repeated; its record and console are kept under ``.orch/runs/<key>/``.
Timeouts and errors are always tried again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from orchestrator import __version__, layout
from orchestrator.boot.qemu import RECORD_NAME, RunRecord, RunSpec
from orchestrator.digest import json_digest, sha256_file_or_none
from orchestrator.runtime.base import Runtime
from orchestrator.ui import from_jsonable, to_jsonable

BOOT_CACHE_VERSION = 1
CACHEABLE_VERDICTS = ("pass", "fail")


def boot_key(spec: RunSpec, boot_image_sha256: str, runtime: Runtime) -> str:
    """Same boot image, same way of booting it, same rules: the same boot."""
    data = {
        "v": BOOT_CACHE_VERSION, "image": boot_image_sha256, "platform": spec.platform,
        "memory": spec.memory, "qemu": spec.qemu, "extra": list(spec.extra_args),
        "simulate": spec.simulate.read_text(errors="replace") if spec.simulate else None,
        "rules": [sha256_file_or_none(p) for p in spec.rules],
        "timeout": spec.timeout, "boot_timeout": spec.boot_timeout, "login": to_jsonable(spec.login),
        "launcher": runtime.describe(), "orch": __version__, "fail_grace": spec.fail_grace,
    }
    return json_digest(data)


def boot_dir(root: Path, key: str) -> Path:
    """Where the boot with this key keeps its record and console."""
    return layout.boots_dir(root) / key[:16]


def remembered_boot(directory: Path, boot_image_sha256: str) -> RunRecord | None:
    """The earlier pass/fail boot recorded in ``directory`` for this image, or None."""
    try:
        record = from_jsonable(RunRecord, json.loads((directory / RECORD_NAME).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if record.verdict in CACHEABLE_VERDICTS and record.image_sha256 == boot_image_sha256:
        return record
    return None


def forget(directory: Path) -> None:
    """Drop a boot's earlier record before booting again."""
    shutil.rmtree(directory, ignore_errors=True)
