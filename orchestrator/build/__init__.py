"""The build stage: build specs and variants, per-variant worktrees, the builder and its cache."""
