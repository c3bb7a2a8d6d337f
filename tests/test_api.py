"""The public API: lazy (importing orchestrator loads nothing else), complete, and the README's
example run as written on the fixture workspace (real git, a real cross build, real QEMU)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator
from tests.conftest import require_tools
from tests.support.e2e import make_e2e_fixture

README = Path(__file__).resolve().parents[1] / "README.md"


def test_import_is_lazy() -> None:
    code = ("import sys, orchestrator; "
            "print(sorted(m for m in sys.modules if m.startswith('orchestrator.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves() -> None:
    assert set(orchestrator.__all__) == {"__version__", *orchestrator._EXPORTS}
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name
    with pytest.raises(AttributeError):
        orchestrator.no_such_thing  # noqa: B018


def test_options_are_not_cli_shaped() -> None:
    fields = set(orchestrator.JobOptions.__dataclass_fields__)
    assert not fields & {"command", "env", "argv", "json", "quiet"}


def readme_example() -> str:
    text = README.read_text()
    found = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S)
    assert found, "README: the API example (marked <!-- api-example -->) is missing"
    return found.group(1)


@pytest.mark.qemu
def test_readme_example_runs_on_the_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """sync + build + boot through the API alone, the README's code unchanged but for the
    workspace, the manifest and the patchsets (the fixture's) and the host executor."""
    require_tools("qemu-system-aarch64", "aarch64-linux-gnu-gcc", "cmake", "ninja")
    fx = make_e2e_fixture(tmp_path)
    monkeypatch.setenv("ORCH_PATCHSETS", str(fx.patchsets))
    code = readme_example()
    code = code.replace('Path("~/sel4").expanduser()', repr(str(fx.workspace)))
    code = code.replace('"https://github.com/seL4/camkes-vm-examples-manifest.git"', repr(fx.manifest_url))
    code = code.replace('executor="docker"', 'executor="host"')
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^4k: fail \(vmm-allocation\)", out, re.M), out
    assert re.search(r"^largepage: pass, guest 2048 MiB", out, re.M), out
