"""`orch upstream check|prepare|open` end to end: real git (bare upstreams and bare forks), real
gitlint, astyle, cmake-format, autopep8, reuse and checkbashisms, a local GitHub stand-in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_FAIL, EXIT_OK, EXIT_USAGE
from tests.conftest import require_tools
from tests.support.cli import orch
from tests.support.git import git
from tests.support.upstream import (
    CLEAN_C,
    CLEAN_CMAKE,
    DTS,
    DTS_TEXT,
    GUEST_RAM,
    HEADER_C,
    HEADER_HASH,
    OTHER,
    SETTINGS,
    Change,
    World,
    make_patchset,
    make_world,
    parse_test_with,
    signed,
)

LIBS = "projects/seL4_projects_libs"
EXAMPLES = "projects/vm-examples"
KERNEL = "kernel"
NOTES = "docs/notes.txt"


@pytest.fixture
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[World, Path]:
    require_tools("astyle", "checkbashisms")
    w = make_world(tmp_path)
    root = tmp_path / "ws"
    code, _, err = orch(capsys, "sync", "-q", "-m", str(w.manifest), "-w", str(root))
    assert code == EXIT_OK, err
    return w, root


def clean_patchsets(w: World) -> None:
    """A two-patchset chain like the seed's: 'base' (kernel + examples), 'clean' on top
    (library + examples)."""
    make_patchset(w, "base", {
        KERNEL: [Change(signed("plat: reserve 2 GiB for the guest"),
                        {DTS: DTS_TEXT.replace("0x20000000", "0x80000000")})],
        EXAMPLES: [Change(signed("vm_minimal: give the guest 2 GiB"),
                          {SETTINGS: CLEAN_CMAKE.replace('"1024"', '"2048"')})],
    })
    make_patchset(w, "clean", {
        LIBS: [Change(signed("libsel4vm: map guest RAM with large pages"),
                      {GUEST_RAM: CLEAN_C.replace("i++", "i += 2")})],
        EXAMPLES: [Change(signed("vm_minimal: shrink the VMM mempool"),
                          {SETTINGS: CLEAN_CMAKE.replace('"1024"', '"2048"') + 'set(MEMPOOL "1")\n'})],
    }, requires=("base",), base={EXAMPLES: _after_base(w)})


def _after_base(w: World) -> str:
    """The examples commit of 'base', as the scratch clone made it (for stacking 'clean')."""
    scratch = w.upstreams[EXAMPLES].scratch
    git(scratch, "checkout", "-q", "--detach", w.upstreams[EXAMPLES].head())
    patch = sorted((w.patchsets / "base" / EXAMPLES).glob("*.patch"))[0]
    git(scratch, "am", "-q", str(patch))
    sha = git(scratch, "rev-parse", "HEAD")
    git(scratch, "checkout", "-q", "master")
    return sha


BAD_C = HEADER_C + """
int vm_ram_touch(int *addr,int size)
{
    int total=0;
    for (int i = 0; i < size; i++) total += addr[i];
    return total;
}
"""


def dirty_patchset(w: World) -> None:
    make_patchset(w, "dirty", {
        LIBS: [
            Change(signed("libsel4vm: this title is far too long for seL4's gitlint rules"),
                   {GUEST_RAM: CLEAN_C.replace("total = 0", "total = 1")}),
            Change("libsel4vm: count from two\n\nNo sign-off here.\n",
                   {GUEST_RAM: CLEAN_C.replace("total = 0", "total = 2")}),
            Change(signed("libsel4vm: add a note"), {NOTES: HEADER_HASH + "a note   \n"}),
            Change(signed("libsel4vm: restyle the loop"), {GUEST_RAM: BAD_C}),
        ],
        EXAMPLES: [Change(signed("vm_minimal: add a helper script"),
                          {"scripts/helper.py": "print('hello')\n"})],
    })


def up(capsys: pytest.CaptureFixture[str], w: World, root: Path, command: str, name: str,
       *extra: str) -> tuple[int, str, str]:
    return orch(capsys, "upstream", command, "--patchset", name, "--patchsets", str(w.patchsets),
                "-w", str(root), *extra)


def cell(report: dict[str, Any], project: str, check: str) -> dict[str, Any]:
    return next(r for r in report["results"] if r["project"] == project and r["check"] == check)


def commit_subjects(root: Path, project: str, rev: str, count: int) -> list[str]:
    return git(root / project, "log", "--format=%s", f"-{count}", rev).splitlines()


# --------------------------------------------------------------------------- check


def test_check_reports_each_problem_against_its_project_and_commit(
        world: tuple[World, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    dirty_patchset(w)
    code, out, err = up(capsys, w, root, "check", "dirty", "--json")
    assert code == EXIT_FAIL, err
    report = json.loads(out)
    assert not report["ok"]
    gitlint = cell(report, LIBS, "gitlint")
    assert gitlint["status"] == "failed"
    assert [f["subject"] for f in gitlint["findings"]] == [
        "libsel4vm: this title is far too long for seL4's gitlint rules"]
    assert gitlint["findings"][0]["first"].startswith("T1 Title exceeds max length (62>50)")
    dco = cell(report, LIBS, "dco")["findings"]
    assert [f["subject"] for f in dco] == ["libsel4vm: count from two"]
    assert "Signed-off-by: Test Dev <dev@example.org>" in dco[0]["first"]
    ws = cell(report, LIBS, "whitespace")["findings"]
    assert [f["subject"] for f in ws] == ["libsel4vm: add a note"]
    assert ws[0]["file"] == NOTES and "trailing whitespace" in ws[0]["first"]
    style = cell(report, LIBS, "style")["findings"]
    assert [f["subject"] for f in style] == ["libsel4vm: restyle the loop"]
    assert "+int vm_ram_touch(int *addr, int size)" in style[0]["detail"]  # the diff astyle would apply
    lic = cell(report, EXAMPLES, "license")["findings"]
    assert {f["file"] for f in lic} == {"scripts/helper.py"}
    assert lic[0]["subject"] == "vm_minimal: add a helper script"
    assert cell(report, LIBS, "license")["status"] == "ok"
    assert cell(report, EXAMPLES, "style")["status"] == "ok"  # autopep8 is happy with it
    assert cell(report, EXAMPLES, "shell")["status"] == "n/a"
    # every finding names the project it was found in, and nothing leaks into the workspace
    assert all(f["project"] == r["project"] for r in report["results"] for f in r["findings"])
    assert not list((root / ".orch" / "tmp").iterdir())
    assert git(root / LIBS, "status", "--porcelain") == ""

    code, out, _ = up(capsys, w, root, "check", "dirty")
    assert code == EXIT_FAIL
    assert "T1 Title exceeds max length" in out and "+int vm_ram_touch(int *addr, int size)" in out


def test_clean_chain_passes_and_shell_scripts_are_checked(
        world: tuple[World, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    clean_patchsets(w)
    code, out, err = up(capsys, w, root, "check", "clean", "--json")
    assert code == EXIT_OK, out + err
    report = json.loads(out)
    assert report["chain"] == ["base", "clean"]
    assert report["projects"] == [KERNEL, EXAMPLES, LIBS]
    assert cell(report, EXAMPLES, "style")["status"] == "ok"  # cmake-format ran on settings.cmake
    assert cell(report, LIBS, "style")["status"] == "ok"

    make_patchset(w, "bashism", {EXAMPLES: [Change(
        signed("vm_minimal: add a run script"),
        {"run.sh": HEADER_HASH.replace("#\n# Copyright", "#!/bin/sh\n# Copyright", 1)
         + "if [[ -n \"$1\" ]]; then echo yes; fi\n"}, mode_x=("run.sh",))]})
    code, out, err = up(capsys, w, root, "check", "bashism", "--json")
    assert code == EXIT_FAIL, err
    shell = cell(json.loads(out), EXAMPLES, "shell")
    assert shell["status"] == "failed" and shell["findings"][0]["file"] == "run.sh"
    assert "bashism" in shell["findings"][0]["first"]


def test_fix_folds_style_whitespace_and_signoff_into_the_commits(
        world: tuple[World, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    dirty_patchset(w)
    before = {p.name: p.read_bytes() for p in (w.patchsets / "dirty" / LIBS).glob("*.patch")}
    code, out, err = orch(capsys, "upstream", "check", "--patchset", "dirty", "--fix", "--patchsets",
                          str(w.patchsets), "-w", str(root), "--json")
    report = json.loads(out)
    # what a tool can fix is gone; the title and the missing SPDX header need a person
    assert {(r["project"], r["check"]) for r in report["results"] if r["status"] == "failed"} == {
        (LIBS, "gitlint"), (EXAMPLES, "license")}, err
    assert code == EXIT_FAIL
    assert any("restyled libsel4vm/src/guest_ram.c" in line for line in report["fixed"])
    assert any("added Signed-off-by: Test Dev <dev@example.org>" in line for line in report["fixed"])
    after = {p.name: p.read_bytes() for p in (w.patchsets / "dirty" / LIBS).glob("*.patch")}
    assert set(after) == set(before) and after != before
    assert b"Signed-off-by: Test Dev" in after["0002-libsel4vm-count-from-two.patch"]
    # the patchset still verifies (refresh rewrote the sha256s) and checks the same afterwards
    code, out, _ = up(capsys, w, root, "check", "dirty", "--json")
    again = json.loads(out)
    assert {(r["project"], r["check"]) for r in again["results"] if r["status"] == "failed"} == {
        (LIBS, "gitlint"), (EXAMPLES, "license")}


def test_fix_makes_a_fixable_series_clean_and_leaves_others_signoffs_alone(
        world: tuple[World, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    make_patchset(w, "fixable", {
        LIBS: [Change("libsel4vm: restyle the loop\n\nOnly style.\n", {GUEST_RAM: BAD_C + "/* x */ \n"})],
        EXAMPLES: [Change(signed("vm_minimal: add a helper script"),
                          {"scripts/helper.py": HEADER_HASH + "x=[1,2 ,3]\n"})],
    })
    code, out, err = orch(capsys, "upstream", "check", "--patchset", "fixable", "--fix", "--patchsets",
                          str(w.patchsets), "-w", str(root), "--json")
    assert code == EXIT_OK, out + err
    patch = next((w.patchsets / "fixable" / EXAMPLES).glob("*.patch")).read_text()
    assert "+x = [1, 2, 3]" in patch  # autopep8's change, folded into the commit

    make_patchset(w, "theirs", {LIBS: [Change(signed("libsel4vm: someone else's change"),  # signed by me
                                              {GUEST_RAM: CLEAN_C + "/* y */\n"}, author=OTHER)]})
    code, out, _ = orch(capsys, "upstream", "check", "--patchset", "theirs", "--fix", "--patchsets",
                        str(w.patchsets), "-w", str(root), "--json")
    assert code == EXIT_FAIL
    first = cell(json.loads(out), LIBS, "dco")["findings"][0]["first"]
    assert first == ("Signed-off-by: Test Dev <dev@example.org> is not the author; "
                     "expected 'Signed-off-by: Other Person <other@example.org>'")


# --------------------------------------------------------------------------- prepare


def test_prepare_rebases_pushes_to_forks_only_and_writes_bodies(
        world: tuple[World, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    clean_patchsets(w)
    moved = w.upstreams[KERNEL].commit({"README.md": "kernel readme\n"}, "upstream moved on")
    template = str(w.forks / "alice" / "{name}")
    code, out, err = up(capsys, w, root, "prepare", "clean", "--fork", template, "--json")
    assert code == EXIT_OK, err
    prepared = json.loads(out)["prepared"]
    order = [p["project"] for p in prepared["projects"]]
    assert order == [KERNEL, LIBS, EXAMPLES]  # kernel, then the library, then the example
    branch = "orch/upstream/clean"
    for path in order:
        fork = w.fork(path)
        assert git(fork, "rev-parse", f"refs/heads/{branch}") == git(root / path, "rev-parse", branch)
        assert git(w.upstreams[path].bare, "for-each-ref", "refs/heads/orch") == ""  # never upstream
    assert git(root / KERNEL, "rev-parse", f"{branch}~1") == moved  # rebased onto the new tip
    assert commit_subjects(root, EXAMPLES, branch, 2) == ["vm_minimal: shrink the VMM mempool",
                                                           "vm_minimal: give the guest 2 GiB"]
    bodies = {p: (root / ".orch" / "upstream" / "clean" / f"{p}.md").read_text() for p in order}
    assert bodies[LIBS].startswith("# libsel4vm: map guest RAM with large pages\n")
    assert parse_test_with(bodies[LIBS]) == ["alice/seL4@orch/upstream/clean",
                                             "alice/camkes-vm-examples@orch/upstream/clean"]
    assert parse_test_with(bodies[KERNEL]) == ["alice/seL4_projects_libs@orch/upstream/clean",
                                               "alice/camkes-vm-examples@orch/upstream/clean"]
    assert "Merge after seL4/seL4, seL4/seL4_projects_libs." in bodies[EXAMPLES]
    assert "2. seL4/seL4_projects_libs (this PR)" in bodies[LIBS]
    assert "No `orch build` results for `clean` yet" in bodies[KERNEL]
    assert "orch build --patchset clean" in bodies[KERNEL]
    pin = json.loads((root / ".orch" / "state.json").read_text())["projects"][LIBS]["sha"]
    assert f"`{LIBS}` @ `{pin}`" in bodies[EXAMPLES]


def test_prepare_refuses_to_push_to_the_upstream(world: tuple[World, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    clean_patchsets(w)
    code, _, err = up(capsys, w, root, "prepare", "clean", "--fork", str(w.server / "{name}"))
    assert code == 2 and "orch never pushes there" in err
    for path in (KERNEL, LIBS, EXAMPLES):
        assert git(w.upstreams[path].bare, "for-each-ref", "refs/heads/orch") == ""


def test_prepare_reports_a_conflict_and_writes_nothing(world: tuple[World, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    clean_patchsets(w)
    w.upstreams[LIBS].commit({GUEST_RAM: CLEAN_C.replace("i++", "i += 4")}, "upstream changed the loop")
    heads = {p: git(root / p, "rev-parse", "HEAD") for p in (KERNEL, LIBS, EXAMPLES)}
    fork = str(w.forks / "alice" / "{name}")
    code, out, err = up(capsys, w, root, "prepare", "clean", "--fork", fork, "--json")
    assert code == EXIT_USAGE, err  # the user has to act; 1 would tell `git bisect run` "bad"
    result = json.loads(out)
    assert [(c["project"], c["subject"], c["files"]) for c in result["conflicts"]] == [
        (LIBS, "libsel4vm: map guest RAM with large pages", [GUEST_RAM])]
    assert result["prepared"] is None
    for path in (KERNEL, LIBS, EXAMPLES):
        assert git(root / path, "for-each-ref", "refs/heads/orch/upstream") == ""
        assert git(w.fork(path), "for-each-ref") == ""
        assert git(root / path, "rev-parse", "HEAD") == heads[path]
    assert not (root / ".orch" / "upstream" / "clean").exists()
    assert not list((root / ".orch" / "tmp").iterdir())

    code, out, _ = up(capsys, w, root, "prepare", "clean", "--fork", fork, "--onto",
                      f"{LIBS}={w.upstreams[LIBS].commits[0]}")
    assert code == EXIT_OK, out


def test_prepare_that_cannot_push_is_infrastructure_and_keeps_branches_and_bodies(
        world: tuple[World, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    clean_patchsets(w)
    code, _, err = up(capsys, w, root, "prepare", "clean", "--fork", str(w.forks / "nobody" / "{name}"))
    assert code == EXIT_CANNOT_TEST, err
    assert "push to" in err and "failed" in err
    assert git(root / KERNEL, "for-each-ref", "--format=%(refname)", "refs/heads/orch/upstream") == \
        "refs/heads/orch/upstream/clean"
    assert (root / ".orch" / "upstream" / "clean" / f"{KERNEL}.md").is_file()


def test_prepare_whose_rebase_git_refuses_without_a_conflict_is_infrastructure(
        world: tuple[World, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A rebase git stops for another reason than a conflict (here the user's own pre-rebase
    hook) is no conflict to report per commit: exit 125 with git's line, nothing written."""
    w, root = world
    clean_patchsets(w)
    w.upstreams[KERNEL].commit({"README.md": "kernel readme\n"}, "upstream moved on")  # a real rebase
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-rebase").write_text("#!/bin/sh\necho 'no rebasing today' >&2\nexit 1\n")
    (hooks / "pre-rebase").chmod(0o755)
    git(tmp_path, "config", "--global", "core.hooksPath", str(hooks))
    code, _, err = up(capsys, w, root, "prepare", "clean", "--fork", str(w.forks / "alice" / "{name}"))
    assert code == EXIT_CANNOT_TEST, err
    assert "failed without a conflict" in err and "conflicts" not in err, err
    for path in (KERNEL, LIBS, EXAMPLES):
        assert git(root / path, "for-each-ref", "refs/heads/orch/upstream") == ""
        assert git(w.fork(path), "for-each-ref") == ""


