"""Patchset configuration: ``patchsets/NAME/patchset.toml``, the search path, and ``requires``.

A patchset is a directory holding ``patchset.toml`` and, per project path, the project's
series of ``git format-patch`` files (``NAME/<project path>/0001-....patch``). The config
lists the projects in apply order, each with its patches in order and their sha256; the
optional ``[build]``, ``[variants]`` and ``[params]`` tables are kept as raw dicts for the build
module (``[params]`` is parsed by :mod:`orchestrator.patchset.params`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from orchestrator.digest import sha256_file
from orchestrator.errors import InputError
from orchestrator.patchset.patchfile import check_relative_path
from orchestrator.shipped import shipped_dir

CONFIG_NAME = "patchset.toml"
ENV_VAR = "ORCH_PATCHSETS"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PatchRef:
    """One patch of a project's series: its file (relative to the project's directory in the
    patchset) and the sha256 the config promises for it."""

    project: str
    file: str
    sha256: str
    path: Path  # absolute location of the file


@dataclass
class Patchset:
    name: str
    directory: Path
    description: str = ""
    requires: list[str] = field(default_factory=list)
    projects: dict[str, list[PatchRef]] = field(default_factory=dict)  # apply order
    build: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # raw [params]: orchestrator.patchset.params
    warnings: list[str] = field(default_factory=list)  # e.g. unknown keys in patchset.toml

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    def patches(self) -> list[PatchRef]:
        return [ref for refs in self.projects.values() for ref in refs]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            f"patchset name '{name}' is not valid",
            hint="start with a letter or digit, then letters, digits, '.', '_' or '-' (e.g. my-fix.v2)",
        )
    return name


LOCAL_DIR = Path("patchsets")  # ./patchsets: where `import` writes when no directory is named


def patchset_search_path(cli_dirs: Sequence[str | Path] | None, env: Mapping[str, str]) -> list[Path]:
    """``--patchsets`` directories, then ``$ORCH_PATCHSETS`` (os.pathsep list), then
    ``./patchsets`` if it exists (so what ``import`` wrote there is found), then the shipped ones."""
    dirs = [Path(d).expanduser() for d in cli_dirs or []]
    dirs += [Path(d).expanduser() for d in env.get(ENV_VAR, "").split(os.pathsep) if d]
    shipped = shipped_dir("patchsets")
    if LOCAL_DIR.is_dir() and LOCAL_DIR.resolve() != shipped.resolve():  # not in orch's own tree
        dirs.append(LOCAL_DIR)
    dirs.append(shipped)
    seen: list[Path] = []
    for d in dirs:
        if all(d.resolve() != s.resolve() for s in seen):
            seen.append(d)
    return seen


def import_target_dir(cli_dirs: Sequence[str | Path] | None, env: Mapping[str, str]) -> Path:
    """Where ``import`` writes: the first user directory, else ``./patchsets``."""
    shipped = shipped_dir("patchsets").resolve()
    user = [d for d in patchset_search_path(cli_dirs, env) if d.resolve() != shipped]
    return user[0] if user else LOCAL_DIR


def available_patchsets(search_path: Iterable[Path]) -> dict[str, Path]:
    """Every patchset name on the search path -> its directory (earlier directories win)."""
    found: dict[str, Path] = {}
    for base in search_path:
        if not base.is_dir():
            continue
        for config in sorted(base.glob(f"*/{CONFIG_NAME}")):
            found.setdefault(config.parent.name, config.parent)
    return found


def find_patchset(name: str, search_path: Sequence[Path]) -> Path:
    check_name(name)
    for base in search_path:
        if (base / name / CONFIG_NAME).is_file():
            return base / name
    known = ", ".join(sorted(available_patchsets(search_path))) or "none"
    raise InputError(
        f"unknown patchset '{name}'",
        hint=f"known: {known}; searched {os.pathsep.join(str(p) for p in search_path)}",
    )


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise InputError(f"{where}: '{key}' must be a table")
    return value


TOP_KEYS = ("description", "requires", "projects", "build", "variants", "params")
PROJECT_KEYS = ("patches",)
PATCH_KEYS = ("file", "sha256")


def unknown_keys(table: Mapping[str, Any], known: Sequence[str], where: str) -> list[str]:
    """A warning per key of ``table`` not in ``known``, with the closest known key if any."""
    warnings: list[str] = []
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        guess = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
        warnings.append(f"{where}: unknown key '{key}' ignored{guess}")
    return warnings


def _parse_projects(data: dict[str, Any], directory: Path, where: str,
                    warnings: list[str]) -> dict[str, list[PatchRef]]:
    projects: dict[str, list[PatchRef]] = {}
    for project, spec in _table(data, "projects", where).items():
        check_relative_path(project, f"{where}: [projects.\"{project}\"]")
        if not isinstance(spec, dict) or not isinstance(spec.get("patches"), list):
            raise InputError(f"{where}: [projects.\"{project}\"] needs a 'patches' list")
        warnings += unknown_keys(spec, PROJECT_KEYS, f"{where}: [projects.\"{project}\"]")
        refs: list[PatchRef] = []
        for i, entry in enumerate(spec["patches"]):
            at = f"{where}: projects.\"{project}\".patches[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise InputError(f"{at}: needs file = \"...\" and sha256 = \"...\"")
            warnings += unknown_keys(entry, PATCH_KEYS, at)
            file, digest = entry["file"], entry.get("sha256")
            if "/" in file or "\\" in file or file in (".", ".."):
                raise InputError(f"{at}: file '{file}' must be a plain file name")
            if not isinstance(digest, str) or not _SHA256.match(digest):
                raise InputError(f"{at}: sha256 must be 64 lowercase hex digits")
            refs.append(PatchRef(project, file, digest, directory / project / file))
        projects[project.strip("/")] = refs
    return projects


def parse_config(name: str, directory: Path) -> Patchset:
    path = directory / CONFIG_NAME
    where = str(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{where}: not UTF-8: byte offset {error.start} "
                         f"(0x{error.object[error.start]:02x})", hint="TOML files are UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{where}: invalid TOML: {error}") from None
    except OSError as error:
        raise InputError(f"{where}: cannot read: {error.strerror}") from None
    description = data.get("description", "")
    requires = data.get("requires", [])
    if not isinstance(description, str):
        raise InputError(f"{where}: description must be a string")
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise InputError(f"{where}: requires must be a list of patchset names")
    warnings = unknown_keys(data, TOP_KEYS, where)
    return Patchset(
        name=name,
        directory=directory,
        description=description,
        requires=[check_name(r) for r in requires],
        projects=_parse_projects(data, directory, where, warnings),
        build=_table(data, "build", where),
        variants=_table(data, "variants", where),
        params=_table(data, "params", where),
        warnings=warnings,
    )


def load_patchset(name: str, search_path: Sequence[Path]) -> Patchset:
    """The patchset ``name`` from the first search-path directory that has it."""
    return parse_config(name, find_patchset(name, search_path))


def resolve(names: Sequence[str], search_path: Sequence[Path]) -> list[Patchset]:
    """``names`` with everything they require, requirements first, each once."""
    order: list[Patchset] = []
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in done:
            return
        if name in stack:
            cycle = " -> ".join([*stack[stack.index(name):], name])
            raise InputError(f"patchset requires-cycle: {cycle}")
        patchset = load_patchset(name, search_path)
        for required in patchset.requires:
            visit(required, [*stack, name])
        done.add(name)
        order.append(patchset)

    for name in names:
        visit(name, [])
    return order


def verify_checksums(patchsets: Iterable[Patchset]) -> None:
    """Every patch file exists and matches its sha256, or one clear error."""
    for patchset in patchsets:
        for ref in patchset.patches():
            if not ref.path.is_file():
                raise InputError(f"{patchset.name}: patch file {ref.project}/{ref.file} is missing")
            actual = sha256_file(ref.path)
            if actual != ref.sha256:
                raise InputError(
                    f"{patchset.name}: checksum mismatch for {ref.project}/{ref.file} "
                    f"(config {ref.sha256[:12]}…, file {actual[:12]}…)",
                    hint=f"if you edited it on purpose, run `orch patchset refresh {patchset.name}` "
                    "after applying, or update the sha256",
                )


def config_document(patchset: Patchset) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if patchset.description:
        doc["description"] = patchset.description
    doc["requires"] = list(patchset.requires)
    doc["projects"] = {
        project: {"patches": [{"file": r.file, "sha256": r.sha256} for r in refs]}
        for project, refs in patchset.projects.items()
    }
    if patchset.build:
        doc["build"] = patchset.build
    if patchset.variants:
        doc["variants"] = patchset.variants
    if patchset.params:
        doc["params"] = patchset.params
    return doc


def write_config(patchset: Patchset) -> None:
    patchset.directory.mkdir(parents=True, exist_ok=True)
    patchset.config_path.write_text(tomli_w.dumps(config_document(patchset)), encoding="utf-8")
