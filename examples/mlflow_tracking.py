"""
Tracking a fit with MLflow
==========================

Fit an :class:`~skimpact.ImpactRegressor`, log it with
:func:`skimpact.tracking.log_estimator` to a local MLflow store, and load it back with
``mlflow.sklearn.load_model``. The run holds

* the estimator as an ``mlflow.sklearn`` model (the loaded estimator predicts and answers
  counterfactual questions like the original),
* its settings as parameters,
* its convergence diagnostics as metrics (final loss and relative ELBO change for SVI;
  divergences, worst r_hat and smallest ESS for NUTS),
* ``skimpact/posterior.nc``, ``skimpact/summary.csv`` and ``skimpact/diagnostics.json`` as
  artifacts.

Needs the ``mlflow`` extra: ``pip install 'skimpact[mlflow]'``. The store is a temporary
folder here; point ``mlflow.set_tracking_uri`` at your tracking server instead.
"""

import os
import tempfile
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd

from skimpact import ImpactRegressor, summarize_effect
from skimpact.tracking import log_estimator


def simulate(n=300, seed=0):
    """Sales fall by 1.5 per unit of price; advertising adds 0.8 per unit."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"price": rng.normal(size=n), "ads": rng.normal(size=n)})
    y = 10.0 - 1.5 * X["price"] + 0.8 * X["ads"] + rng.normal(0, 0.5, n)
    return X, y.to_numpy()


def main(store=None, num_steps=1500):
    """Fit, log and reload; return the run's metrics and the reloaded price effect."""
    X, y = simulate()
    est = ImpactRegressor(inference="svi", num_steps=num_steps, num_samples=200, random_state=0).fit(X, y)

    # MLflow 3 keeps its plain-folder store behind an opt-in.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    store = Path(store or tempfile.mkdtemp()) / "mlruns"
    mlflow.set_tracking_uri(store.as_uri())
    mlflow.set_experiment("skimpact-example")
    with mlflow.start_run() as run:
        mlflow.set_tag("question", "price effect on sales")
        info = log_estimator(est, input_example=X.head(3))

    loaded = mlflow.sklearn.load_model(info.model_uri)
    assert np.array_equal(loaded.predict(X), est.predict(X))
    effect = loaded.effect(X, {"price": X["price"] + 1.0}, kind="mean")
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    return metrics, summarize_effect(effect).loc["ATE"]


if __name__ == "__main__":
    metrics, ate = main()
    print({k: round(v, 4) for k, v in sorted(metrics.items())})
    print(f"Effect of +1 price (reloaded model): {ate['mean']:.3f} "
          f"(94% HDI {ate['hdi_lower']:.3f} to {ate['hdi_upper']:.3f}); true -1.5")
