"""The toolchain image: build context, build-stream parsing, the `stack` stand-in, and a real
build of the small ``build-min`` stage (the one the Docker tests run in)."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pytest

from orchestrator.cli import main
from orchestrator.errors import InfraError, InputError
from orchestrator.runtime import toolchain_image as image
from orchestrator.runtime.docker import connect
from orchestrator.shipped import shipped_dir
from orchestrator.ui import UI
from tests.conftest import missing

DOCKER_DIR = shipped_dir("docker")


def load_stack_shim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("orch_stack_shim", DOCKER_DIR / "stack-shim.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- Dockerfile and context ---------------------------------------------------------------


def test_dockerfile_declares_every_stage_and_the_base_image_arg() -> None:
    text = (DOCKER_DIR / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=" in text
    for stage in image.STAGES:
        assert f" AS {stage}\n" in text
    # build-min comes first, so the classic builder never builds camkes for it
    assert text.index(" AS build-min") < text.index(" AS camkes")


def test_context_has_the_shipped_files_and_exactly_the_given_wheels(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "sel4_deps-1.0-py3-none-any.whl").write_bytes(b"PK")
    (wheels / "notes.txt").write_text("not a wheel")
    context = tmp_path / "ctx"
    context.mkdir()
    image.assemble_context(DOCKER_DIR, wheels, context)
    assert (context / "Dockerfile").read_text() == (DOCKER_DIR / "Dockerfile").read_text()
    assert (context / "stack-shim.py").is_file()
    assert image.list_wheels(context / "wheels") == ["sel4_deps-1.0-py3-none-any.whl"]
    assert not (context / "wheels" / "notes.txt").exists()


def test_context_without_wheels_still_has_an_empty_wheels_dir(tmp_path: Path) -> None:
    image.assemble_context(DOCKER_DIR, None, tmp_path)
    assert (tmp_path / "wheels").is_dir()
    assert image.list_wheels(tmp_path / "wheels") == []


def test_context_digest_follows_the_dockerfile_and_the_wheels(tmp_path: Path) -> None:
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    (docker_dir / "Dockerfile").write_text("FROM scratch\n")
    first = image.context_digest(docker_dir, [])
    assert image.context_digest(docker_dir, []) == first
    assert image.context_digest(docker_dir, ["a-1-py3-none-any.whl"]) != first
    (docker_dir / "wheels").mkdir()
    (docker_dir / "wheels" / "x-1-py3-none-any.whl").write_bytes(b"ignored")
    assert image.context_digest(docker_dir, []) == first
    (docker_dir / "Dockerfile").write_text("FROM scratch\nRUN true\n")
    assert image.context_digest(docker_dir, []) != first


def test_a_directory_without_dockerfile_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Dockerfile"):
        image.context_files(tmp_path)


def test_wheels_dir_without_wheels_is_bad_input(tmp_path: Path) -> None:
    spec = image.ImageSpec(target="camkes", wheels_dir=tmp_path)
    with pytest.raises(InputError, match=r"no \.whl files"):
        image.select_wheels(spec, UI.silent())


def test_only_the_camkes_stage_takes_wheels(tmp_path: Path) -> None:
    assert image.ImageSpec(target="camkes").needs_wheels
    assert not image.ImageSpec(target="camkes", wheels=False).needs_wheels
    assert not image.ImageSpec(target="build-min").needs_wheels
    assert image.select_wheels(image.ImageSpec(target="build-min"), UI.silent()) is None


def test_default_tag_names_the_stage() -> None:
    assert image.ImageSpec(target="build-min").resolved_tag == "orch-toolchain:build-min"
    assert image.ImageSpec(tag="me/tc:1").resolved_tag == "me/tc:1"


def test_wheel_cache_lives_under_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = image.wheel_cache_dir(("sel4-deps", "camkes-deps"), "3.11.2")
    assert directory.parent == tmp_path / "orch" / "wheels"
    assert directory == image.wheel_cache_dir(("camkes-deps", "sel4-deps"), "3.11.2")
    assert directory != image.wheel_cache_dir(("camkes-deps", "sel4-deps"), "3.12.1")


def test_failing_pip_wheel_is_one_infra_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with pytest.raises(InfraError, match="pip wheel no-such-package-orch-test failed") as caught:
        image.prepare_wheels(("no-such-package-orch-test",), "3.11.2", UI.silent())
    assert caught.value.hint is not None and "--wheels-dir" in caught.value.hint
    assert not image.wheel_cache_dir(("no-such-package-orch-test",), "3.11.2").exists()
    assert not list((tmp_path / "orch" / "wheels").glob("*.partial"))


def make_wheel(directory: Path, name: str, requires_python: str | None) -> Path:
    import zipfile

    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}-1.0.dist-info/METADATA", metadata + "\nlong description: x\n")
    return wheel


def test_wheels_are_checked_against_the_image_python(tmp_path: Path) -> None:
    fine = make_wheel(tmp_path, "fine", ">=3.8")
    make_wheel(tmp_path, "anything", None)
    too_new = make_wheel(tmp_path, "toonew", ">=3.11.5")
    assert image.requires_python(fine) == ">=3.8"
    assert image.unfit_wheels(tmp_path, "3.11.2") == [too_new]
    assert image.unfit_wheels(tmp_path, "3.11.7") == []


# --- build stream -------------------------------------------------------------------------


def test_build_stream_lines() -> None:
    chunks: list[dict[str, Any]] = [
        {"stream": "Step 1/3 : FROM base\n"},
        {"stream": " ---> abc\n\n"},
        {"status": "Pulling"},
        {"aux": {"ID": "sha256:feed"}},
        {"errorDetail": {"message": "boom"}, "error": "boom\n"},
    ]
    lines = list(image.stream_lines(chunks))
    assert [(line.kind, line.text) for line in lines] == [
        ("step", "Step 1/3 : FROM base"),
        ("output", " ---> abc"),
        ("output", "Pulling"),
        ("id", "sha256:feed"),
        ("error", "boom"),
    ]


def test_build_failure_names_the_log_and_its_last_lines(tmp_path: Path) -> None:
    error = image.build_failed("t:1", "exit 100", ["a", "b"], tmp_path / "x.log")
    assert "t:1" in error.message and "exit 100" in error.message
    assert error.hint is not None and "b" in error.hint and str(tmp_path / "x.log") in error.hint
    assert error.exit_code == 125


# --- CLI ----------------------------------------------------------------------------------


def test_unknown_stage_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["image", "build", "--target", "nope"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_no_wheels_and_wheels_dir_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["image", "build", "--no-wheels", "--wheels-dir", "x"])
    assert exited.value.code == 2


# --- the stack stand-in -------------------------------------------------------------------

CABAL = """\
name:                demo-tool
version:             1.0
cabal-version:       1.18

