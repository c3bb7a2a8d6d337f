"""The per-build analysis (VMM pool from the ELF, the seed's bookkeeping) and its cache."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestrator.analysis.cache import analyse, analyser_key
from orchestrator.build.builder import BuildResult
from orchestrator.build.spec import BuildSpec
from orchestrator.build.variant_tree import variant_base
from orchestrator.layout import ANALYSIS_DIR
from tests.conftest import require_tools

POOL_C = """
static char allocator_mempool[0x100000] __attribute__((aligned(4096), section("align_12bit")));
int main(void) { return allocator_mempool[0]; }
"""


def built_variant(root: Path, spec: BuildSpec) -> BuildResult:
    """A variant's build dir as a successful build leaves it: the component ELF and the image."""
    build_dir = variant_base(root, "largepage") / "build"
    (build_dir / "images").mkdir(parents=True)
    source = build_dir / "pool.c"
    source.write_text(POOL_C)
    subprocess.run(["gcc", "-O0", "-o", str(build_dir / "vm0.instance.bin"), str(source)], check=True)
    image = build_dir / spec.boot_image_name
    image.write_bytes(b"image")
    return BuildResult(variant="largepage", status="pass", cached=True, output_dir=build_dir,
                       log=build_dir / "build.log", metadata={}, inputs_hash="ab" * 32, boot_image=image)


def test_a_remembered_analysis_from_other_analysis_code_is_not_reused(tmp_path: Path) -> None:
    """A cached build must not keep showing figures an older (buggy) readout computed."""
    require_tools("gcc")
    spec = BuildSpec(app="vm_minimal", platform="qemu-arm-virt", cmake=(), variants=())
    build = built_variant(tmp_path, spec)
    stale = {"scanned": "x", "mempool": None, "bss": None, "memory": {"frame_size": 4096}}
    (tmp_path / ANALYSIS_DIR).mkdir(parents=True)
    (tmp_path / ANALYSIS_DIR / f"{'ab' * 8}.json").write_text(json.dumps(stale))  # old naming
    data = analyse(build, spec, tmp_path)
    assert data.mempool is not None
    assert data.mempool.size == 0x100000 and data.mempool.file == "vm0.instance.bin"
    remembered = tmp_path / ANALYSIS_DIR / f"{'ab' * 8}-{analyser_key()}.json"
    assert json.loads(remembered.read_text())["mempool"]["size"] == 0x100000
    (build.boot_image or Path()).unlink()  # the second call must come from the cache
    assert analyse(build, spec, tmp_path) == data
