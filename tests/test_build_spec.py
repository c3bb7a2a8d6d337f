"""The build spec: parsing a patchset's [build]/[variants], overrides, option checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.build.spec import (
    DEFAULT_IMAGE,
    check_spec,
    merge_options,
    override,
    parse_spec,
    platform_arch,
)
from orchestrator.errors import InputError
from orchestrator.workspace.tree import ProjectCheckout, SourceTree

BUILD = {"app": "vm_minimal", "platform": "qemu-arm-virt",
         "cmake": ["-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt", "-DAARCH64=1"]}
VARIANTS = {"4k": {"patchsets": ["vm-2g"], "expect": {"verdict": "fail", "cause": "vmm-allocation"}},
            "largepage": {"patchsets": ["vm-2g", "largepage"], "cmake": ["-DX=1"]}}


def spec(build: dict | None = None, variants: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
    return parse_spec("largepage", ["vm-2g"], build or BUILD, VARIANTS if variants is None else variants,
                      "ps/largepage/patchset.toml")


def test_parse_variants_and_defaults() -> None:
    s = spec()
    assert [v.name for v in s.variants] == ["4k", "largepage"]
    assert s.variant("4k").expect is not None and s.variant("4k").expect.cause == "vmm-allocation"
    assert s.options_for(s.variant("largepage"))[-1] == "-DX=1"
    assert s.toolchain_image == DEFAULT_IMAGE
    assert s.boot_image_name == "images/capdl-loader-image-arm-qemu-arm-virt"
    default = spec(variants={})
    assert [(v.name, v.patchsets) for v in default.variants] == [("base", ("vm-2g",)),
                                                                  ("largepage", ("vm-2g", "largepage"))]


@pytest.mark.parametrize(("build", "message"), [
    ({**BUILD, "cmake": ["PLATFORM=x"]}, "not of the form -DNAME=value"),
    ({**BUILD, "colour": "red"}, "unknown key 'colour'"),
    ({"platform": "qemu-arm-virt"}, "'app' must be a non-empty string"),
    ({**BUILD, "cmake": ["-DCAMKES_VM_IMAGES_DIR=relative/dir"]}, "must be an absolute path"),
])
def test_bad_build_tables_name_the_file(build: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError) as caught:
        spec(build=build)
    assert message in caught.value.message and "ps/largepage/patchset.toml" in caught.value.message


def test_bad_expectation() -> None:
    with pytest.raises(InputError, match="verdict"):
        spec(variants={"x": {"patchsets": [], "expect": {"verdict": "maybe"}}})


def test_override_selects_defines_and_replaces() -> None:
    s = override(spec(), variants=["largepage", "mine=vm-2g+largepage"], cmake=["-DAARCH64=0", "-DY=2"],
                 toolchain_image="orch-camkes:latest")
    assert [(v.name, v.patchsets) for v in s.variants] == [("largepage", ("vm-2g", "largepage")),
                                                            ("mine", ("vm-2g", "largepage"))]
    assert s.cmake == ("-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt", "-DAARCH64=0", "-DY=2")
    assert s.toolchain_image == "orch-camkes:latest"
    with pytest.raises(InputError, match="no variant named 'nope'"):
        override(spec(), variants=["nope"])


def test_images_dir_option(tmp_path: Path) -> None:
    s = spec(variants={"own": {"patchsets": [], "cmake": [f"-DCAMKES_VM_IMAGES_DIR={tmp_path}"]}})
    assert s.images_dir(s.variant("own")) == tmp_path
    with pytest.raises(InputError, match="is not a directory"):
        spec(build={**BUILD, "cmake": [*BUILD["cmake"], f"-DCAMKES_VM_IMAGES_DIR={tmp_path}/none"]})


def test_merge_options_later_wins() -> None:
    assert merge_options(["-DA=1", "-DB=2"], ["-DA=3"]) == ("-DB=2", "-DA=3")


def tree_with_settings(tmp_path: Path, settings: str) -> SourceTree:
    app = tmp_path / "projects" / "vm-examples" / "apps" / "Arm" / "vm_minimal"
    app.mkdir(parents=True)
    (app / "settings.cmake").write_text(settings)
    checkout = ProjectCheckout("projects/vm-examples", tmp_path / "projects" / "vm-examples", "0" * 40)
    return SourceTree(tmp_path, {checkout.path: checkout})


SETTINGS = """set(supported "qemu-arm-virt;tx2")
if("${PLATFORM}" STREQUAL "qemu-arm-virt")
    set(KernelArmCPU cortex-a53 CACHE STRING "" FORCE)
    set(QEMU_MEMORY "2048")
endif()
set(CAMKES_VM_APP "${CAMKES_VM_APP}")
"""


def test_check_against_settings(tmp_path: Path) -> None:
    tree = tree_with_settings(tmp_path, SETTINGS)
    assert check_spec(spec(), tree).warnings == []
    no64 = override(spec(), cmake=["-DAARCH64=0"])
    with pytest.raises(InputError, match="-DAARCH64=1 is missing") as caught:
        check_spec(no64, tree)
    assert caught.value.hint and "Unable to find valid cross-compiling GCC" in caught.value.hint
    with pytest.raises(InputError, match="contradicts platform"):
        check_spec(override(spec(), cmake=["-DPLATFORM=tx2"]), tree)
    with pytest.raises(InputError, match="does not support platform 'odroidc2'"):
        check_spec(override(spec(), platform="odroidc2", cmake=["-DPLATFORM=odroidc2"]), tree)


def test_check_without_settings_warns(tmp_path: Path) -> None:
    assert "no settings.cmake" in check_spec(spec(), SourceTree(tmp_path, {})).warnings[0]


def test_platform_arch() -> None:
    assert platform_arch("qemu-arm-virt") == "arm" and platform_arch("spike") == "riscv"
    assert platform_arch("pc99") == "x86_64"