executable parse-Demo
  main-is:             Main.hs
  hs-source-dirs:      src
  build-depends:
                       -- Included libraries
                       base >= 4.16,
                       containers >=0.6 && <0.7,
                       -- Other libraries
                       MissingH >=1.4 && <1.6,
                       yaml >=0.8 && <0.12
  default-language:    Haskell2010
  ghc-options:         -O2 -Werror -Wall
"""

FAKE_GHC = """\
#!/bin/sh
echo "$@" > "$FAKE_GHC_LOG"
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then shift; printf '#!/bin/sh\\necho built "$@"\\n' > "$1"; chmod +x "$1"; fi
  shift
done
"""


def test_stack_stand_in_reads_the_cabal_file() -> None:
    shim = load_stack_shim()
    headers = [header for header, _ in shim.cabal_sections(CABAL) if header]
    assert headers == ["executable parse-Demo"]
    executables = _executables(shim, CABAL)
    assert len(executables) == 1
    parsed = executables[0]
    assert parsed.name == "parse-Demo"
    assert parsed.depends == ["base", "containers", "MissingH", "yaml"]
    assert parsed.source_dirs == ["src"]
    assert parsed.language == "Haskell2010"
    assert parsed.ghc_options == ["-O2", "-Wall"]


class CabalExecutable(Protocol):
    """The fields of the stand-in's ``Executable`` (the shim is loaded from a file, untyped)."""

    name: str
    depends: list[str]
    source_dirs: list[str]
    language: str | None
    ghc_options: list[str]


