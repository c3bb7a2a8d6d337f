"""Where orch keeps things: every ``.orch/`` path of a workspace and every ref namespace orch
writes in a project's repository. Other modules ask here; none spells these names itself.

Workspace (``<root>/.orch/``)::

    state.json            what the last sync did (owned by workspace.state)
    config.toml           optional settings (``mirror = "DIR"``)
    lock                  held while a sync runs
    manifest.git/, manifest/   the manifest repository and its checkout
    manifests/<sha>/      the manifest repository's files at another revision (build --at, bisect)
    local_manifests/*.xml local manifests
    projects/<path>.git   each project's git directory
    variants/<variant>/   a variant's worktrees (src/) and build directory (build/)
    builds/<variant>/<inputs hash>/   a build's artifacts (``latest`` -> newest success)
    sel4-cache/           capDL-tool and musllibc, shared by every variant
    runs/<key>/           remembered boots (the boot cache: run.json, console.log)
    runs/<stamp>-<name>/  ``orch run``'s records when run in a workspace
    analysis/             remembered ELF / bookkeeping figures per build
    results/<job id>/     each ``orch build`` job's reports (``latest`` -> newest)
    sweeps/<sweep id>/    each ``orch sweep``: plan.json, probes.jsonl, results (``latest`` -> newest)
    upstream/<patchset>/  ``orch upstream prepare``: prepared.json and one PR body per project
                          (``<project path>.md``)
    tmp/                  scratch clones (``orch upstream``), removed when done
    bisect/<id>/          each ``orch bisect``'s bisect.json, bisect.log, steps/ (``latest`` -> newest)
    crash/                tracebacks of orch's own internal errors

Refs in a project's repository::

    refs/orch/pinned                      the SHA the last sync pinned
    refs/orch/remote/<ref>                a non-branch revision fetched by sync
    refs/orch/remote/tags/<tag>           a tag orch's fetch or clone wrote (upstream's, not the user's)
    refs/orch/backup/<stamp>              sync --force kept HEAD here
    refs/orch/backup/variants/<variant>/<project path>/<stamp>   work found in a variant tree
    refs/heads/orch/<patchset>            an applied patchset's commits (the workspace)
    refs/heads/orch-worktree/<tree>/<patchset>   the same in a variant's worktree
    refs/heads/orch-backup/<namespace>/...        a patchset branch or detached HEAD replaced
    refs/heads/orch/upstream/<patchset>   ``orch upstream prepare``'s rebased branch (also on the fork)
    refs/heads/orch-backup/upstream/<patchset>-<stamp>   an older one it replaced
"""

from __future__ import annotations

from pathlib import Path

ORCH_DIR = ".orch"
"""The directory at a workspace's root that marks it as orch's and holds all of orch's files."""

STATE_FILE = "state.json"
CONFIG_FILE = "config.toml"
SYNC_LOCK = "lock"
MANIFEST_GIT = "manifest.git"
MANIFEST_CHECKOUT = "manifest"
LOCAL_MANIFESTS = "local_manifests"
PROJECTS = "projects"
VARIANTS = "variants"
BUILDS = "builds"
SEL4_CACHE = "sel4-cache"
BOOTS = "runs"  # boot records: the boot cache and `orch run` output (name kept from 0.1)
ANALYSIS = "analysis"
RESULTS = "results"
SWEEPS = "sweeps"
CRASH = "crash"
UPSTREAM = "upstream"
TMP = "tmp"
LATEST = "latest"
MANIFESTS = "manifests"
BISECT = "bisect"

# relative to the workspace root, for code that joins them onto a root it holds
VARIANTS_DIR = Path(ORCH_DIR) / VARIANTS
BUILDS_DIR = Path(ORCH_DIR) / BUILDS
SEL4_CACHE_DIR = Path(ORCH_DIR) / SEL4_CACHE
BOOTS_DIR = Path(ORCH_DIR) / BOOTS
ANALYSIS_DIR = Path(ORCH_DIR) / ANALYSIS
RESULTS_DIR = Path(ORCH_DIR) / RESULTS
SWEEPS_DIR = Path(ORCH_DIR) / SWEEPS
CRASH_DIR = Path(ORCH_DIR) / CRASH
UPSTREAM_DIR = Path(ORCH_DIR) / UPSTREAM
TMP_DIR = Path(ORCH_DIR) / TMP

# inside a project's git directory while sync moves its checkout
CHECKOUT_JOURNAL = "orch-checkout"
SPARSE_MARKER = "orch-sparse"  # in a project's git dir: the directories it is sparse on (JSON)
# inside a project's (per-worktree) git directory while a patchset apply/revert runs
PATCHSET_JOURNAL = "orch-patchset-journal.json"

