"""`orch sweep`: vary declared parameters, build and boot each value, and find thresholds.

- :mod:`.plan`: what a sweep is (axes, search, grid points) and how each grid point is
  described as data (:class:`~.plan.PointTask`);
- :mod:`.search`: the binary search of the smallest passing value, and monotonicity checks;
- :mod:`.probe`: one grid point as a function ``run_point(PointTask) -> PointResult``
  (build + boot per probe), independent of every other point, so points can be fanned out;
- :mod:`.runner`: budget, resume state, progress, the local pool of points;
- :mod:`.results`: table, ``sweep.json``, ``sweep.csv``, Markdown and the bytes-per-frame fit;
- :mod:`.chart`: the PNG/SVG chart (matplotlib, imported only when a chart is drawn).
"""
