"""Where a job's reports live and how they are written and read back: ``results.json`` (the
whole :class:`~.model.JobReport`), ``summary.md`` and ``junit.xml`` under
``.orch/results/<job id>/`` (``latest`` -> the newest). Files written by orch 0.1 (schema 1:
``run``, ``run_record``, ``image`` keys) are read too, for one release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator import layout
from orchestrator.errors import InputError
from orchestrator.report.model import SCHEMA, JobReport
from orchestrator.report.render import junit, markdown
from orchestrator.ui import dumps, from_jsonable

RESULTS_JSON = "results.json"
SUMMARY_MD = "summary.md"
JUNIT_XML = "junit.xml"


def write_results(report: JobReport, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_JSON
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(report) + "\n")
    tmp.replace(path)
    return path


def write_reports(report: JobReport, directory: Path) -> dict[str, Path]:
    """results.json, summary.md and junit.xml under ``directory``."""
    written = {"results": write_results(report, directory)}
    for key, name, text in (("summary", SUMMARY_MD, markdown(report)), ("junit", JUNIT_XML, junit(report))):
        path = directory / name
        path.write_text(text)
        written[key] = path
    return written


_GUEST_V1 = {"total": "total_mib", "used": "used_mib", "free": "free_mib", "available": "available_mib"}


def _renamed(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(k, k): v for k, v in data.items()}


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 results.json (orch 0.1) in today's names: a variant's ``run`` is its ``boot``,
    ``run_record`` its ``boot_record``, the build's ``image`` its ``boot_image``, the guest's
    ``total`` its ``total_mib`` (and so on)."""
    variants = []
    for variant in data.get("variants") or []:
        variant = _renamed(variant, {"run": "boot", "run_record": "boot_record"})
        if isinstance(variant.get("build"), dict):
            variant["build"] = _renamed(variant["build"], {"image": "boot_image",
                                                           "image_sha256": "boot_image_sha256"})
        boot = variant.get("boot")
        if isinstance(boot, dict) and isinstance(boot.get("guest"), dict):
            variant["boot"] = {**boot, "guest": _renamed(boot["guest"], _GUEST_V1)}
        variants.append(variant)
    return {**data, "variants": variants, "schema": SCHEMA}


def read_results(path: Path) -> JobReport:
    """A job's record from its results directory or its results.json; one clear line if broken."""
    file = path / RESULTS_JSON if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
        if data.get("schema") == 1:
            data = upgrade_v1(data)
        if data.get("schema") != SCHEMA:
            raise InputError(f"{file}: results schema {data.get('schema')!r}, this orch reads 1 and {SCHEMA}")
        return from_jsonable(JobReport, data)
    except FileNotFoundError:
        raise InputError(f"{file}: no such results file") from None
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{file}: not a readable orch results file ({exc})") from None


# --- the results directory --------------------------------------------------------------------


def results_root(workspace: Path) -> Path:
    return layout.results_dir(workspace)


def new_job_dir(workspace: Path, job_id: str) -> Path:
    """``.orch/results/<job_id>/`` (made unique with a suffix) with ``latest`` pointing at it."""
    root = results_root(workspace)
    root.mkdir(parents=True, exist_ok=True)
    directory, n = root / job_id, 1
    while directory.exists():
        n += 1
        directory = root / f"{job_id}.{n}"
    directory.mkdir()
    layout.link_latest(directory)
    return directory


def find_job(workspace: Path, ref: str | None) -> Path:
    """A job's results directory from a path, a job id (or a unique prefix of one), or
    ``latest`` (the default)."""
    ref = ref or layout.LATEST
    as_path = Path(ref).expanduser()
    if (as_path / RESULTS_JSON).is_file() or (as_path.is_file() and as_path.name == RESULTS_JSON):
        return as_path if as_path.is_dir() else as_path.parent
    root = results_root(workspace)
    exact = root / ref
    if (exact / RESULTS_JSON).is_file():
        return exact.resolve()
    matches = sorted(p for p in root.glob(f"{ref}*") if (p / RESULTS_JSON).is_file()) if root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        hint = f"jobs are kept under {root}" if root.is_dir() else "run `orch build --patchset NAME` first"
        raise InputError(f"no results for job '{ref}'", hint=hint)
    raise InputError(f"job '{ref}' is ambiguous: " + ", ".join(p.name for p in matches[:5]))
