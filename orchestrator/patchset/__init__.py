"""The patchset stage: patchset.toml and patch files, dry-run checks, apply/revert/refresh, import."""