# ref namespaces
PINNED_REF = "refs/orch/pinned"
REMOTE_REF_PREFIX = "refs/orch/remote/"
SYNC_BACKUP_PREFIX = "refs/orch/backup/"
VARIANT_BACKUP_PREFIX = "refs/orch/backup/variants/"
PATCHSET_NAMESPACE = "orch"  # branch orch/<patchset>
WORKTREE_NAMESPACE = "orch-worktree"  # branch orch-worktree/<tree>/<patchset>
PATCHSET_BACKUP_PREFIX = "refs/heads/orch-backup"
UPSTREAM_BRANCH_PREFIX = "orch/upstream/"  # branch orch/upstream/<patchset>
UPSTREAM_BACKUP_PREFIX = "refs/heads/orch-backup/upstream/"
# in `orch upstream`'s scratch clones only (never in the workspace's repositories)
SCRATCH_UPSTREAM_TIP_REF = "refs/orch/upstream-tip"  # the fetched upstream branch
SCRATCH_OUT_REF = "refs/orch/upstream-out"  # the rebased series, fetched from here


def orch_dir(root: Path) -> Path:
    """``<root>/.orch``."""
    return root / ORCH_DIR


def link_latest(directory: Path) -> None:
    """Point ``latest`` beside ``directory`` at it (a relative link, replaced atomically)."""
    link = directory.parent / LATEST
    tmp = directory.parent / f".{LATEST}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(directory.name)
    tmp.replace(link)


def is_workspace(directory: Path) -> bool:
    """True when ``directory`` holds a ``.orch/`` directory."""
    return orch_dir(directory).is_dir()


def state_file(root: Path) -> Path:
    return orch_dir(root) / STATE_FILE


def config_file(root: Path) -> Path:
    return orch_dir(root) / CONFIG_FILE


def sync_lock(root: Path) -> Path:
    return orch_dir(root) / SYNC_LOCK


def manifest_git_dir(root: Path) -> Path:
    return orch_dir(root) / MANIFEST_GIT


def manifest_checkout(root: Path) -> Path:
    return orch_dir(root) / MANIFEST_CHECKOUT


def local_manifests_dir(root: Path) -> Path:
    return orch_dir(root) / LOCAL_MANIFESTS


def project_git_dir(root: Path, path: str) -> Path:
    """``.orch/projects/<path>.git``: where a project's git directory lives."""
    return orch_dir(root) / PROJECTS / f"{path.strip('/')}.git"


def variant_dir(root: Path, variant: str) -> Path:
    return root / VARIANTS_DIR / variant


def builds_dir(root: Path, variant: str) -> Path:
    return root / BUILDS_DIR / variant


def sel4_cache_dir(root: Path) -> Path:
    return root / SEL4_CACHE_DIR


def boots_dir(root: Path) -> Path:
    return root / BOOTS_DIR


def analysis_dir(root: Path) -> Path:
    return root / ANALYSIS_DIR


def results_dir(root: Path) -> Path:
    return root / RESULTS_DIR


def sweeps_dir(root: Path) -> Path:
    return root / SWEEPS_DIR


def manifest_files_dir(root: Path, commit: str) -> Path:
    """``.orch/manifests/<sha>``: the manifest repository's files at ``commit``."""
    return orch_dir(root) / MANIFESTS / commit


def bisect_dir(root: Path) -> Path:
    """``.orch/bisect``: every bisection's directory, and ``latest``."""
    return orch_dir(root) / BISECT


def crash_dir(root: Path) -> Path:
    return root / CRASH_DIR


def upstream_dir(root: Path, patchset: str) -> Path:
    """``.orch/upstream/<patchset>``: what ``orch upstream prepare`` writes for ``open``."""
    return root / UPSTREAM_DIR / patchset


def tmp_dir(root: Path) -> Path:
    """``.orch/tmp``: scratch space inside the workspace."""
    return root / TMP_DIR


def upstream_branch(patchset: str) -> str:
    """``orch/upstream/<patchset>`` (a branch name, without ``refs/heads/``)."""
    return UPSTREAM_BRANCH_PREFIX + patchset


def sync_backup_ref(stamp: str) -> str:
    return SYNC_BACKUP_PREFIX + stamp


def variant_backup_ref(variant: str, project: str, stamp: str) -> str:
    return f"{VARIANT_BACKUP_PREFIX}{variant}/{project}/{stamp}"


def remote_ref(revision: str) -> str:
    """Where sync keeps a fetched ``refs/...`` revision that is not a branch; for a tag
    (``refs/tags/<tag>``) the record that orch's fetch wrote it, i.e. it is upstream's."""
    return REMOTE_REF_PREFIX + revision.removeprefix("refs/")


def namespace_for(worktree: str | None) -> str:
    """The branch namespace patchsets use: ``orch`` in the workspace's own checkout (``worktree``
    None), ``orch-worktree/<worktree>`` in a linked git worktree of that name."""
    return PATCHSET_NAMESPACE if worktree is None else f"{WORKTREE_NAMESPACE}/{worktree}"


def patchset_branch(namespace: str, patchset: str) -> str:
    """``refs/heads/<namespace>/<patchset>``."""
    return f"refs/heads/{namespace}/{patchset}"


def patchset_backup_prefix(namespace: str) -> str:
    return f"{PATCHSET_BACKUP_PREFIX}/{namespace}"
