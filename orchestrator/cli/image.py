"""`orch image build|list|inspect`: the offline seL4/CAmkES toolchain image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from orchestrator.errors import EXIT_OK
from orchestrator.runtime import toolchain_image as image
from orchestrator.ui import UI


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "image", parents=[common], help="build and list orch's seL4/CAmkES toolchain image",
        description="Build the toolchain image from the shipped docker/ directory on a Debian "
        "bookworm base, with no Docker Hub access.",
    )
    actions = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)

    build = actions.add_parser("build", parents=[common], help="build (or reuse) the toolchain image")
    build.add_argument("--base-image", metavar="IMG", default=image.DEFAULT_BASE_IMAGE,
                       help=f"Debian bookworm image to start from (default: {image.DEFAULT_BASE_IMAGE})")
    build.add_argument("--target", metavar="STAGE", choices=image.STAGES, default=image.DEFAULT_TARGET,
                       help=f"Dockerfile stage: {', '.join(image.STAGES)} (default: {image.DEFAULT_TARGET})")
    build.add_argument("--tag", metavar="TAG", default=None,
                       help=f"image tag (default: {image.DEFAULT_REPOSITORY}:STAGE)")
    wheels = build.add_mutually_exclusive_group()
    wheels.add_argument("--no-wheels", action="store_true",
                        help="skip host-built wheels: the image's pip fetches sel4-deps/camkes-deps itself")
    wheels.add_argument("--wheels-dir", metavar="DIR", type=Path, default=None,
                        help="install the wheels already in DIR instead of running pip wheel on the host")
    build.add_argument("--rebuild", action="store_true",
                       help="build even if an image with this tag and the same inputs exists")
    build.add_argument("--no-cache", action="store_true",
                       help="rebuild every layer (fresh apt packages); implies --rebuild")
    build.set_defaults(func=handle_build)

    listing = actions.add_parser("list", parents=[common], help="list the toolchain images orch built")
    listing.set_defaults(func=handle_list)

    inspect = actions.add_parser("inspect", parents=[common], help="show one toolchain image")
    inspect.add_argument("name", metavar="IMAGE", help="tag or ID")
    inspect.set_defaults(func=handle_inspect)


def handle_build(args: argparse.Namespace, ui: UI) -> int:
    spec = image.ImageSpec(
        base_image=args.base_image, target=args.target, tag=args.tag,
        wheels=not args.no_wheels, wheels_dir=args.wheels_dir,
    )
    built = image.ensure_image(spec, ui, rebuild=args.rebuild, no_cache=args.no_cache)
    table = Table(show_header=False, box=None)
    table.add_row("image", built.tag)
    table.add_row("id", built.image_id)
    table.add_row("target", built.target)
    table.add_row("base", built.base_image)
    table.add_row("status", "up to date (reused)" if built.cached else f"built in {built.duration_s:.0f} s")
    table.add_row("size", mib(built.size_bytes))
    table.add_row("wheels", str(len(built.wheels)))
    ui.result(built, table)
    return EXIT_OK


def handle_list(args: argparse.Namespace, ui: UI) -> int:
    images = image.list_images()
    table = Table("tag", "id", "target", "base", "created", "size")
    for summary in images:
        table.add_row(", ".join(summary.tags) or "<none>", image.short_id(summary.image_id),
                      summary.target, summary.base_image, summary.created[:19], mib(summary.size_bytes))
    ui.result(images, table if images else "no toolchain images: orch image build")
    return EXIT_OK


def handle_inspect(args: argparse.Namespace, ui: UI) -> int:
    summary = image.inspect_image(args.name)
    table = Table(show_header=False, box=None)
    table.add_row("tags", ", ".join(summary.tags))
    table.add_row("id", summary.image_id)
    table.add_row("target", summary.target)
    table.add_row("base", f"{summary.base_image} ({image.short_id(summary.base_image_id)})")
    table.add_row("created", summary.created)
    table.add_row("size", mib(summary.size_bytes))
    table.add_row("wheels", str(summary.wheels))
    for key, value in summary.labels.items():
        table.add_row(key, value)
    ui.result(summary, table)
    return EXIT_OK


def mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"
