"""Exit codes a bisect can trust: a bug in orch (an uncaught exception) exits 128, which aborts
`git bisect run`, with one line naming the traceback file; a reader closing the pipe
(`orch ... | head`) is exit 0, quietly."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import (
    EXIT_CANNOT_TEST,
    EXIT_FAIL,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    InfraError,
    InputError,
    WorkspaceError,
    combined_exit_code,
    exit_code_for_verdict,
)
from orchestrator.patchset import apply as patchset_lib


def test_the_exit_code_contract() -> None:
    """What scripts and `git bisect run` rely on (README, "Exit codes")."""
    assert (EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CANNOT_TEST, EXIT_INTERNAL) == (0, 1, 2, 125, 128)
    assert [exit_code_for_verdict(v) for v in ("pass", "fail", "timeout", "error", None)] == [0, 1, 1, 125, 1]
    # several results make one code: internal bug, then bad input, then cannot-test, then fail
    assert combined_exit_code([]) == combined_exit_code([0, 0]) == 0
    assert combined_exit_code([0, 1]) == 1
    assert combined_exit_code([1, 125, 0]) == 125
    assert combined_exit_code([125, 2, 1]) == 2
    assert combined_exit_code([2, 128, 125]) == 128
    assert InputError("x").exit_code == WorkspaceError("x").exit_code == 2
    assert InfraError("x").exit_code == 125 and str(InfraError("one line", hint="h")) == "one line"


def _boom(*_args: object, **_kwargs: object) -> None:
    raise ValueError("planted\x1b[31m bug\nsecond line")


def test_internal_error_in_a_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".orch").mkdir()
    monkeypatch.setattr(patchset_lib, "available_patchsets", _boom)
    code = main(["patchset", "list", "-w", str(tmp_path)])
    assert code == EXIT_INTERNAL and code > 127 and code != 130  # git bisect run aborts
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ValueError: planted" in err and "\x1b" not in err
    [written] = (tmp_path / ".orch" / "crash").iterdir()
    assert str(written) in err
    text = written.read_text()
    assert "Traceback" in text and "_boom" in text and "patchset list" in text


def test_internal_error_outside_a_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(patchset_lib, "available_patchsets", _boom)
    assert main(["patchset", "list"]) == EXIT_INTERNAL
    [written] = scratch.glob("orch-crash-*.txt")
    assert str(written) in capsys.readouterr().err and "ValueError" in written.read_text()
    assert not (tmp_path / ".orch").exists()


def test_git_bisect_run_aborts_on_an_internal_error(tmp_path: Path) -> None:
    """The real thing: `git bisect run` with a crashing orch stops the bisect."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    for n in range(3):
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", f"c{n}"],
                       check=True, env=env)
    script = tmp_path / "crash.py"
    script.write_text("import sys\nfrom orchestrator.patchset import apply\n"
                      "apply.available_patchsets = lambda *a: 1 / 0\n"
                      "from orchestrator.cli import main\nsys.exit(main(['patchset', 'list']))\n")
    subprocess.run(["git", "-C", str(repo), "bisect", "start", "HEAD", "HEAD~2"], check=True,
                   capture_output=True)
    proc = subprocess.run(["git", "-C", str(repo), "bisect", "run", sys.executable, str(script)],
                          capture_output=True, text=True, env=env, cwd=repo)
    assert proc.returncode != 0
    assert "ZeroDivisionError" in proc.stderr + proc.stdout
    assert "bisect run failed" in proc.stderr + proc.stdout or "exit code 128" in proc.stderr + proc.stdout


def test_closed_stdout_pipe_exits_0_quietly() -> None:
    """`orch patchset list | head -0`: the reader is gone before orch writes a byte."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "patchset", "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert err == b""


def test_head_in_a_shell_pipeline() -> None:
    """With a real shell pipeline and pipefail, orch's own status is 0."""
    command = f"set -o pipefail; {sys.executable} -m orchestrator patchset list --json | head -c 1"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
