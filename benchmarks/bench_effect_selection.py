"""Choosing an effect model on IHDP: effect-aware scorers against CRPS.

For each realisation r of ``../shared/data/ihdp`` (train and test units as in
``bench_ihdp.py``), three models are cross-validated on the train units (3 folds, shuffled
with seed r) with three scorers, :func:`skimpact.metrics.effect_scorer` (R-loss and
doubly-robust) and :data:`skimpact.metrics.neg_crps_scorer`, and refitted on all train
units to measure sqrt(PEHE) on the test units:

* ``constant``: the built-in linear ``Model`` (one treatment slope: a constant effect);
* ``per-arm``: the built-in linear model on the covariates and their products with ``T`` (a
  Pipeline, so the effect is linear in the covariates, separately for each arm);
* ``effect_model``: ``skimpact.effect_model("T")`` with its defaults.

Each scorer picks the model with the greatest mean cross-validated score; reported is how
often that pick is the model of lowest test sqrt(PEHE), and the mean test sqrt(PEHE) of
each scorer's picks. Run from the repository root::

    python benchmarks/bench_effect_selection.py --realisations 1-10
    python benchmarks/bench_effect_selection.py                      # all 50
    python benchmarks/bench_effect_selection.py --table a.json b.json   # parts run apart
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ihdp import DATA, load, realisations  # noqa: E402
from skimpact import ImpactRegressor, effect, effect_model  # noqa: E402
from skimpact.metrics import effect_scorer, neg_crps_scorer  # noqa: E402

MODELS = ("constant", "per-arm", "effect_model")
SCORERS = {"r_loss": effect_scorer("T"), "dr": effect_scorer("T", method="dr"),
           "crps": neg_crps_scorer}


def with_interactions(X):
    """X and the products of the treatment column ``T`` with every other column."""
    out = X.copy()
    for c in X.columns.drop("T"):
        out[f"T_{c}"] = X["T"] * X[c]
    return out


def candidates(settings, seed):
    fit = {**settings, "random_state": seed}
    return {
        "constant": ImpactRegressor(**fit),
        "per-arm": make_pipeline(FunctionTransformer(with_interactions), ImpactRegressor(**fit)),
        "effect_model": ImpactRegressor(effect_model("T"), **fit),
    }


def test_pehe(est, X, tau):
    eff = effect(est, X, {"T": 1.0}, {"T": 0.0})
    cate = eff["predictions"]["y"].mean(("chain", "draw")).values
    return float(np.sqrt(np.mean((cate - tau) ** 2)))


def run(r, test, settings, folds):
    X, y, _, X_test, tau_test = load(r, test)
    start = time.perf_counter()
    cv = KFold(folds, shuffle=True, random_state=r)
    result = {"realisation": r, "cv": {}, "pehe": {}}
    for name, est in candidates(settings, r).items():
        scores = cross_validate(est, X, y, cv=cv, scoring=SCORERS)
        result["cv"][name] = {k: float(np.mean(scores[f"test_{k}"])) for k in SCORERS}
        result["pehe"][name] = test_pehe(est.fit(X, y), X_test, tau_test)
    result["best"] = min(MODELS, key=result["pehe"].get)
    result["picks"] = {k: max(MODELS, key=lambda m: result["cv"][m][k]) for k in SCORERS}
    result["seconds"] = time.perf_counter() - start
    return result


def table(results):
    n = len(results)
    lines = ["| scorer | picks the lowest test sqrt(PEHE) | mean test sqrt(PEHE) of its picks "
             "| picks constant / per-arm / effect_model |", "|---|---|---|---|"]
    for k in SCORERS:
        hits = sum(res["picks"][k] == res["best"] for res in results)
        pehe = np.mean([res["pehe"][res["picks"][k]] for res in results])
        counts = " / ".join(str(sum(res["picks"][k] == m for res in results)) for m in MODELS)
        lines.append(f"| {k} | {hits}/{n} ({hits / n:.0%}) | {pehe:.2f} | {counts} |")
    oracle = np.mean([res["pehe"][res["best"]] for res in results])
    counts = " / ".join(str(sum(res["best"] == m for res in results)) for m in MODELS)
    lines.append(f"| oracle (test sqrt(PEHE)) | {n}/{n} | {oracle:.2f} | {counts} |")
    means = ", ".join(f"{m} {np.mean([res['pehe'][m] for res in results]):.2f}" for m in MODELS)
    return "\n".join(lines) + f"\n\nMean test sqrt(PEHE) per model: {means}."


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realisations", default="1-50", help="e.g. 1-10 or 1,3,5")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--json", help="also write each realisation's numbers here")
    parser.add_argument("--table", nargs="+", metavar="JSON",
                        help="only print the table of these --json files (runs split in parts)")
    args = parser.parse_args()
    if args.table:
        merged = {}  # by realisation, the first file's when several hold one
        for f in args.table:
            for res in json.loads(Path(f).read_text()):
                merged.setdefault(res["realisation"], res)
        print(table([merged[r] for r in sorted(merged)]))
        return
    warnings.simplefilter("ignore", ConvergenceWarning)
    test = np.load(DATA / "ihdp_npci_1-100.test.npz")
    settings = {"inference": "svi", "num_steps": args.num_steps,
                "num_samples": args.num_samples}
    results = []
    for r in realisations(args.realisations):
        res = run(r, test, settings, args.folds)
        results.append(res)
        print(f"r={r:2d} {res['seconds']:5.1f} s  best {res['best']:12s} picks "
              + " ".join(f"{k}={v}" for k, v in res["picks"].items()) + "  sqrt(PEHE) "
              + " ".join(f"{m} {res['pehe'][m]:.2f}" for m in MODELS), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
