"""`orch sync` honours the manifest attributes that change what a checkout contains
(``clone-depth``, ``sync-s``, ``sync-tags``) and hands git only URLs of allowed transports,
with ``--`` before them, the transport allow-list in its environment and a timeout."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import InfraError
from orchestrator.workspace import gitops, transport
from orchestrator.workspace.gitops import GitError
from tests.support.git import Upstream, git, make_upstream


def manifest(tmp_path: Path, body: str, fetch: str | None = None) -> Path:
    path = tmp_path / "m" / "default.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<manifest><remote name="up" fetch="{fetch or tmp_path / "git"}"/>'
                    f'<default remote="up" revision="master"/>{body}</manifest>')
    return path


def sync(capsys: pytest.CaptureFixture[str], ws: Path, source: Path) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    code = main(["sync", "-w", str(ws), "-m", str(source), "--json", "-q"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else {}), err


@pytest.fixture
def history(tmp_path: Path) -> Upstream:
    up = make_upstream(tmp_path / "git", "deep", {"f": "1\n"})
    for n in range(2, 6):
        up.commit({"f": f"{n}\n"}, f"commit {n}")
    return up


# --- clone-depth, sync-tags ------------------------------------------------------------------


def test_clone_depth_makes_a_shallow_clone_of_the_branch(
        tmp_path: Path, history: Upstream, capsys: pytest.CaptureFixture[str]) -> None:
    source = manifest(tmp_path, '<project name="deep" clone-depth="1"/>')
    code, _report, err = sync(capsys, tmp_path / "ws", source)
    assert code == 0, err
    checkout = tmp_path / "ws" / "deep"
    assert git(checkout, "rev-parse", "--is-shallow-repository") == "true"
    assert git(checkout, "rev-list", "--count", "HEAD") == "1"
    assert git(checkout, "rev-parse", "HEAD") == history.head()
    state = json.loads((tmp_path / "ws/.orch/state.json").read_text())
    assert state["projects"]["deep"]["clone_depth"] == 1


def test_clone_depth_with_a_pin_below_the_tip_fetches_just_that_commit(
        tmp_path: Path, history: Upstream, capsys: pytest.CaptureFixture[str]) -> None:
    pin = history.commits[2]
    body = f'<project name="deep" revision="{pin}" upstream="master" clone-depth="2"/>'
    code, _report, err = sync(capsys, tmp_path / "ws", manifest(tmp_path, body))
    assert code == 0, err
    checkout = tmp_path / "ws" / "deep"
    assert git(checkout, "rev-parse", "HEAD") == pin
    assert git(checkout, "rev-parse", "--is-shallow-repository") == "true"
    assert int(git(checkout, "rev-list", "--count", "HEAD")) <= 2


def test_without_clone_depth_the_clone_is_complete(
        tmp_path: Path, history: Upstream, capsys: pytest.CaptureFixture[str]) -> None:
    code, _report, err = sync(capsys, tmp_path / "ws", manifest(tmp_path, '<project name="deep"/>'))
    assert code == 0, err
    assert git(tmp_path / "ws/deep", "rev-parse", "--is-shallow-repository") == "false"
    assert git(tmp_path / "ws/deep", "rev-list", "--count", "HEAD") == "5"


@pytest.mark.parametrize("depth", ["0", "-3", "deep"])
def test_invalid_clone_depth_is_bad_input(tmp_path: Path, history: Upstream, depth: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _report, err = sync(capsys, tmp_path / "ws",
                              manifest(tmp_path, f'<project name="deep" clone-depth="{depth}"/>'))
    assert code == 2
    assert 'clone-depth' in err and 'default.xml: <project name="deep">' in err
    assert not (tmp_path / "ws/deep").exists()


def test_sync_tags_false_fetches_no_tags(tmp_path: Path, history: Upstream,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    history.tag("v1", history.commits[0])
    source = manifest(tmp_path, '<project name="deep" sync-tags="false"/>')
    code, _r, err = sync(capsys, tmp_path / "ws", source)
    assert code == 0, err
    assert git(tmp_path / "ws/deep", "tag", "--list") == ""
    code, _r, err = sync(capsys, tmp_path / "ws2", manifest(tmp_path, '<project name="deep"/>'))
    assert code == 0, err
    assert git(tmp_path / "ws2/deep", "tag", "--list") == "v1"


# --- sync-s ----------------------------------------------------------------------------------


@pytest.fixture
def with_submodule(tmp_path: Path) -> Upstream:
    lib = make_upstream(tmp_path / "git", "lib", {"lib.c": "int lib;\n"})
    outer = make_upstream(tmp_path / "git", "outer", {"main.c": "int main;\n"})
    git(outer.scratch, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.bare), "ext/lib")
    git(outer.scratch, "commit", "-q", "-m", "add lib as a submodule")
    git(outer.scratch, "push", "-q", "origin", "master")
    return outer


def test_sync_s_checks_out_submodules(tmp_path: Path, with_submodule: Upstream,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(transport.EXTEND_ENV, "file")  # the test's submodule is a local path
    code, _r, err = sync(capsys, tmp_path / "ws", manifest(tmp_path, '<project name="outer" sync-s="true"/>'))
    assert code == 0, err
    assert (tmp_path / "ws/outer/ext/lib/lib.c").read_text() == "int lib;\n"
    status = main(["status", "-w", str(tmp_path / "ws"), "--json"])
    out, _ = capsys.readouterr()
    assert status == 0, out


def test_without_sync_s_submodules_stay_empty(tmp_path: Path, with_submodule: Upstream,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _r, err = sync(capsys, tmp_path / "ws", manifest(tmp_path, '<project name="outer"/>'))
    assert code == 0, err
    assert not (tmp_path / "ws/outer/ext/lib/lib.c").exists()


def test_default_sync_s_applies_and_local_submodule_urls_are_refused_by_default(
        tmp_path: Path, with_submodule: Upstream, capsys: pytest.CaptureFixture[str]) -> None:
    source = manifest(tmp_path, '<project name="outer"/>').read_text()
    path = tmp_path / "m" / "default.xml"
    path.write_text(source.replace('revision="master"/>', 'revision="master" sync-s="true"/>'))
    code, report, _err = sync(capsys, tmp_path / "ws", path)
    assert code == 125
    (outer,) = report["projects"]
    assert "submodules failed" in outer["reason"] and "transport 'file' not allowed" in outer["reason"]
    assert not (tmp_path / "ws/outer/ext/lib/lib.c").exists()


# --- URLs and transports ---------------------------------------------------------------------


@pytest.mark.parametrize("fetch", ["-oProxyCommand=touch PWNED", "ext::sh -c touch% PWNED", "fd::0",
                                   "http://example.org/x", "foo::bar"])
def test_manifests_with_forbidden_urls_are_bad_input(tmp_path: Path, fetch: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch_cwd = tmp_path / "cwd"
    monkeypatch_cwd.mkdir()
    os.chdir(monkeypatch_cwd)
    code, _r, err = sync(capsys, tmp_path / "ws", manifest(tmp_path, '<project name="p"/>', fetch=fetch))
    assert code == 2, err
    assert 'default.xml: <remote name="up">: fetch URL' in err and "refused" in err
    assert not (tmp_path / "ws/p").exists()
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize(("url", "kind"), [
    ("https://github.com/seL4/seL4.git", "https"), ("ssh://git@host/x", "ssh"), ("git+ssh://h/x", "ssh"),
    ("git@github.com:seL4/seL4.git", "ssh"), ("git://host/x", "git"), ("file:///srv/x", "file"),
    ("/srv/git/x", "file"), ("../relative", "file"), ("ext::sh -c x", "ext"), ("fd::0", "fd"),
    ("HTTP://host/x", "http"),
])
def test_transport_of(url: str, kind: str) -> None:
    assert transport.transport_of(url) == kind


def test_the_allow_list_can_be_extended() -> None:
    assert transport.url_problem("http://example.org/x", {}) is not None
    assert transport.url_problem("http://example.org/x", {transport.EXTEND_ENV: "http"}) is None
    assert transport.url_problem("-x", {transport.EXTEND_ENV: "http"}) is not None
    assert transport.url_problem("https://example.org/x", {}) is None


def test_manifest_source_url_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sync", "-w", str(tmp_path / "ws"), "-m", "ext::sh -c touch% PWNED"])
    _out, err = capsys.readouterr()
    assert code == 2 and "transport 'ext' is not allowed" in err


def test_a_url_that_looks_like_an_option_is_never_read_as_one(tmp_path: Path) -> None:
    with pytest.raises(GitError) as exc:
        gitops.clone("--upload-pack=touch PWNED", tmp_path / "dest", what="t")
    # git took it as the repository to clone (after --), not as an option
    assert "repository '--upload-pack=touch PWNED' does not exist" in str(exc.value.stderr)
    assert not list(tmp_path.rglob("PWNED"))


def test_user_config_cannot_reenable_ext_for_orchs_git(tmp_path: Path, history: Upstream,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[protocol]\n\tallow = always\n[protocol \"ext\"]\n\tallow = always\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_PROTOCOL_FROM_USER", "1")
    marker = tmp_path / "PWNED"
    git_dir = tmp_path / "g.git"
    git(tmp_path, "init", "-q", "--bare", str(git_dir))
    with pytest.raises(InfraError) as exc:
        gitops.fetch(git_dir, f"ext::sh -c touch% {marker}", ["HEAD"], what="t")
    assert "transport 'ext' not allowed" in exc.value.message
    assert not marker.exists()


def test_a_hanging_remote_is_stopped_after_the_timeout(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(transport.TIMEOUT_ENV, "1")
    pidfile = tmp_path / "ssh.pid"
    monkeypatch.setenv("GIT_SSH_COMMAND", f"echo $$ > {pidfile}; exec sleep 60 #")
    with pytest.raises(InfraError) as exc:
        gitops.clone("ssh://example.invalid/x", tmp_path / "dest", what="hang")
    assert exc.value.exit_code == 125
    assert "within 1 s" in exc.value.message
    pid = int(pidfile.read_text())
    for _ in range(100):  # SIGKILL is delivered asynchronously
        if not alive(pid):
            break
        time.sleep(0.05)
    assert not alive(pid), "the ssh stand-in git started was killed with it"


def alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet is dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


# --- what the manifest says to the user ------------------------------------------------------


def test_sync_shows_the_notice_and_the_parser_warnings(tmp_path: Path, history: Upstream,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    body = ('<notice>\n    Please read the seL4 docs\x85 first.\n  </notice><shiny-new-element/>'
            '<project name="deep" sync-c="perhaps"/>')
    code = main(["sync", "-w", str(tmp_path / "ws"), "-m", str(manifest(tmp_path, body))])
    _out, err = capsys.readouterr()
    assert code == 0, err
    assert "Please read the seL4 docs first." in err  # C1 control characters dropped
    assert "warning: default.xml: <shiny-new-element>: unknown element, ignored" in err
    assert 'sync-c="perhaps" is not a boolean; ignored' in err
