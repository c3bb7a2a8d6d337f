"""Start-up stays cheap: `orch --version` imports nothing heavy, and a command imports only its
own module (no Docker SDK, dask or QEMU code for `orch sync`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestrator.cli import build_parser, main, wanted_command
from tests.support.git import make_upstream


def imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", "import sys\n" + code +
                          "\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_version_imports_neither_rich_nor_gitpython() -> None:
    modules = imported_after("from orchestrator.cli import main\nmain(['--version'])")
    assert not {"rich", "git", "docker", "elftools", "dask"} & modules


def test_sync_does_not_import_the_build_and_boot_stack() -> None:
    modules = imported_after("from orchestrator.cli import build_parser\n"
                             "build_parser(['sync', '--help-not-parsed'])")
    assert "orchestrator.cli.sync" in modules
    assert not {"docker", "dask", "orchestrator.job", "orchestrator.boot.qemu"} & modules


def test_the_command_word_is_found_past_global_options() -> None:
    assert wanted_command(["-w", "sync", "status", "--json"]) == "status"
    assert wanted_command(["--json", "-q", "clean"]) == "clean"
    assert wanted_command(["--version"]) is None and wanted_command(["nosuch"]) is None
    args = build_parser(["-w", "x", "clean", "-n"]).parse_args(["-w", "x", "clean", "-n"])
    assert args.everything and args.dry_run


def test_a_noop_sync_imports_neither_gitpython_nor_rich_progress(tmp_path: Path) -> None:
    server = tmp_path / "git" / "seL4"
    make_upstream(server, "kernel.git", {"a.c": "int a;\n"})
    manifest = make_upstream(server, "manifest", {"default.xml": (
        '<manifest><remote name="s" fetch="../seL4"/><default remote="s" revision="master"/>'
        '<project name="kernel.git" path="kernel"/></manifest>')}, "manifest")
    ws = tmp_path / "ws"
    assert main(["sync", "-q", "-w", str(ws), "-m", str(manifest.bare)]) == 0
    out = subprocess.run([sys.executable, "-c", "import sys\nfrom orchestrator.cli import main\n"
                          f"code = main(['sync', '-w', {str(ws)!r}])\n"
                          "print(code, ' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    code, modules = out.splitlines()[-1].split(" ", 1)
    assert code == "0" and "orchestrator.workspace.sync" in modules.split()
    assert not {"git", "rich.progress", "rich.table"} & set(modules.split())
