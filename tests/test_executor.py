"""Executors: the step script both run, the host executor's outcomes, and the Docker
executor's one-line errors when no engine can be reached."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_CANNOT_TEST, InfraError
from orchestrator.runtime.base import Job, Step, plain_script
from orchestrator.runtime.docker import DockerRuntime, _split_image
from orchestrator.runtime.host import HostRuntime
from orchestrator.ui import UI


def job(tmp_path: Path, *steps: Step, **kwargs: object) -> tuple[Job, bytearray]:
    out = bytearray()
    return Job(name="t", workdir=tmp_path, steps=steps, output=out.extend, **kwargs), out  # type: ignore[arg-type]


def test_host_runs_steps_in_order_and_streams_output(tmp_path: Path) -> None:
    j, out = job(tmp_path, Step("configure", ("sh", "-c", "echo one > a")), Step("build", ("cat", "a")),
                 env={"ORCH_X": "1"})
    outcome = HostRuntime().run(j)
    assert outcome.ok and outcome.failed_step is None
    assert b"one" in out and b"::orch-step:: build: cat a" in out


def test_host_stops_at_the_failing_step_and_names_it(tmp_path: Path) -> None:
    j, _out = job(tmp_path, Step("configure", ("sh", "-c", "exit 3")), Step("build", ("touch", "never")))
    outcome = HostRuntime().run(j)
    assert outcome.exit_code == 3 and outcome.failed_step == "configure"
    assert not (tmp_path / "never").exists()


def test_host_timeout_and_cancel(tmp_path: Path) -> None:
    j, _ = job(tmp_path, Step("build", ("sleep", "30")), timeout=0.5)
    assert HostRuntime().run(j).timed_out
    cancel = threading.Event()
    cancel.set()
    j, _ = job(tmp_path, Step("build", ("sleep", "30")), cancel=cancel)
    assert HostRuntime().run(j).interrupted


def test_host_info_names_the_toolchain() -> None:
    from tests.conftest import require_tools

    require_tools("cmake", "ninja")
    info = HostRuntime().info(UI.silent())
    assert info.name == "host" and "cmake" in info.toolchain and len(info.identity) == 64


def test_plain_script_is_what_a_person_types(tmp_path: Path) -> None:
    j, _ = job(tmp_path, Step("configure", ("../src/init-build.sh", "-DPLATFORM=x")),
               Step("build", ("ninja",)))
    assert plain_script(j) == f"cd {tmp_path} && ../src/init-build.sh -DPLATFORM=x && ninja"


def test_docker_unreachable_is_one_infra_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(InfraError) as caught:
        DockerRuntime(image="x").info(UI.silent())
    assert caught.value.exit_code == EXIT_CANNOT_TEST
    assert "cannot reach the Docker engine" in caught.value.message and "no-such.sock" in caught.value.message
    assert caught.value.hint and "--executor host" in caught.value.hint


@pytest.mark.parametrize(("image", "split"), [
    ("trustworthysystems/camkes:latest", ("trustworthysystems/camkes", "latest")),
    ("trustworthysystems/camkes", ("trustworthysystems/camkes", "latest")),
    ("localhost:5000/camkes", ("localhost:5000/camkes", "latest")),
    ("repo@sha256:abc", ("repo", "sha256:abc")),
])
def test_split_image(image: str, split: tuple[str, str]) -> None:
    assert _split_image(image) == split
