"""Fanning points (variants, sweep probes, bisect steps) out over many machines.

Points are tasks described by data only (:mod:`.task`); an engine runs them in this process or
on a Dask distributed cluster (:mod:`.engine`), each on a worker that syncs a cached workspace
at the task's pins (:mod:`.worker`); `orch build --cluster` splits a build into its variants
(:mod:`.fanout`); `orch matrix --github` writes the same points as a GitHub Actions job matrix
(:mod:`.matrix`); results come back as ordinary results directories, merged by
:mod:`orchestrator.report.merge`.
"""
