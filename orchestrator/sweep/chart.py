"""The sweep chart: minimum mempool against guest RAM, one line per frame size, with the
configured default (80 MiB) and the bug report's estimate (2 nodes x 120 B per 4 KiB frame)
drawn for reference; written as PNG and SVG. matplotlib is imported here only, so commands
that draw nothing never pay for it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from orchestrator.analysis.memory import DEFAULT_MEMPOOL, GiB, MiB, format_bytes
from orchestrator.sweep.results import FIT_FRAME_SIZE, SEED_BYTES_PER_FRAME, SweepResult

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 5.0, 100  # an 800 x 500 PNG


def _series(result: SweepResult) -> dict[str, list[tuple[float, float]]]:
    """Frame-size label -> (x, minimum MiB) points; x is guest RAM in GiB when the probes'
    trees told it, else the first grid axis."""
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    axis = result.plan.grid[0].param if result.plan.grid else None
    for p in result.points:
        if p.minimum is None:
            continue
        if p.guest_ram is not None:
            x = p.guest_ram / GiB
        elif axis is not None:
            x = float(p.point[axis])
        else:
            x = 0.0
        label = f"{format_bytes(p.frame_size)} frames" if p.frame_size else "measured"
        lines[label].append((x, p.minimum / MiB))
    return {k: sorted(v) for k, v in sorted(lines.items())}


def draw(result: SweepResult, directory: Path) -> dict[str, Path]:
    """Write sweep.png and sweep.svg into ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    series = _series(result)
    by_ram = any(p.guest_ram is not None for p in result.points)
    figure, axes = pyplot.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    try:
        for label, points in series.items():
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=f"measured minimum, {label}")
        xs_all = sorted({x for points in series.values() for x, _ in points})
        if xs_all:
            axes.axhline(DEFAULT_MEMPOOL / MiB, color="grey", linestyle="--",
                         label=f"configured default ({format_bytes(DEFAULT_MEMPOOL)})")
        if by_ram and xs_all:
            seed = [x * GiB / FIT_FRAME_SIZE * SEED_BYTES_PER_FRAME / MiB for x in xs_all]
            axes.plot(xs_all, seed, color="red", linestyle=":",
                      label=f"bug report's estimate ({SEED_BYTES_PER_FRAME} B per 4 KiB frame)")
        fit = result.fit()
        title = f"orch sweep {result.plan.patchset}/{result.plan.variant}"
        if fit is not None:
            title += f": {fit.bytes_per_frame:.0f} B per 4 KiB frame"
        axes.set_title(title)
        first_axis = result.plan.grid[0].param if result.plan.grid else ""
        axes.set_xlabel("guest RAM (GiB)" if by_ram else first_axis)
        axes.set_ylabel(f"minimum {result.plan.search.param if result.plan.search else 'value'} (MiB)")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper left", fontsize="small")
        png, svg = directory / "sweep.png", directory / "sweep.svg"
        figure.savefig(png, dpi=DPI)
        figure.savefig(svg)
    finally:
        pyplot.close(figure)
    return {"png": png, "svg": svg}
