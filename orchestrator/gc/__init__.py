"""Disk use of a workspace's ``.orch/`` and removing what is no longer needed (``orch gc``,
``orch clean``), never a build or boot that a kept results directory refers to."""
