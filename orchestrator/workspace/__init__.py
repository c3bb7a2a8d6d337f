"""The workspace stage: repo manifests, git plumbing, sync and status of the checkouts."""
