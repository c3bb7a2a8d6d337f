"""``orch upstream open``: open the prepared PRs on GitHub in merge order, then give every
body the PR numbers of its companions in its "Test with:" line (``org/repo#N``).

PR numbers are saved in ``prepared.json`` as soon as GitHub answers, so a re-run after a
failure does not open a PR twice (and an open PR for the same fork branch is found first).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from orchestrator.errors import InputError
from orchestrator.upstream import prbody, testwith
from orchestrator.upstream.github import API_ENV, DEFAULT_API, GitHub, Request, find_token
from orchestrator.upstream.prepare import load_prepared, save_prepared

__all__ = ["API_ENV", "DEFAULT_API", "OpenResult", "open_pulls", "result_table"]


@dataclass
class OpenedPull:
    project: str
    repo: str
    number: int | None
    url: str | None
    action: str  # created | found | existing | would create


@dataclass
class OpenResult:
    patchset: str
    dry_run: bool
    pulls: list[OpenedPull] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # "org/repo#N"
    requests: list[str] = field(default_factory=list)  # the dry run's printed requests


def open_pulls(root: Path, patchset: str, *, api: str | None, dry_run: bool,
               env: Mapping[str, str]) -> OpenResult:
    prepared = load_prepared(root, patchset)
    not_pushed = [p.project for p in prepared.projects if not p.pushed]
    if not_pushed and not dry_run:
        raise InputError(f"{patchset}: not pushed to a fork yet: {', '.join(not_pushed)}",
                         hint=f"run `orch upstream prepare --patchset {patchset} --fork URL_TEMPLATE`")
    client = GitHub(api or env.get(API_ENV) or DEFAULT_API, None if dry_run else find_token(env), dry_run)
    result = OpenResult(patchset, dry_run)
    for project in prepared.projects:
        title, body = prbody.read_body_file(root / project.body_file)
        body = testwith.replace_line(body, prbody.test_with_line(prepared, project.project))
        head = f"{project.fork_repo.split('/')[0]}:{project.branch}"
        if project.number is not None:
            result.pulls.append(OpenedPull(project.project, project.upstream_repo, project.number,
                                           project.url, "existing"))
            continue
        found = client.find_open_pull(project.upstream_repo, head)
        if found is not None:
            action = "found"
        else:
            found = client.create_pull(project.upstream_repo, title=title, head=head,
                                       base=project.base_branch, body=body)
            action = "would create" if dry_run else "created"
            project.sent_body = body
        if found is not None:
            project.number, project.url = found.number, found.url
            if not dry_run:
                save_prepared(root, prepared)
        result.pulls.append(OpenedPull(project.project, project.upstream_repo, project.number,
                                       project.url, action))
    for project in prepared.projects:
        title, body = prbody.read_body_file(root / project.body_file)
        final = testwith.replace_line(body, prbody.test_with_line(prepared, project.project))
        if project.number is not None or dry_run:
            if project.sent_body != final:
                number = project.number
                if number is None:
                    result.updated.append(f"{project.upstream_repo}#<new>")
                    client.printed.append(_placeholder_patch(client, project.upstream_repo, final))
                else:
                    client.update_body(project.upstream_repo, number, final)
                    project.sent_body = final
                    save_prepared(root, prepared)
                    result.updated.append(f"{project.upstream_repo}#{number}")
            if not dry_run:
                prbody.write_body_file(root / project.body_file, title, final)
    result.requests = [r.describe() for r in client.printed]
    return result


def _placeholder_patch(client: GitHub, repo: str, body: str) -> Request:
    return Request("PATCH", f"{client.api.rstrip('/')}/repos/{repo}/pulls/<new>", {"body": body})


def result_table(result: OpenResult) -> Table:
    title = f"upstream open {result.patchset}" + (" (dry run: nothing sent)" if result.dry_run else "")
    table = Table(title=title)
    for column in ("#", "project", "pull request", "action", "body"):
        table.add_column(column, overflow="fold")
    for i, pull in enumerate(result.pulls):
        ref = f"{pull.repo}#{pull.number}" if pull.number is not None else f"{pull.repo}#<new>"
        body = "updated" if ref in result.updated else "-"
        table.add_row(str(i + 1), escape(pull.project), escape(pull.url or ref), escape(pull.action), body)
    return table
