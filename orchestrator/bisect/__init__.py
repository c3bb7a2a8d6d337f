"""`orch bisect`: find the manifest snapshot, then the project commit, that broke a variant."""
