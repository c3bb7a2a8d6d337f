"""A small GitHub REST client: exactly the three pull-request endpoints ``orch upstream open``
uses, over ``urllib`` (no dependency; any base URL, so tests run it against a local server).

    GET   /repos/{owner}/{repo}/pulls?head={fork_owner}:{branch}&state=open   an open PR already?
    POST  /repos/{owner}/{repo}/pulls         {title, head, base, body}       open one
    PATCH /repos/{owner}/{repo}/pulls/{n}     {body}                          update its body

The token comes from ``GITHUB_TOKEN``, else ``gh auth token``. ``dry_run`` prints each request
instead of sending it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import InfraError, InputError

DEFAULT_API = "https://api.github.com"
API_ENV = "ORCH_GITHUB_API"
TOKEN_ENV = "GITHUB_TOKEN"
TIMEOUT = 30.0


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    payload: dict[str, Any] | None

    def describe(self) -> str:
        data = "" if self.payload is None else " " + json.dumps(self.payload, indent=2)
        return f"{self.method} {self.url}{data}"


def find_token(env: Mapping[str, str], run: Callable[[list[str]], str | None] | None = None) -> str:
    """``$GITHUB_TOKEN``, else what ``gh auth token`` prints; a clear error without either."""
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    runner = run or _gh_token
    found = runner(["gh", "auth", "token"]) if shutil.which("gh") or run else None
    if found and found.strip():
        return found.strip()
    raise InputError("no GitHub token: set GITHUB_TOKEN or log in with `gh auth login`",
                     hint="or pass --dry-run to see the requests without sending them")


def _gh_token(command: list[str]) -> str | None:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


@dataclass
class GitHub:
    """The client; ``printed`` collects what a dry run would have sent."""

    api: str = DEFAULT_API
    token: str | None = None
    dry_run: bool = False
    printed: list[Request] = field(default_factory=list)

    def find_open_pull(self, repo: str, head: str) -> PullRequest | None:
        query = urllib.parse.urlencode({"head": head, "state": "open"})
        data = self._call("GET", f"/repos/{repo}/pulls?{query}", None)
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return _pull(data[0])
        return None

    def create_pull(self, repo: str, *, title: str, head: str, base: str, body: str) -> PullRequest | None:
        payload = {"title": title, "head": head, "base": base, "body": body}
        data = self._call("POST", f"/repos/{repo}/pulls", payload)
        return _pull(data) if isinstance(data, dict) else None

    def update_body(self, repo: str, number: int, body: str) -> None:
        self._call("PATCH", f"/repos/{repo}/pulls/{number}", {"body": body})

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        url = self.api.rstrip("/") + path
        if self.dry_run:
            self.printed.append(Request(method, url, payload))
            return None
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                text = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            raise _http_error(method, path, error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise InfraError(f"GitHub API {self.api}: {method} {path}: {reason}",
                             hint="check the network, or ORCH_GITHUB_API") from None
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            raise InfraError(f"GitHub API: {method} {path}: the answer is not JSON") from None

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
            "User-Agent": "orch-upstream",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


def _pull(data: dict[str, Any]) -> PullRequest:
    number = data.get("number")
    if not isinstance(number, int):
        raise InfraError("GitHub API: a pull request without a number in the answer")
    return PullRequest(number, str(data.get("html_url", "")))


def _http_error(method: str, path: str, error: urllib.error.HTTPError) -> InputError | InfraError:
    try:
        detail = json.loads(error.read().decode("utf-8", errors="replace"))
        message = str(detail.get("message", ""))
        errors = detail.get("errors") or []
        extra = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    except (ValueError, AttributeError, OSError):
        message, extra = "", ""
    text = ": ".join(x for x in (message, extra) if x) or (error.reason or "")
    text = "".join(ch for ch in str(text) if ch.isprintable())[:300]
    line = f"GitHub API: {method} {path}: HTTP {error.code}: {text}"
    if error.code in (401, 403, 404, 422):
        return InputError(line, hint="check the token's scopes, the fork branch and the base branch")
    return InfraError(line)
