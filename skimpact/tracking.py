"""Experiment tracking with MLflow (the ``mlflow`` extra: ``pip install skimpact[mlflow]``).

:func:`log_estimator` logs a fitted estimator as an ``mlflow.sklearn`` model (so
``mlflow.sklearn.load_model`` gives it back, ready to predict and to answer
counterfactual questions), its settings as parameters, its convergence diagnostics as
metrics, and its posterior (netCDF), posterior summary (CSV) and diagnostics (JSON) as
artifacts.
"""

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from .convergence import loss_window

__all__ = ["diagnostic_metrics", "log_estimator"]


def log_estimator(estimator, name="model", *, log_posterior=True, input_example=None,
                  registered_model_name=None, pip_requirements=None):
    """Log a fitted estimator, its settings, diagnostics and posterior to MLflow.

    Logs into the active run, or starts (and ends) a run when none is active.

    Parameters
    ----------
    estimator : fitted ImpactRegressor or ImpactClassifier
    name : str, default="model"
        Name of the logged model (``runs:/<run_id>/<name>`` before MLflow 3; MLflow 3
        returns a ``models:/`` URI in the result's ``model_uri``).
    log_posterior : bool, default=True
        Write ``posterior_`` as ``posterior.nc`` (needs ``h5netcdf``) under the run's
        ``skimpact/`` artifact folder, next to ``summary.csv`` and ``diagnostics.json``.
    input_example : array-like or DataFrame, optional
        A few rows of X, stored with the model so MLflow infers its signature.
    registered_model_name : str, optional
        Also register the model under this name.
    pip_requirements : list of str, optional
        Requirements stored with the model; default ``skimpact==<this version>`` (which
        brings its dependencies), which spares MLflow inferring them by reloading the
        model in a subprocess.

    Returns
    -------
    mlflow.models.model.ModelInfo
        What ``mlflow.sklearn.log_model`` returned; ``.model_uri`` loads the estimator.
    """
    try:
        import mlflow
        import mlflow.sklearn
    except ImportError as exc:
        raise ImportError(
            "log_estimator needs MLflow: pip install 'skimpact[mlflow]'."
        ) from exc
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "posterior_")
    started = mlflow.active_run() is None
    if started:
        mlflow.start_run()
    try:
        mlflow.log_params(_params(estimator))
        mlflow.log_metrics(diagnostic_metrics(estimator))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            estimator.summary().to_csv(folder / "summary.csv")
            (folder / "diagnostics.json").write_text(
                json.dumps(_jsonable(estimator.diagnostics_), indent=1, sort_keys=True)
            )
            if log_posterior:
                estimator.posterior_.to_netcdf(folder / "posterior.nc", engine="h5netcdf")
            mlflow.log_artifacts(str(folder), artifact_path="skimpact")
        # skops (MLflow's default format) cannot store closures or JAX arrays; the
        # estimator pickles, so it goes in with cloudpickle.
        kwargs = {
            "input_example": input_example,
            "registered_model_name": registered_model_name,
            "pip_requirements": pip_requirements or [f"skimpact=={_version()}"],
            "serialization_format": mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        }
        try:
            info = mlflow.sklearn.log_model(estimator, name=name, **kwargs)
        except TypeError:  # MLflow 2 names the model by artifact_path
            info = mlflow.sklearn.log_model(estimator, artifact_path=name, **kwargs)
    finally:
        if started:
            mlflow.end_run()
    return info


def diagnostic_metrics(estimator):
    """The scalar convergence diagnostics of a fit, as MLflow metrics.

    Parameters
    ----------
    estimator : fitted ImpactRegressor or ImpactClassifier

    Returns
    -------
    dict of str to float
        ``fit_seconds``; for NUTS ``num_divergences``, ``max_r_hat``, ``min_ess_bulk``,
        ``min_ess_tail`` and per parameter ``r_hat.<name>`` / ``ess_bulk.<name>``; for SVI
        and MAP ``final_loss`` (mean of the last window) and ``elbo_rel_change``; and
        ``converged`` (1 or 0).
    """
    diag = estimator.diagnostics_
    out = {}
    if "fit_seconds" in diag:
        out["fit_seconds"] = float(diag["fit_seconds"])
    if "num_divergences" in diag:
        out["num_divergences"] = float(diag["num_divergences"])
    for key, agg in (("r_hat", max), ("ess_bulk", min), ("ess_tail", min)):
        values = diag.get(key)
        if values:
            out[f"{'max' if agg is max else 'min'}_{key}"] = float(agg(values.values()))
            out.update({f"{key}.{k}": float(v) for k, v in values.items()})
    if "loss" in diag:
        loss = np.asarray(diag["loss"], dtype=float)
        window = int(diag.get("elbo_window") or loss_window(len(loss)))
        out["final_loss"] = float(loss[-window:].mean())
        out["elbo_rel_change"] = float(diag.get("elbo_rel_change", math.nan))
    if "converged" in diag:
        out["converged"] = float(bool(diag["converged"]))
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _version():
    from importlib.metadata import version

    return version("skimpact")


def _params(estimator):
    params = {}
    for k, v in estimator.get_params(deep=True).items():
        text = v if isinstance(v, (str, int, float, bool)) or v is None else repr(v)
        params[k] = str(text)[:500]
    return params


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
