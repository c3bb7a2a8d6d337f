"""Which git transports orch lets a manifest (or a submodule) make it use, and the environment
every git process orch starts runs with.

A manifest comes from outside: its ``fetch`` URLs may try ``ext::`` (runs a command),
``fd::`` (hangs), or a URL starting with ``-`` (parsed as an option). orch allows only
``https``, ``ssh`` (also scp-like ``host:path``), ``git``, ``file`` and local paths, refuses
every other URL as bad input, and tells git the same through ``GIT_ALLOW_PROTOCOL`` and
``GIT_PROTOCOL_FROM_USER=0``. Submodules (``sync-s``) get the same list without ``file``: a
project's ``.gitmodules`` must not make orch read repositories from this machine.

``ORCH_GIT_ALLOW_PROTOCOL`` (colon- or comma-separated, e.g. ``http`` or ``http:file``) adds
transports to both lists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

MANIFEST_TRANSPORTS = ("https", "ssh", "git", "file")
SUBMODULE_TRANSPORTS = ("https", "ssh", "git")
EXTEND_ENV = "ORCH_GIT_ALLOW_PROTOCOL"
TIMEOUT_ENV = "ORCH_GIT_TIMEOUT"
DEFAULT_NETWORK_TIMEOUT = 1800.0  # seconds for one clone/fetch; a stalled transfer stops sooner
_ALIASES = {"git+ssh": "ssh", "ssh+git": "ssh"}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_TRANSPORT_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
_SCP_RE = re.compile(r"^(?:[^@/:]+@)?(\[[^]]+\]|[^/:]{2,}):")


def extra_transports(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The transports ``ORCH_GIT_ALLOW_PROTOCOL`` adds."""
    value = (env if env is not None else os.environ).get(EXTEND_ENV, "")
    return tuple(p.strip().lower() for p in re.split(r"[:,\s]+", value) if p.strip())


def allowed_transports(*, submodules: bool = False, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    base = SUBMODULE_TRANSPORTS if submodules else MANIFEST_TRANSPORTS
    return tuple(dict.fromkeys((*base, *extra_transports(env))))


def transport_of(url: str) -> str:
    """The transport git would use for ``url``: ``https``, ``ssh``, ``file``, ``ext``, ..."""
    if match := _TRANSPORT_RE.match(url):
        return match.group(1).lower()
    if match := _SCHEME_RE.match(url):
        scheme = match.group(1).lower()
        return _ALIASES.get(scheme, scheme)
    if _SCP_RE.match(url) and not url.startswith(("/", ".")):
        return "ssh"
    return "file"


def url_problem(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why orch refuses to hand ``url`` to git, or ``None`` when it is allowed."""
    if not url:
        return "empty URL"
    if url.startswith("-"):
        return "a URL may not start with '-' (git would read it as an option)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "control characters in the URL"
    transport = transport_of(url)
    allowed = allowed_transports(env=env)
    if transport not in allowed:
        return (f"transport '{transport}' is not allowed (allowed: {', '.join(allowed)}; "
                f"add more with {EXTEND_ENV})")
    return None


def git_environment(*, submodules: bool = False) -> dict[str, str]:
    """What every git process orch starts gets added to its environment."""
    return {
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": ":".join(allowed_transports(submodules=submodules)),
    }


def network_timeout() -> float:
    """Seconds one git network operation may take (``ORCH_GIT_TIMEOUT`` overrides)."""
    value = os.environ.get(TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_NETWORK_TIMEOUT
    except ValueError:
        return DEFAULT_NETWORK_TIMEOUT


# git's own stall detection for http(s): give up after a minute below 1 KiB/s
STALL_CONFIG = ("http.lowSpeedLimit=1024", "http.lowSpeedTime=60")
