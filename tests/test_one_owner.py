"""One owner per shared fact: ``.orch/`` paths and orch's ref namespaces live in layout.py,
sha256 hashing in digest.py. A new module that spells them itself fails here."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from orchestrator import digest, layout

PACKAGE = Path(layout.__file__).parent


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The module's lines outside docstrings and comments (a crude but sufficient filter)."""
    out: list[tuple[int, str]] = []
    in_doc = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        quotes = stripped.count('"""')
        if in_doc:
            in_doc = quotes % 2 == 0
            continue
        if stripped.startswith('"""'):
            in_doc = quotes == 1
            continue
        if stripped.startswith("#"):
            continue
        out.append((n, line.split("  #")[0]))
    return out


def _offenders(pattern: str, owner: str, allowed: dict[str, str] | None = None) -> list[str]:
    found = []
    regex = re.compile(pattern)
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE))
        if rel == owner:
            continue
        for n, line in _code_lines(path):
            if regex.search(line) and not (allowed and rel in allowed and allowed[rel] in line):
                found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_orch_paths_and_refs_are_spelled_only_in_layout() -> None:
    assert _offenders(r"""["'/]\.orch["'/]|Path\(["']\.orch""", "layout.py") == []
    assert _offenders(r"refs/orch|refs/heads/orch|orch-backup|orch-worktree", "layout.py") == []


def test_sha256_is_computed_only_in_digest() -> None:
    assert _offenders(r"hashlib", "digest.py") == []


def test_file_digest_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # larger than one read block
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert digest.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert digest.Hasher().update_file(path).hexdigest() == hashlib.sha256(data).hexdigest()
    assert digest.sha256_file_or_none(tmp_path / "missing") is None


def test_json_digest_ignores_key_order_and_keeps_the_old_cache_keys() -> None:
    a = {"b": [1, 2], "a": {"y": 1, "x": Path("p")}}
    b = {"a": {"x": Path("p"), "y": 1}, "b": [1, 2]}
    assert digest.json_digest(a) == digest.json_digest(b)
    # the exact encoding earlier versions used, so existing build and boot caches stay valid
    old = hashlib.sha256(json.dumps(a, sort_keys=True, default=str).encode()).hexdigest()
    assert digest.json_digest(a) == old


def test_layout_paths(tmp_path: Path) -> None:
    assert layout.state_file(tmp_path) == tmp_path / ".orch" / "state.json"
    assert layout.project_git_dir(tmp_path, "projects/seL4/") == tmp_path / ".orch/projects/projects/seL4.git"
    assert layout.namespace_for(None) == "orch"
    assert layout.namespace_for("wt") == "orch-worktree/wt"
    assert layout.patchset_branch("orch", "largepage") == "refs/heads/orch/largepage"
    assert layout.variant_backup_ref("4k", "kernel", "S") == "refs/orch/backup/variants/4k/kernel/S"
    assert not layout.is_workspace(tmp_path)
    layout.orch_dir(tmp_path).mkdir()
    assert layout.is_workspace(tmp_path)