def test_bodies_carry_the_latest_build_evidence(world: tuple[World, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    clean_patchsets(w)
    results = root / ".orch" / "results"
    for run_id, finished, verdict in (("old", "2026-01-01T00:00:00", "fail"), ("new", "2026-02-01T00:00:00",
                                                                             "pass")):
        (results / run_id).mkdir(parents=True)
        (results / run_id / "results.json").write_text(json.dumps({
            "schema": 1, "id": run_id, "patchset": "clean", "finished": finished, "exit_code": 0,
            "command": ["orch", "build", "--patchset", "clean"],
            "variants": [{"name": "largepage", "patchsets": ["base", "clean"],
                          "build": {"status": "built"}, "run": {"status": "ran", "verdict": verdict},
                          "expect": {"verdict": "pass"}, "outcome": "expected",
                          "vmm": {"mempool": 1048576}, "memory": {"metadata": 245760}}],
        }))
    (results / "new" / "mempool.png").write_bytes(b"\x89PNG")
    sweep = root / ".orch" / "sweeps" / "s1"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"id": "s1", "plan": {"patchset": "clean"},
                                                  "finished": "2026-02-02T00:00:00"}))
    (sweep / "summary.md").write_text("### orch sweep: `clean` / `largepage`\n\n"
                                      "![minimum mempool against guest RAM](sweep.png)\n\n"
                                      "| guest RAM | minimum mempool |\n|---|---|\n| 2 GiB | 1 MiB |\n")
    code, _, err = up(capsys, w, root, "prepare", "clean", "--no-push")
    assert code == EXIT_OK, err
    body = (root / ".orch" / "upstream" / "clean" / f"{LIBS}.md").read_text()
    assert "job `new`" in body
    assert "| largepage | base, clean | pass | pass | expected | 1.00 MiB | 240 KiB |" in body
    assert "Chart: mempool.png" in body
    assert "| 2 GiB | 1 MiB |" in body
    assert "Chart: sweep.png (minimum mempool against guest RAM) from sweep `s1`, attached." in body


