"""orch: patch management and build orchestration for seL4 workspaces.

The package is a library first: manifest -> workspace -> patchset -> build -> run -> results,
with bisect and upstream on top; ``orchestrator.cli`` is a thin layer over it.
"""

__version__ = "0.1.0"
