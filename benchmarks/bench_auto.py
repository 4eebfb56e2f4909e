"""Is ``inference="auto"`` ever much slower than the method it did not pick?

For each design, one fit with ``inference="auto"``, one with ``"svi"`` and one with
``"nuts"`` (every other argument at its default), each the first fit of a fresh process
with skimpact's compilation cache switched off, so every fit pays its compilations as a
new user's first fit does. Prints the seconds of each fit, the method auto ran, and auto's
time over the faster of the two forced methods and over the method it did not run.

Designs: the seven of the calibration panel (``calibration_panel.py``, first simulated
dataset), the retail model of ``bench_workflow.py`` (5,000 rows, its Pipeline) and a
100,000-row linear regression (5 features, the built-in model).

Run from the repository root (about 10 minutes on 2 cores)::

    python benchmarks/bench_auto.py [design,design,...]
"""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ARMS = ("auto", "svi", "nuts")


def design(name):
    """``(estimator, X, y)`` of one design, its estimator with every argument at default."""
    sys.path.insert(0, str(HERE))
    if name == "retail":
        from bench_workflow import retail_pipeline, simulate
        X, y = simulate()
        return retail_pipeline(), X, y
    if name == "regression_100k":
        from _common import data

        from skimpact import ImpactRegressor
        X, y = data(100_000)
        return ImpactRegressor(random_state=0), X, y
    from calibration_panel import DESIGNS
    make_estimator, simulate = DESIGNS[name][:2]
    X, y, _ = simulate(np.random.default_rng(0))
    return make_estimator(), X, y


def one_fit(name, arm):
    """Fit one design with one arm in this process: ``{seconds, method, converged}``."""
    from sklearn.exceptions import ConvergenceWarning
    est, X, y = design(name)
    final = est.steps[-1][1] if hasattr(est, "steps") else est
    final.set_params(inference=arm)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    seconds = time.perf_counter() - start
    choice = final.diagnostics_.get("inference_choice", {})
    return {"seconds": seconds, "method": final.inference_,
            "converged": bool(final.diagnostics_["converged"]),
            "reason": str(choice.get("reason", ""))[:80]}


def in_fresh_process(name, arm):
    env = dict(os.environ, SKIMPACT_COMPILATION_CACHE="0", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, __file__, "--one", name, arm], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(names):
    print(f"{'design':<18} {'auto s':>7} {'ran':<5} {'svi s':>7} {'nuts s':>7} "
          f"{'auto / faster':>13} {'auto / other':>12}  converged (auto, svi, nuts)")
    for name in names:
        runs = {arm: in_fresh_process(name, arm) for arm in ARMS}
        auto = runs["auto"]
        other = "nuts" if auto["method"] == "svi" else "svi"
        faster = min(runs["svi"]["seconds"], runs["nuts"]["seconds"])
        print(f"{name:<18} {auto['seconds']:7.1f} {auto['method']:<5} "
              f"{runs['svi']['seconds']:7.1f} {runs['nuts']['seconds']:7.1f} "
              f"{auto['seconds'] / faster:13.2f} "
              f"{auto['seconds'] / runs[other]['seconds']:12.2f}  "
              f"{auto['converged']}, {runs['svi']['converged']}, {runs['nuts']['converged']}",
              flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one_fit(sys.argv[2], sys.argv[3])))
    else:
        from calibration_panel import DESIGNS
        default = list(DESIGNS) + ["retail", "regression_100k"]
        main(sys.argv[1].split(",") if len(sys.argv) > 1 else default)
