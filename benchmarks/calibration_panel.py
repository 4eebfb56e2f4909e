"""Calibration panel: do skimpact's default settings report average effects honestly?

Six designs (and a variant of d), each simulated ``n_simulations`` times with a known true
average treatment effect (ATE) over the simulated rows, fitted with every estimator argument
at its default (``inference="auto"``) and summarised by
:func:`skimpact.calibration.calibrate_effect`:

a. ``linear``: linear outcome with a treatment x covariate interaction and correlated
   covariates (rho = 0.7), fitted through a Pipeline that adds the interaction column;
b. ``logistic``: binary outcome, ATE on the probability scale (``ImpactClassifier``);
c. ``hierarchical``: group intercepts (30 groups, 4 rows each) in a custom model;
d. ``confounder``: the confounder network of the interventions guide, with ``z`` observed
   and set by intervention on its input (do(z = 1) against do(z = 0));
d'. ``confounder_prior``: design d with the outcome model's coefficients drawn from their
   priors for each simulation (simulation-based calibration: the truth varies);
e. ``heteroscedastic``: noise sd growing with a covariate, fitted with the default
   (homoscedastic) linear model;
f. ``heterogeneous``: a confounded treatment whose effect varies with a covariate,
   ``tau(x) = 1 + x1``, fitted with ``effect_model("t")`` at its defaults; besides the ATE,
   the coverage of each row's 94% interval of its own effect against its true effect
   (``calibrate_effect(..., per_row=True)``).

For each design it also times one fit of plain NumPyro NUTS (``MCMC(NUTS(model))``, 500
warm-up and 500 draws, the same model and data; compilation included, as in a fit) and,
with ``--reference``, compares the default fit's posterior sd of the ATE with a long NUTS
run (4 chains x 2000 draws) on one dataset. With ``--exact`` it refits every simulated
dataset with long NUTS (2 chains x 2000 draws after 1000 warm-up) and reports that exact
posterior's bias against the truth beside the default fit's, and the default fit's mean
distance from it (``gap_sd``): a bias the exact posterior shares comes from the model and
its priors (a posterior mean is not unbiased for one fixed truth), not from the defaults.

Run from the repository root::

    python benchmarks/calibration_panel.py --n-simulations 100 --n-jobs 2 --reference
    python benchmarks/calibration_panel.py --n-simulations 100 --n-jobs 2 --exact \
        --designs confounder
    python benchmarks/calibration_panel.py --n-simulations 40 --designs heterogeneous \
        --no-plain-nuts
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.infer import MCMC, NUTS
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skimpact import (  # noqa: E402
    ImpactClassifier, ImpactRegressor, Model, effect, effect_model)
from skimpact.calibration import calibrate_effect  # noqa: E402


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------ a. linear, interaction
def add_interaction(X):
    """The features with the treatment x covariate column appended."""
    X = X.copy()
    X["t_x1"] = X["t"] * X["x1"]
    return X


def simulate_linear(rng, n=200):
    cov = 0.7 * np.ones((3, 3)) + 0.3 * np.eye(3)
    x = rng.multivariate_normal(np.zeros(3), cov, size=n)
    t = rng.binomial(1, _sigmoid(0.5 * x[:, 0])).astype(float)  # confounded by x1
    y = 1.0 + 2.0 * t + x[:, 0] - 0.5 * x[:, 1] + 1.5 * t * x[:, 0] + rng.normal(size=n)
    X = pd.DataFrame({"t": t, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]})
    return X, y, 2.0 + 1.5 * x[:, 0].mean()


def linear_estimator():
    return make_pipeline(FunctionTransformer(add_interaction), ImpactRegressor())


# ---------------------------------------------------------------------------- b. logistic
def simulate_logistic(rng, n=300):
    x = rng.normal(size=(n, 2))
    t = rng.binomial(1, 0.5, size=n).astype(float)
    eta = -0.5 + 0.8 * x[:, 0] - 0.5 * x[:, 1]
    y = rng.binomial(1, _sigmoid(eta + 1.0 * t))
    X = np.column_stack([t, x])
    return X, y, float(np.mean(_sigmoid(eta + 1.0) - _sigmoid(eta)))


# ------------------------------------------------------------------------ c. hierarchical
def group_intercepts():
    """Varying intercepts by group (non-centred), a common treatment slope and covariate."""

    def model(X, y=None, g=None, n_groups=30):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfNormal(2.0))
        with numpyro.plate("groups", n_groups):
            a_raw = numpyro.sample("a_raw", dist.Normal(0.0, 1.0))
        b = numpyro.sample("b", dist.Normal(0.0, 5.0).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
        mean = mu + tau * a_raw[g] + X @ b
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(mean, sigma), obs=y)

    return model


def simulate_hierarchical(rng, n_groups=30, per_group=4):
    g = np.repeat(np.arange(n_groups), per_group)
    a = rng.normal(0.0, 0.7, size=n_groups)
    n = g.size
    t = rng.binomial(1, 0.5, size=n).astype(float)
    x = rng.normal(size=n)
    y = a[g] + 0.8 * t + 0.5 * x + rng.normal(size=n)
    X = pd.DataFrame({"t": t, "x": x, "g": g})
    return X, y, 0.8


def hierarchical_estimator():
    return ImpactRegressor(Model(group_intercepts), inputs=["g"])


# -------------------------------------------------------------------------- d. confounder
def confounder_network():
    """The interventions guide's network with ``z`` observed (input ``Z``)."""

    def model(X, y=None, C=None, Z=None):
        beta_z = numpyro.sample("beta_z", dist.Normal(0.0, 1.0))
        beta_cz = numpyro.sample("beta_cz", dist.Normal(0.0, 1.0))
        beta_xz = numpyro.sample("beta_xz", dist.Normal(0.0, 1.0))
        beta_y = numpyro.sample("beta_y", dist.Normal(0.0, 1.0))
        beta_cy = numpyro.sample("beta_cy", dist.Normal(0.0, 1.0))
        beta_zy = numpyro.sample("beta_zy", dist.Normal(0.0, 1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("data", X.shape[0]):
            c = numpyro.sample("c", dist.Exponential(1.0), obs=C)
            z = numpyro.sample(
                "z", dist.LogNormal(beta_z + beta_cz * c + beta_xz * X[:, 0], sigma), obs=Z)
            numpyro.sample("y", dist.Bernoulli(logits=beta_y + beta_cy * c + beta_zy * z),
                           obs=y)

    return model


def simulate_confounder(rng, n=300):
    C = rng.exponential(1.0, size=n)
    x = rng.poisson(1.0, size=n).astype(float)
    Z = np.exp(rng.normal(0.1 + 0.4 * C + 0.3 * x, 0.3))
    y = rng.binomial(1, _sigmoid(-1.0 + 0.5 * C + 0.8 * Z))
    X = pd.DataFrame({"x": x, "C": C, "Z": Z})
    truth = np.mean(_sigmoid(-1.0 + 0.5 * C + 0.8) - _sigmoid(-1.0 + 0.5 * C))
    return X, y, float(truth)


def simulate_confounder_from_prior(rng, n=300):
    """Design d with the outcome model's coefficients drawn from their N(0, 1) priors.

    The likelihood of ``z`` and that of ``y`` share no parameter and the priors are
    independent, so the ATE's posterior depends on the ``y`` coefficients alone: drawing
    them from their prior makes this simulation-based calibration in the sense of Talts et
    al. (2018), where the exact posterior mean is unbiased on average over simulations.
    Draws whose outcomes are all 0 or all 1 are redrawn: conditioning on the data leaves
    the posterior of each kept dataset unchanged, so the calibration still holds.
    """
    C = rng.exponential(1.0, size=n)
    x = rng.poisson(1.0, size=n).astype(float)
    Z = np.exp(rng.normal(0.1 + 0.4 * C + 0.3 * x, 0.3))
    y = np.zeros(n)
    while y.min() == y.max():
        b_y, b_cy, b_zy = rng.normal(size=3)
        y = rng.binomial(1, _sigmoid(b_y + b_cy * C + b_zy * Z))
    X = pd.DataFrame({"x": x, "C": C, "Z": Z})
    truth = np.mean(_sigmoid(b_y + b_cy * C + b_zy) - _sigmoid(b_y + b_cy * C))
    return X, y, float(truth)


def confounder_estimator():
    return ImpactClassifier(Model(confounder_network), inputs=["C", "Z"])


# --------------------------------------------------------------------- e. heteroscedastic
def simulate_heteroscedastic(rng, n=200):
    x = rng.normal(size=(n, 2))
    t = rng.binomial(1, 0.5, size=n).astype(float)
    sd = np.exp(0.6 * x[:, 0])
    y = 1.0 + 1.0 * t + x[:, 0] + 0.5 * x[:, 1] + sd * rng.normal(size=n)
    return np.column_stack([t, x]), y, 1.0


# ----------------------------------------------------------------------- f. heterogeneous
def simulate_heterogeneous(rng, n=300):
    """Treatment confounded by x1 and x2, effect 1 + x1 varying by row (per-row truth)."""
    x = rng.normal(size=(n, 3))
    t = rng.binomial(1, _sigmoid(0.8 * x[:, 0] - 0.4 * x[:, 1])).astype(float)
    tau = 1.0 + x[:, 0]
    y = 0.5 + x[:, 0] - 0.5 * x[:, 1] + 0.5 * np.sin(2.0 * x[:, 2]) + tau * t \
        + rng.normal(0.0, 0.5, n)
    X = pd.DataFrame({"t": t, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]})
    return X, y, tau


def heterogeneous_estimator():
    return ImpactRegressor(effect_model("t"))


DESIGNS = {
    "linear": (linear_estimator, simulate_linear, {"t": 1.0}, {"t": 0.0}),
    "logistic": (ImpactClassifier, simulate_logistic, {0: 1.0}, {0: 0.0}),
    "hierarchical": (hierarchical_estimator, simulate_hierarchical, {"t": 1.0}, {"t": 0.0}),
    "confounder": (confounder_estimator, simulate_confounder, {"Z": 1.0}, {"Z": 0.0}),
    "confounder_prior": (confounder_estimator, simulate_confounder_from_prior, {"Z": 1.0},
                         {"Z": 0.0}),
    "heteroscedastic": (ImpactRegressor, simulate_heteroscedastic, {0: 1.0}, {0: 0.0}),
    "heterogeneous": (heterogeneous_estimator, simulate_heterogeneous, {"t": 1.0},
                      {"t": 0.0}),
}
#: Designs whose simulator gives each row's true effect (per-row coverage reported).
PER_ROW = {"heterogeneous"}


def _final(est):
    return est.steps[-1][1] if hasattr(est, "steps") else est


def plain_nuts_seconds(make_estimator, simulate, seed=0):
    """Seconds of one plain NumPyro NUTS run (500 + 500) on the model a default fit ran."""
    X, y, _ = simulate(np.random.default_rng(seed))
    est = make_estimator().fit(X, y)
    final = _final(est)
    Xt = est[:-1].transform(X) if hasattr(est, "steps") else X
    program = final.predictor_.program
    rows = final.predictor_.scenario(Xt, {}).rows
    kwargs = {program.outcome: np.asarray(final.predictor_.encode_outcome(y, rows.n)),
              **program.inputs(rows.inputs)}
    start = time.perf_counter()
    mcmc = MCMC(NUTS(program.model), num_warmup=500, num_samples=500, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), rows.X, **kwargs)
    jax.block_until_ready(mcmc.get_samples())
    return time.perf_counter() - start


