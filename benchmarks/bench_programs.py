"""Compiled programs held by a long-lived process fitting many shapes.

Fits the benchmark linear model (MAP, 20 steps, 10 draws) on ``fits`` distinct row
counts (50, 51, ...) in one process and prints, every 10 fits, the programs compiled, the
releases of the program bound and the memory maps of the process (``/proc/self/maps``),
against ``vm.max_map_count``. Run from the repository root::

    SKIMPACT_COMPILATION_CACHE=0 python benchmarks/bench_programs.py 80
    SKIMPACT_COMPILATION_CACHE=0 SKIMPACT_MAX_MAPS=0 python benchmarks/bench_programs.py 80
"""

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent))

from _common import compile_count, data, linear  # noqa: E402

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from skimpact import ImpactRegressor, Model  # noqa: E402
from skimpact._compilation_cache import PROGRAMS  # noqa: E402


def _maps():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def main(fits=80):
    with open("/proc/sys/vm/max_map_count") as f:
        limit = int(f.read())
    print(f"vm.max_map_count {limit}; bound {PROGRAMS.limit or 'none'} maps; "
          f"maps at start {_maps()}")
    # 20 steps are too few for the loss to settle; what is measured here is memory maps.
    warnings.simplefilter("ignore", ConvergenceWarning)
    start, peak = time.perf_counter(), 0
    for i in range(fits):
        X, y = data(50 + i)
        ImpactRegressor(Model(linear), inference="map", num_steps=20, num_samples=10,
                        random_state=0).fit(X, y)
        peak = max(peak, _maps())
        if (i + 1) % 10 == 0:
            print(f"{i + 1} fits: {compile_count()} programs compiled, {PROGRAMS.releases} "
                  f"releases, {_maps()} maps (peak {peak}, {peak / limit:.1%} of the limit), "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 80)