def _executables(shim: ModuleType, text: str) -> list[CabalExecutable]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cabal = Path(tmp) / "x.cabal"
        cabal.write_text(text)
        return list(shim.read_executables(cabal))


def test_stack_stand_in_builds_and_installs_with_ghc(tmp_path: Path) -> None:
    project = tmp_path / "tool"
    (project / "src").mkdir(parents=True)
    (project / "demo.cabal").write_text(CABAL)
    (project / "src" / "Main.hs").write_text("main = pure ()\n")
    (project / "stack.yaml").write_text("resolver: lts-20.25\n\nlocal-bin-path: .\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ghc = bin_dir / "ghc"
    ghc.write_text(FAKE_GHC)
    ghc.chmod(ghc.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "ghc.args"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_GHC_LOG": str(log)}
    stack = [sys.executable, str(DOCKER_DIR / "stack-shim.py")]

    subprocess.run([*stack, "build", "--fast"], cwd=project, env=env, check=True)
    args = log.read_text().split()
    assert args[:3] == ["--make", "-hide-all-packages", "-outputdir"]
    assert "-package=MissingH" in args and "-package=yaml" in args
    assert "-Werror" not in args and args[-2] == "-O0" and args[-1] == "src/Main.hs"
    assert "-XHaskell2010" in args and "-isrc" in args

    log.unlink()
    subprocess.run([*stack, "install"], cwd=project, env=env, check=True)
    assert (project / "parse-Demo").is_file()  # local-bin-path: .
    assert not log.exists()  # `stack build` just built it: install only copies
    ran = subprocess.run([*stack, "exec", "parse-Demo", "--", "x.cdl"], cwd=project, env=env,
                         check=True, capture_output=True, text=True)
    assert ran.stdout.strip() == "built x.cdl"
    bad = subprocess.run([*stack, "upload"], cwd=project, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unsupported command" in bad.stderr


# --- real Docker --------------------------------------------------------------------------

BUILD_MIN_TOOLS = (
    "cmake --version",
    "ninja --version",
    "make --version",
    "python3 --version",
    "aarch64-linux-gnu-gcc --version",
    "aarch64-linux-gnu-objcopy --version",
    "qemu-system-aarch64 --version",
    "test -f /usr/lib/ipxe/qemu/efi-virtio.rom",
)


@pytest.mark.docker
def test_orch_image_build_makes_the_build_min_stage(capsys: pytest.CaptureFixture[str]) -> None:
    base = os.environ.get("ORCH_TEST_BASE_IMAGE", "orch-test-base:bookworm")
    try:
        client = connect()
    except InfraError as error:
        missing(str(error))
    if image.find_image(client, base) is None:
        missing(f"base image {base} not present (a debootstrap'd bookworm; set ORCH_TEST_BASE_IMAGE)")
    argv = ["image", "build", "--target", "build-min", "--base-image", str(base), "--json"]
    assert main(argv) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["tag"] == "orch-toolchain:build-min" and built["target"] == "build-min"

    summary = image.inspect_image(built["tag"], client)
    assert summary.image_id == built["image_id"]
    assert summary.base_image == base and summary.target == "build-min"
    script = " && ".join(f"{tool} >/dev/null" for tool in BUILD_MIN_TOOLS)
    output = client.containers.run(built["tag"], ["sh", "-c", script + " && echo tools-ok"], remove=True)
    assert output.decode().strip() == "tools-ok"

    # the same inputs again: reused by tag, not rebuilt
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] is True and again["image_id"] == built["image_id"]
    assert built["tag"] in [t for s in image.list_images(client) for t in s.tags]
