"""``orch upstream prepare``: rebase each project's series onto its upstream tip, keep it as
``orch/upstream/NAME`` in the workspace project, push it to the user's fork (never the
upstream), and write one PR title and body per project plus ``prepared.json`` for ``open``.

All rebases happen in scratch clones first; if any commit of any project conflicts, every
conflict is reported (project, commit, files) and nothing is written or pushed.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator import layout
from orchestrator.errors import EXIT_OK, EXIT_USAGE, InfraError, InputError
from orchestrator.patchset.config import Patchset
from orchestrator.ui import from_jsonable, to_jsonable
from orchestrator.upstream import prbody, testwith
from orchestrator.upstream.prbody import PreparedCommit, PreparedProject, PreparedSet
from orchestrator.upstream.series import Chain, ProjectSeries, applied_chain
from orchestrator.workspace import gitops
from orchestrator.workspace.manifest import is_sha
from orchestrator.workspace.sync import ProjectRecord, Workspace

STATE_FILE = "prepared.json"
_OUT_REF = layout.SCRATCH_OUT_REF
_TIP_REF = layout.SCRATCH_UPSTREAM_TIP_REF


@dataclass
class PrepareOptions:
    onto: dict[str | None, str] = field(default_factory=dict)  # project (None: all) -> rev
    fork: str | None = None
    order: list[str] | None = None
    push: bool = True


@dataclass(frozen=True)
class Conflict:
    project: str
    commit: str
    subject: str
    patchset: str
    patch: str
    files: list[str]
    onto: str


@dataclass
class PrepareResult:
    patchset: str
    conflicts: list[Conflict] = field(default_factory=list)
    prepared: PreparedSet | None = None
    directory: str = ""

    @property
    def ok(self) -> bool:
        return not self.conflicts

    @property
    def exit_code(self) -> int:
        """0, or 2 when a commit conflicts: the user has to rebase it (or pass ``--onto``), like
        any other state orch will not resolve for them; never 1, which means a test failed. A
        push or a rebase that fails for another reason raises :class:`InfraError` (125)."""
        return EXIT_OK if self.ok else EXIT_USAGE


def parse_onto(values: Sequence[str]) -> dict[str | None, str]:
    onto: dict[str | None, str] = {}
    for value in values:
        project, sep, rev = value.partition("=")
        if sep and project and rev:
            onto[project.strip("/")] = rev
        elif not sep:
            onto[None] = value
        else:
            raise InputError(f"--onto {value}: expected REV or PROJECT=REV")
    return onto


def state_dir(root: Path, patchset: str) -> Path:
    return layout.upstream_dir(root, patchset)


def load_prepared(root: Path, patchset: str) -> PreparedSet:
    path = state_dir(root, patchset) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return from_jsonable(PreparedSet, data)
    except FileNotFoundError:
        raise InputError(f"{path}: not prepared yet",
                         hint=f"run `orch upstream prepare --patchset {patchset}`") from None
    except (ValueError, TypeError) as error:
        raise InputError(f"{path}: unreadable ({error})") from None


def save_prepared(root: Path, prepared: PreparedSet) -> None:
    path = state_dir(root, prepared.patchset) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_jsonable(prepared), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------- order, names


def repo_id(url: str) -> str:
    """``org/repo`` from a URL or path: its last two components, without ``.git``."""
    parts = [p for p in re.split(r"[/:]", url.rstrip("/")) if p]
    if len(parts) < 2:
        raise InputError(f"{url}: cannot tell the owner/repository from this URL")
    repo = f"{parts[-2]}/{parts[-1].removesuffix('.git')}"
    if not testwith.valid_repo(repo):
        raise InputError(f"{url}: '{repo}' is not a GitHub owner/repository name")
    return repo


def role_rank(path: str, name: str) -> int:
    """0 the kernel, 1 libraries and tools, 2 applications, examples and tests."""
    lowered = f"{path} {name}".lower()
    if path == "kernel" or name.removesuffix(".git") == "seL4":
        return 0
    if any(word in lowered for word in ("example", "apps", "test", "tutorial", "manifest")):
        return 2
    return 1


def merge_order(projects: Sequence[str], names: dict[str, str], explicit: list[str] | None) -> list[str]:
    if explicit:
        unknown = [p for p in explicit if p not in projects]
        missing = [p for p in projects if p not in explicit]
        if unknown or missing:
            raise InputError(f"--order must name exactly the projects {', '.join(projects)}",
                             hint=f"unknown: {', '.join(unknown) or '-'}; "
                                  f"missing: {', '.join(missing) or '-'}")
        return list(explicit)
    return sorted(projects, key=lambda p: (role_rank(p, names.get(p) or p), projects.index(p)))


# --------------------------------------------------------------------------- forks


def _config(root: Path) -> dict[str, Any]:
    path = layout.config_file(root)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: invalid TOML: {error}") from None
    section = data.get("upstream", {})
    if not isinstance(section, dict):
        raise InputError(f"{path}: [upstream] must be a table")
    return section


def _same_url(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        url = url.rstrip("/").removesuffix(".git")
        if os.path.isabs(url) or url.startswith("file://"):
            url = os.path.realpath(url.removeprefix("file://")).removesuffix(".git")
        return url.lower()
    return norm(a) == norm(b)


def fork_url(ws: Workspace, record: ProjectRecord, template: str | None, config: dict[str, Any]) -> str:
    """The fork for one project: ``--fork`` template, else ``[upstream.remotes]`` (a remote
    name of that project, or a URL), else ``[upstream] fork`` template. Never the upstream."""
    remotes = config.get("remotes", {}) if isinstance(config.get("remotes", {}), dict) else {}
    name = record.name.removesuffix(".git").rsplit("/", 1)[-1]
    url: str | None = None
    if template:
        url = template.replace("{name}", name).replace("{path}", record.path)
    elif isinstance(remotes.get(record.path), str):
        remote = remotes[record.path]
        url = remote if ("/" in remote or ":" in remote) else gitops.try_run(
            ["remote", "get-url", remote], git_dir=ws.git_dir(record.path))
        if url is None:
            raise InputError(f"{layout.config_file(ws.root)}: [upstream.remotes] {record.path} = "
                             f"'{remote}': no such remote in that project")
    elif isinstance(config.get("fork"), str):
        url = str(config["fork"]).replace("{name}", name).replace("{path}", record.path)
    if url is None:
        raise InputError(f"{record.path}: no fork to push to",
                         hint="pass --fork git@github.com:USER/{name}.git, or set [upstream] fork in "
                              f"{layout.config_file(ws.root)} (or --no-push)")
    upstream_urls = [record.url]
    origin = gitops.try_run(["remote", "get-url", "origin"], git_dir=ws.git_dir(record.path))
    if origin:
        upstream_urls.append(origin)
    if any(_same_url(url, u) for u in upstream_urls):
        raise InputError(f"{record.path}: the fork {url} is the upstream repository itself; "
                         "orch never pushes there", hint="name your fork with --fork")
    return url


# --------------------------------------------------------------------------- rebase


def _base_branch(record: ProjectRecord) -> str:
    for candidate in (record.dest_branch, record.upstream, record.revision):
        if candidate and not is_sha(candidate):
            return candidate.removeprefix("refs/heads/")
    raise InputError(f"{record.path}: the manifest names no upstream branch (dest-branch/upstream)",
                     hint="pass --onto REV")


def _upstream_tip(ws: Workspace, series: ProjectSeries, record: ProjectRecord, onto: str | None) -> str:
    if onto is not None:
        sha = gitops.rev_parse(ws.git_dir(record.path), onto)
        if sha is None:
            raise InputError(f"--onto {onto}: no such revision in {record.path}")
        return sha
    branch = _base_branch(record)
    if branch.startswith("refs/tags/"):
        raise InputError(f"{record.path}: the manifest tracks the tag {branch}; a PR needs a branch",
                         hint="pass --onto PROJECT=REV")
    gitops.fetch(series.directory / ".git", record.url, [f"+refs/heads/{branch}:{_TIP_REF}"],
                 what=f"{record.path} ({branch})")
    return series.git("rev-parse", _TIP_REF)


def _rebase(series: ProjectSeries, onto: str) -> tuple[str | None, Conflict | None]:
    """(new tip, None) or (None, the first conflicting commit), the scratch clone left clean;
    :class:`InfraError` when git stops with no conflicting file."""
    series.git("checkout", "--quiet", "--force", "--detach", series.tip)
    try:
        series.git("rebase", "--quiet", "--onto", onto, series.base)
        return series.git("rev-parse", "HEAD"), None
    except gitops.GitError as error:
        git_dir = series.directory / ".git"
        stopped = (git_dir / "rebase-merge" / "stopped-sha").read_text().strip() \
            if (git_dir / "rebase-merge" / "stopped-sha").is_file() else \
            (gitops.try_run(["rev-parse", "REBASE_HEAD"], cwd=series.directory) or "")
        files = [f for f in series.git("diff", "--name-only", "--diff-filter=U", "-z").split("\0") if f]
        gitops.try_run(["rebase", "--abort"], cwd=series.directory)
        if not files:  # git stopped without a conflict: a hook, identity, disk, ... not the patches
            raise InfraError(f"{series.project}: git rebase onto {onto[:12]} failed without a conflict: "
                             f"{gitops.stderr_of(error)}") from None
        commit = next((c for c in series.commits if c.sha.startswith(stopped) and stopped), None)
        if commit is None:
            return None, Conflict(series.project, stopped, "?", "?", "?", files, onto)
        return None, Conflict(series.project, commit.sha, commit.subject, commit.patchset, commit.patch,
                              files, onto)


# --------------------------------------------------------------------------- prepare


def prepare(ws: Workspace, chain_patchsets: list[Patchset], options: PrepareOptions) -> PrepareResult:
    name = chain_patchsets[-1].name
    state = ws.state()
    result = PrepareResult(name, directory=str(state_dir(ws.root, name)))
    config = _config(ws.root)
    with applied_chain(ws.root, ws.tree(), chain_patchsets) as chain:
        records = {p: state.projects[p] for p in chain.series}
        order = merge_order(list(chain.series), {p: r.name for p, r in records.items()}, options.order)
        forks = {p: _fork_or_none(ws, records[p], options, config) for p in order}
        tips: dict[str, tuple[str, str]] = {}
        for project in order:
            series = chain.series[project]
            wanted = options.onto.get(project, options.onto.get(None))
            onto = _upstream_tip(ws, series, records[project], wanted)
            new_tip, conflict = _rebase(series, onto)
            if conflict is not None:
                result.conflicts.append(conflict)
            elif new_tip is not None:
                tips[project] = (new_tip, onto)
        if result.conflicts:
            return result  # nothing written: the scratch clones go away
        prepared = _describe(ws, chain, order, records, forks, tips)
        for project in order:
            _keep_branch(ws, chain.series[project], layout.upstream_branch(name), tips[project][0])
    _write_bodies(ws, chain_patchsets, prepared)
    if options.push:
        for p in prepared.projects:
            _push(ws, p)
            p.pushed = True
            save_prepared(ws.root, prepared)
    result.prepared = prepared
    return result


def _describe(ws: Workspace, chain: Chain, order: list[str], records: dict[str, ProjectRecord],
              forks: dict[str, str], tips: dict[str, tuple[str, str]]) -> PreparedSet:
    name = chain.name
    old = _previous(ws.root, name)
    prepared = PreparedSet(name, [p.name for p in chain.patchsets])
    for project in order:
        series = chain.series[project]
        head, onto = tips[project]
        shas = series.git("rev-list", "--reverse", head, "--not", onto).split()
        by_subject = {c.subject: c.patchset for c in series.commits}
        commits = []
        for sha in shas:
            subject = series.git("log", "-1", "--format=%s", sha)
            commits.append(PreparedCommit(sha, subject, by_subject.get(subject, "?")))
        rel = (layout.UPSTREAM_DIR / name / f"{project}.md").as_posix()
        fork = forks[project]
        before = old.get(project)
        prepared.projects.append(PreparedProject(
            project=project, upstream_repo=repo_id(records[project].url),
            base_branch=_base_branch_or(records[project]),
            fork_url=fork, fork_repo=repo_id(fork) if fork else repo_id(records[project].url),
            branch=layout.upstream_branch(name), head=head, onto=onto, title="", body_file=rel,
            commits=commits,
            number=before.number if before else None, url=before.url if before else None))
    return prepared


def _fork_or_none(ws: Workspace, record: ProjectRecord, options: PrepareOptions,
                  config: dict[str, Any]) -> str:
    """The fork URL; "" when none is configured and nothing is to be pushed."""
    try:
        return fork_url(ws, record, options.fork, config)
    except InputError:
        if options.push or options.fork:
            raise
        return ""


def _base_branch_or(record: ProjectRecord) -> str:
    try:
        return _base_branch(record)
    except InputError:
        return "master"


def _previous(root: Path, name: str) -> dict[str, PreparedProject]:
    """PR numbers from an earlier prepare + open: the PRs exist already, keep pointing at them."""
    try:
        return {p.project: p for p in load_prepared(root, name).projects}
    except InputError:
        return {}


def _keep_branch(ws: Workspace, series: ProjectSeries, branch: str, sha: str) -> None:
    """``refs/heads/<branch>`` in the workspace project = ``sha`` (an older, different one is
    kept under ``orch-backup/upstream/``)."""
    git_dir = ws.git_dir(series.project)
    series.git("update-ref", _OUT_REF, sha)
    ref = f"refs/heads/{branch}"
    old = gitops.rev_parse(git_dir, ref)
    if old and old != sha:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = branch.removeprefix(layout.UPSTREAM_BRANCH_PREFIX)
        gitops.run(["update-ref", f"{layout.UPSTREAM_BACKUP_PREFIX}{name}-{stamp}", old], git_dir=git_dir)
    try:
        gitops.run(["fetch", "--quiet", "--no-tags", "--", str(series.directory), f"+{_OUT_REF}:{ref}"],
                   git_dir=git_dir)
    except gitops.GitError as error:
        raise InfraError(f"{series.project}: cannot write {branch}: {gitops.stderr_of(error)}") from None


def _write_bodies(ws: Workspace, chain: list[Patchset], prepared: PreparedSet) -> None:
    state = ws.state()
    source = state.manifest.source.describe()
    if state.manifest.commit:
        source += f" @ {state.manifest.commit}"
    pins = {p: state.projects[p].sha for p in state.projects if any(p in ps.projects for ps in chain)}
    evidence = prbody.evidence(ws.root, prepared.patchset, pins, source)
    description = chain[-1].description
    for i, project in enumerate(prepared.projects):
        project.title = prbody.title_for(project.commits, description, prepared.patchset)
        body = prbody.render_body(prepared, i, description, evidence)
        prbody.write_body_file(ws.root / project.body_file, project.title, body)
    save_prepared(ws.root, prepared)


def _push(ws: Workspace, project: PreparedProject) -> None:
    ref = f"refs/heads/{project.branch}"
    try:
        gitops.run_network(["push", "--quiet", "--force", "--", project.fork_url, f"{ref}:{ref}"],
                           git_dir=ws.git_dir(project.project), what=project.project)
    except gitops.GitError as error:
        raise InfraError(f"{project.project}: push to {project.fork_url} failed: {gitops.stderr_of(error)}",
                         hint="the branch and the PR body are written; push again with "
                              "`orch upstream prepare` once the fork is reachable") from None


def result_table(result: PrepareResult) -> Table:
    if result.conflicts:
        table = Table(title=f"upstream prepare {result.patchset}: conflicts "
                            "(nothing written, nothing pushed)")
        for column in ("project", "commit", "patch", "conflicting files", "onto"):
            table.add_column(column, overflow="fold")
        for c in result.conflicts:
            table.add_row(escape(c.project), escape(f"{c.commit[:12]} {c.subject}"),
                          escape(f"{c.patchset}/{c.patch}"), escape("\n".join(c.files) or "?"), c.onto[:12])
        return table
    table = Table(title=f"upstream prepare {result.patchset} (bodies in {result.directory})")
    for column in ("#", "project", "PR to", "branch", "commits", "pushed to"):
        table.add_column(column, overflow="fold")
    assert result.prepared is not None
    for i, p in enumerate(result.prepared.projects):
        table.add_row(str(i + 1), escape(p.project), escape(f"{p.upstream_repo}:{p.base_branch}"),
                      escape(p.branch), str(len(p.commits)), escape(p.fork_url) if p.pushed else "-")
    return table
