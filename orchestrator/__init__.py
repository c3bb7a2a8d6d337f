"""orch: patch management and build orchestration for seL4 workspaces.

The package is a library first; ``orchestrator.cli`` is a thin layer over it. The public API
(see :mod:`orchestrator.api`):

    import orchestrator as orch
    orch.sync(ws, manifest); orch.check / orch.apply / orch.revert(ws, ["largepage"])
    builds = orch.build_variants(ws, "largepage"); record = orch.boot_build(builds[0])
    outcome = orch.run_job("largepage", ws)          # the whole `orch build`

Names are imported on first use, so ``import orchestrator`` (and ``orch --version``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # functions
    "sync": "orchestrator.api",
    "check": "orchestrator.api",
    "apply": "orchestrator.api",
    "revert": "orchestrator.api",
    "build_variants": "orchestrator.api",
    "boot_build": "orchestrator.api",
    "run_job": "orchestrator.job",
    # options and results
    "JobOptions": "orchestrator.job",
    "JobOutcome": "orchestrator.job",
    "JobReport": "orchestrator.report.model",
    "VariantResult": "orchestrator.report.model",
    "SyncReport": "orchestrator.workspace.sync",
    "CheckReport": "orchestrator.patchset.apply",
    "ApplyReport": "orchestrator.patchset.apply",
    "RevertReport": "orchestrator.patchset.apply",
    "BuildResult": "orchestrator.build.builder",
    "RunRecord": "orchestrator.boot.qemu",
    "GuestMemory": "orchestrator.boot.console",
    "UI": "orchestrator.ui",
    # errors
    "OrchError": "orchestrator.errors",
    "InputError": "orchestrator.errors",
    "InfraError": "orchestrator.errors",
    "WorkspaceError": "orchestrator.errors",
}

__all__ = [  # the same names as _EXPORTS (a test checks), spelled out for linters
    "UI",
    "ApplyReport",
    "BuildResult",
    "CheckReport",
    "GuestMemory",
    "InfraError",
    "InputError",
    "JobOptions",
    "JobOutcome",
    "JobReport",
    "OrchError",
    "RevertReport",
    "RunRecord",
    "SyncReport",
    "VariantResult",
    "WorkspaceError",
    "__version__",
    "apply",
    "boot_build",
    "build_variants",
    "check",
    "revert",
    "run_job",
    "sync",
]

if TYPE_CHECKING:
    from orchestrator.api import apply, boot_build, build_variants, check, revert, sync
    from orchestrator.boot.console import GuestMemory
    from orchestrator.boot.qemu import RunRecord
    from orchestrator.build.builder import BuildResult
    from orchestrator.errors import InfraError, InputError, OrchError, WorkspaceError
    from orchestrator.job import JobOptions, JobOutcome, run_job
    from orchestrator.patchset.apply import ApplyReport, CheckReport, RevertReport
    from orchestrator.report.model import JobReport, VariantResult
    from orchestrator.ui import UI
    from orchestrator.workspace.sync import SyncReport


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
