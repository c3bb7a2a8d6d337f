"""`orch build`: placeholder until its issue lands."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator.errors import OrchError
from orchestrator.ui import UI


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("build", parents=[common], help="(not yet implemented)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, ui: UI) -> int:
    raise OrchError("orch build is not implemented yet")