# --------------------------------------------------------------------------- open


class FakeGitHub:
    """Exactly the endpoints `open` uses; every request is recorded and checked."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, Any, str]] = []
        self.pulls: dict[str, list[dict[str, Any]]] = {}
        self.next = 40
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length)) if length else None
                auth = self.headers.get("Authorization", "")
                fake.requests.append((self.command, self.path, payload, auth))
                return payload

            def do_GET(self) -> None:
                self._record()
                repo, _, query = self.path.removeprefix("/repos/").partition("/pulls?")
                head = dict(p.split("=", 1) for p in query.split("&"))["head"].replace("%3A", ":").replace(
                    "%2F", "/")
                self._answer(200, [p for p in fake.pulls.get(repo, []) if p["head"] == head])

            def do_POST(self) -> None:
                payload = self._record()
                repo = self.path.removeprefix("/repos/").removesuffix("/pulls")
                fake.next += 1
                pull = {"number": fake.next, "html_url": f"https://github.test/{repo}/pull/{fake.next}",
                        **payload}
                fake.pulls.setdefault(repo, []).append(pull)
                self._answer(201, pull)

            def do_PATCH(self) -> None:
                payload = self._record()
                repo, _, number = self.path.removeprefix("/repos/").partition("/pulls/")
                pull = next(p for p in fake.pulls[repo] if p["number"] == int(number))
                pull.update(payload)
                self._answer(200, pull)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_open_creates_in_merge_order_and_cross_links(world: tuple[World, Path],
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    w, root = world
    clean_patchsets(w)
    code, _, err = up(capsys, w, root, "prepare", "clean", "--fork", str(w.forks / "alice" / "{name}"))
    assert code == EXIT_OK, err
    code, out, err = up(capsys, w, root, "open", "clean", "--dry-run", "--api", "http://127.0.0.1:9")
    assert code == EXIT_OK, err
    assert out.count("POST http://127.0.0.1:9/repos/") == 3 and '"head": "alice:orch/upstream/clean"' in out

    fake = FakeGitHub()
    try:
        monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
        code, out, err = up(capsys, w, root, "open", "clean", "--api", fake.url, "--json")
        assert code == EXIT_OK, err
        methods = [(m, p) for m, p, _, _ in fake.requests]
        assert methods == [
            ("GET", "/repos/seL4/seL4/pulls?head=alice%3Aorch%2Fupstream%2Fclean&state=open"),
            ("POST", "/repos/seL4/seL4/pulls"),
            ("GET", "/repos/seL4/seL4_projects_libs/pulls?head=alice%3Aorch%2Fupstream%2Fclean&state=open"),
            ("POST", "/repos/seL4/seL4_projects_libs/pulls"),
            ("GET", "/repos/seL4/camkes-vm-examples/pulls?head=alice%3Aorch%2Fupstream%2Fclean&state=open"),
            ("POST", "/repos/seL4/camkes-vm-examples/pulls"),
            ("PATCH", "/repos/seL4/seL4/pulls/41"),
            ("PATCH", "/repos/seL4/seL4_projects_libs/pulls/42"),
        ]
        assert all(auth == "Bearer t0ken" for _, _, _, auth in fake.requests)
        first = fake.requests[1][2]
        assert set(first) == {"title", "head", "base", "body"}
        assert first["title"] == "plat: reserve 2 GiB for the guest"
        assert (first["head"], first["base"]) == ("alice:orch/upstream/clean", "master")
        assert parse_test_with(first["body"]) == ["alice/seL4_projects_libs@orch/upstream/clean",
                                                  "alice/camkes-vm-examples@orch/upstream/clean"]
        last = fake.requests[5][2]
        assert parse_test_with(last["body"]) == ["seL4/seL4#41", "seL4/seL4_projects_libs#42"]
        assert set(fake.requests[6][2]) == {"body"}
        assert parse_test_with(fake.requests[6][2]["body"]) == ["seL4/seL4_projects_libs#42",
                                                                "seL4/camkes-vm-examples#43"]
        assert parse_test_with(fake.requests[7][2]["body"]) == ["seL4/seL4#41", "seL4/camkes-vm-examples#43"]
        state = json.loads((root / ".orch" / "upstream" / "clean" / "prepared.json").read_text())
        assert [p["number"] for p in state["projects"]] == [41, 42, 43]
        body = (root / ".orch" / "upstream" / "clean" / f"{EXAMPLES}.md").read_text()
        assert parse_test_with(body) == ["seL4/seL4#41", "seL4/seL4_projects_libs#42"]

        fake.requests.clear()  # a second run opens nothing twice and changes nothing
        code, _, err = up(capsys, w, root, "open", "clean", "--api", fake.url)
        assert code == EXIT_OK, err
        assert [m for m, _, _, _ in fake.requests] == []
    finally:
        fake.close()


def test_open_without_a_token_says_how_to_get_one(world: tuple[World, Path],
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w, root = world
    clean_patchsets(w)
    up(capsys, w, root, "prepare", "clean", "--fork", str(w.forks / "alice" / "{name}"))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("PATH", str(root))  # no `gh`
    code, _, err = orch(capsys, "upstream", "open", "--patchset", "clean", "-w", str(root), "--api",
                        "http://127.0.0.1:9")
    assert code == 2 and "GITHUB_TOKEN" in err


# --------------------------------------------------------------------------- the grammar


def test_the_get_prs_reimplementation_reads_what_its_documentation_says() -> None:
    text = "\n".join([
        "Some description",
        "Test with: acme/one#1, acme/two#2 and acme/three@feature/x",
        "test with https://github.com/acme/four/pull/4",
        "  Test with: acme/ignored#9",
        "Test with: acme/five#5trailing acme/ignored#8",
        "Test with: acme/six@.dot",
        "Test with: https://github.com/acme/seven/tree/release/v7",
    ])
    assert parse_test_with(text) == ["acme/one#1", "acme/two#2", "acme/three@feature/x", "acme/four#4",
                                     "acme/five#5", "acme/seven@release/v7"]


def test_rendered_lines_round_trip() -> None:
    from orchestrator.upstream.testwith import Ref, render_line, replace_line

    line = render_line([Ref("seL4/seL4", number=3),
                        Ref("alice/camkes-vm-examples", branch="orch/upstream/x")])
    assert parse_test_with(line) == ["seL4/seL4#3", "alice/camkes-vm-examples@orch/upstream/x"]
    body = replace_line("intro\n\nTest with: a/b#1\n", "Test with: c/d#2")
    assert body == "intro\n\nTest with: c/d#2\n"
    assert shutil.which("git")


def test_a_repositorys_own_gitlint_and_stylefilter_win(world: tuple[World, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    w, root = world
    own = "[general]\nregex-style-search=true\n[title-max-length]\nline-length=80\n"
    make_patchset(w, "own-rules", {LIBS: [
        Change(signed("libsel4vm: a generated file, kept as the generator wrote it, with a long title"),
               {".gitlint": HEADER_HASH + own, ".stylefilter": HEADER_HASH + "libsel4vm/gen/*  # generated\n",
                "libsel4vm/gen/table.c": BAD_C}),
    ]})
    code, out, err = up(capsys, w, root, "check", "own-rules", "--json")
    assert code == EXIT_OK, out + err
    report = json.loads(out)
    assert cell(report, LIBS, "gitlint")["status"] == "ok"
    assert cell(report, LIBS, "style")["status"] == "n/a"  # filtered out: nothing to style
