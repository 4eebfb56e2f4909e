"""Heterogeneous effects on the IHDP benchmark with the built-in ``effect_model``.

For each realisation r of ``../shared/data/ihdp`` (Hill 2011; the "NPCI" realisations of
Johansson, Shalit and Sontag 2016): the 75 test units named by ``ihdp_npci_1-100.test.npz``
are found among the CSV's 747 rows (on the covariates but x14, coded differently in the two
files, and mu0, mu1); the other 672 rows are the train units.
``ImpactRegressor(effect_model("T"))`` with the model's defaults is fitted on the train units
(with ``--inference``, ``--num-steps`` and ``--num-samples`` as given, or with every estimator
setting at its default under ``--defaults``),
and ``effect(est, X, {"T": 1.0}, {"T": 0.0})`` gives each unit's effect on the train units
(in-sample) and the test units (out-of-sample). True unit effects are ``mu1 - mu0``.

Reported per realisation and as means: sqrt(PEHE) (root mean squared error of the per-unit
effects), eps_ATE (absolute error of the average effect), whether the 94% HDI of the
average effect covers the true sample ATE, the share of units whose 94% HDI covers their
true effect, the fits that warned they had not converged, and seconds per realisation (fit
and both effects; each line also gives the process's CPU seconds, which a loaded machine
inflates less). Run from the repository root::

    python benchmarks/bench_ihdp.py --realisations 1-10
    python benchmarks/bench_ihdp.py                      # all 50
    python benchmarks/bench_ihdp.py --defaults           # the estimator's defaults
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skimpact import ImpactRegressor, effect, effect_model, summarize_effect  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ihdp"
PROB = 0.94

#: Shalit, Johansson and Sontag (2017), Table 1 (1000 realisations), and least squares on
#: these 50 (from ``../shared/README.md``): sqrt(PEHE) in / out, eps_ATE in / out.
PUBLISHED = [
    ("OLS, one treatment slope (50 realisations)", 6.10, 6.30, 0.73, 0.75),
    ("OLS, slopes per arm (50 realisations)", 2.48, 2.85, 0.18, 0.33),
    ("BART", 2.1, 2.3, 0.23, 0.34),
    ("causal forest", 3.8, 3.8, 0.18, 0.40),
    ("BNN", 2.2, 2.1, 0.37, 0.42),
    ("TARNet", 0.88, 0.95, 0.26, 0.28),
    ("CFR-WASS", 0.71, 0.76, 0.25, 0.27),
]


def realisations(spec):
    """``"1-10"``, ``"1,4,7"`` or a mix, as a list of ints."""
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def load(r, test):
    """Train and test frames (treatment column ``T`` first), outcomes and true effects."""
    d = np.loadtxt(DATA / f"ihdp_npci_{r}.csv", delimiter=",")
    x = d[:, 5:]
    keep = [j for j in range(25) if j != 13]  # x14: 0/1 in the CSV, 1/2 in the npz
    key = np.column_stack([x[:, keep], d[:, 3], d[:, 4]])
    test_key = np.column_stack([test["x"][:, keep, r - 1], test["mu0"][:, r - 1],
                                test["mu1"][:, r - 1]])
    gap = np.abs(key[None, :, :] - test_key[:, None, :]).max(axis=2)  # (75, 747)
    rows = gap.argmin(axis=1)
    if gap.min(axis=1).max() > 1e-6 or np.unique(rows).size != rows.size:
        raise ValueError(f"realisation {r}: the test units do not match rows of the CSV")
    is_test = np.zeros(len(d), bool)
    is_test[rows] = True
    X = pd.DataFrame(x, columns=[f"x{j}" for j in range(1, 26)])
    X.insert(0, "T", d[:, 0])
    tau = d[:, 4] - d[:, 3]
    return (X[~is_test].reset_index(drop=True), d[~is_test, 1], tau[~is_test],
            X[is_test].reset_index(drop=True), tau[is_test])


def scores(est, X, tau):
    """sqrt(PEHE), eps_ATE, ATE-interval cover and per-unit cover on rows X."""
    eff = effect(est, X, {"T": 1.0}, {"T": 0.0})
    rows = summarize_effect(eff, per_row=True, prob=PROB)
    ate = summarize_effect(eff, prob=PROB).iloc[0]
    cate = rows["mean"].to_numpy()
    inside = (rows["hdi_lower"].to_numpy() <= tau) & (tau <= rows["hdi_upper"].to_numpy())
    return {
        "pehe": float(np.sqrt(np.mean((cate - tau) ** 2))),
        "eps_ate": float(abs(cate.mean() - tau.mean())),
        "ate_covered": bool(ate["hdi_lower"] <= tau.mean() <= ate["hdi_upper"]),
        "cate_cover": float(inside.mean()),
    }


def run(r, test, settings):
    X, y, tau, X_test, tau_test = load(r, test)
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est = ImpactRegressor(effect_model("T"), random_state=r, **settings).fit(X, y)
    result = {"realisation": r, "in": scores(est, X, tau), "out": scores(est, X_test, tau_test),
              "warned": any(issubclass(w.category, ConvergenceWarning) for w in caught)}
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    result["inference"] = est.inference_
    return result


def table(results):
    """The markdown table: this run's means beside the published rows."""
    n = len(results)

    def mean(side, k):
        return np.mean([res[side][k] for res in results])

    covered = sum(res["in"]["ate_covered"] for res in results)
    lines = [
        "| method | sqrt(PEHE) in | sqrt(PEHE) out | eps_ATE in | eps_ATE out | "
        "ATE 94% HDI covers (in) | mean CATE 94% HDI cover in / out | fits warned | "
        "s per realisation |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| skimpact `effect_model` ({n} realisations) | {mean('in', 'pehe'):.2f} | "
        f"{mean('out', 'pehe'):.2f} | {mean('in', 'eps_ate'):.2f} | "
        f"{mean('out', 'eps_ate'):.2f} | {covered}/{n} | {mean('in', 'cate_cover'):.2f} / "
        f"{mean('out', 'cate_cover'):.2f} | {sum(res['warned'] for res in results)}/{n} | "
        f"{np.mean([res['seconds'] for res in results]):.1f} |",
    ]
    lines += [f"| {name} | {a} | {b} | {c} | {d} | | | | |" for name, a, b, c, d in PUBLISHED]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realisations", default="1-50", help="e.g. 1-10 or 1,3,5")
    parser.add_argument("--inference", default="svi")
    parser.add_argument("--num-steps", type=int, default=4000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--defaults", action="store_true",
                        help="every estimator setting at its default (inference='auto'); "
                        "overrides the three above")
    parser.add_argument("--json", help="also write each realisation's numbers here")
    args = parser.parse_args()
    test = np.load(DATA / "ihdp_npci_1-100.test.npz")
    settings = {} if args.defaults else {
        "inference": args.inference, "num_steps": args.num_steps,
        "num_samples": args.num_samples}
    results = []
    for r in realisations(args.realisations):
        res = run(r, test, settings)
        results.append(res)
        print(f"r={r:2d} {res['seconds']:5.1f} s ({res['cpu_seconds']:5.1f} s CPU, "
              f"{res['inference']})  in: sqrt(PEHE) {res['in']['pehe']:.3f} "
              f"eps_ATE {res['in']['eps_ate']:.3f} ATE covered {res['in']['ate_covered']} "
              f"CATE cover {res['in']['cate_cover']:.2f}  out: sqrt(PEHE) "
              f"{res['out']['pehe']:.3f} eps_ATE {res['out']['eps_ate']:.3f} CATE cover "
              f"{res['out']['cate_cover']:.2f}{'  warned' if res['warned'] else ''}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
