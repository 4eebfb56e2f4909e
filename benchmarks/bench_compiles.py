"""Compilations: repeated counterfactual predictions and a 5-fold x 4-setting GridSearchCV.

Usage: ``python benchmarks/bench_compiles.py``. Counts XLA compilations (JAX's
``backend_compile`` events) and reports how many happen after the first call.
"""

import time
import warnings

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold

from _common import compile_count, data, linear, report

from skimpact import ImpactRegressor, Model


def main():
    warnings.simplefilter("ignore")
    X, y = data(1000)
    rows = []
    est = ImpactRegressor(Model(linear), inference="svi", num_steps=1000, num_samples=500, random_state=0)
    est.fit(X, y)
    c0, t0 = compile_count(), time.perf_counter()
    est.counterfactual_predict(X, {"b": np.zeros(5)})
    first = (compile_count() - c0, time.perf_counter() - t0)
    c0, t0 = compile_count(), time.perf_counter()
    for v in np.linspace(-1, 1, 20):
        est.counterfactual_predict(X, {"b": np.full(5, v)})
    rows.append({"case": "counterfactual_predict x20, same names, new values",
                 "first_call_compiles": first[0], "compiles_after_first": compile_count() - c0,
                 "seconds_per_call": (time.perf_counter() - t0) / 20})
    c0, t0 = compile_count(), time.perf_counter()
    for n in (1000, 700, 999, 513, 1000):
        est.counterfactual_predict(X[:n], {"b": np.zeros(5)})
    rows.append({"case": "counterfactual_predict, N in 1000,700,999,513 (one 1024-row bucket)",
                 "first_call_compiles": "-", "compiles_after_first": compile_count() - c0,
                 "seconds_per_call": (time.perf_counter() - t0) / 5})

    grid = {"model__prior_scale": [0.5, 1.0], "learning_rate": [0.01, 0.02]}
    search = GridSearchCV(
        ImpactRegressor(Model(linear), inference="svi", num_steps=1000, num_samples=200, random_state=0),
        grid, cv=KFold(5), n_jobs=1,
    )
    c0, t0 = compile_count(), time.perf_counter()
    search.fit(X, y)
    total = compile_count() - c0
    c1 = compile_count()
    search.fit(X, y)
    rows.append({"case": "GridSearchCV 5 folds x 4 settings (+ refit): first search / again",
                 "first_call_compiles": total, "compiles_after_first": compile_count() - c1,
                 "seconds_per_call": time.perf_counter() - t0})
    report(rows)


if __name__ == "__main__":
    main()