EXACT = {"inference": "nuts", "num_warmup": 1000, "num_samples": 2000, "num_chains": 2}


def _with_params(est, params):
    prefix = f"{est.steps[-1][0]}__" if hasattr(est, "steps") else ""
    return est.set_params(**{prefix + k: v for k, v in params.items()})


def exact_comparison(make_estimator, simulate, intervention, baseline, default, n_jobs):
    """Refit the default run's datasets with long NUTS and compare the two per dataset."""
    exact = calibrate_effect(_with_params(make_estimator(), EXACT), simulate, intervention,
                             baseline, n_simulations=len(default.table), n_jobs=n_jobs,
                             random_state=0)
    e, d = exact.table, default.table
    assert np.allclose(e["true_effect"], d["true_effect"])  # the same datasets
    gap = (d["mean"] - e["mean"]) / e["sd"]
    return {
        "exact_coverage": exact.summary["coverage"],
        "exact_bias_sd": exact.summary["mean_bias_sd"],
        "gap_sd": float(gap.mean()),
        "gap_sd_se": float(gap.std(ddof=1) / np.sqrt(len(gap))),
        "sd_ratio_all": float((d["sd"] / e["sd"]).mean()),
    }


def reference_sd_ratio(make_estimator, simulate, intervention, baseline, seed=0):
    """Posterior sd of the ATE from a default fit over that of a long NUTS run."""
    X, y, _ = simulate(np.random.default_rng(seed))
    sds = []
    for params in ({}, {"inference": "nuts", "num_warmup": 1000, "num_samples": 2000,
                        "num_chains": 4}):
        est = _with_params(make_estimator(), {**params, "random_state": seed}).fit(X, y)
        tree = effect(est, X, intervention, baseline, kind="mean")
        da = tree["predictions"][tree.attrs["outcome"]].mean(tree.attrs["row_dim"])
        sds.append(float(da.std()))
    return sds[0] / sds[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-simulations", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--reference", action="store_true",
                        help="also compare the posterior sd with a long NUTS run")
    parser.add_argument("--exact", action="store_true",
                        help="refit every dataset with long NUTS and compare per dataset")
    parser.add_argument("--no-plain-nuts", action="store_true",
                        help="skip timing plain NumPyro NUTS (minutes on correlated models)")
    parser.add_argument("--out", default=None, help="write the table to this CSV file")
    args = parser.parse_args(argv)
    rows = []
    for name in args.designs.split(","):
        make, simulate, intervention, baseline = DESIGNS[name]
        start = time.perf_counter()
        result = calibrate_effect(make(), simulate, intervention, baseline,
                                  n_simulations=args.n_simulations, n_jobs=args.n_jobs,
                                  random_state=0, per_row=name in PER_ROW)
        s = result.summary
        row = {
            "design": name,
            "sims": int(s["n_simulations"]),
            "method": "/".join(sorted(result.table["method"].unique())),
            "coverage": s["coverage"],
            "bias_sd": s["mean_bias_sd"],
            "bias_sd_se": s["mean_bias_sd_se"],
            "mean_width": s["mean_width"],
            "fit_s": s["mean_fit_seconds"],
            "warned": s["share_warned"],
            "plain_nuts_s": (np.nan if args.no_plain_nuts
                             else plain_nuts_seconds(make, simulate)),
            "share_nuts": float((result.table["method"] == "nuts").mean()),
            "wall_s": time.perf_counter() - start,
        }
        if "mean_row_coverage" in s:
            row["row_coverage"] = s["mean_row_coverage"]
        if args.out:
            result.table.to_csv(Path(args.out).with_suffix(f".{name}.csv"))
        if args.reference:
            row["sd_ratio"] = reference_sd_ratio(make, simulate, intervention, baseline)
        if args.exact:
            row.update(exact_comparison(make, simulate, intervention, baseline, result,
                                        args.n_jobs))
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate()
          else table.to_string(index=False, float_format="%.3f"))
    if args.out:
        table.to_csv(args.out, index=False)
    return table


def _has_tabulate():
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
