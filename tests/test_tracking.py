"""Experiment tracking: a fitted estimator logs to and loads from a local MLflow store."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import mlflow
import mlflow.sklearn

from skimpact.tracking import diagnostic_metrics, log_estimator

from models import dose_age_data

# MLflow's signature inference does arithmetic with a range, which pandas 3 deprecates; the
# warning is MLflow's own, raised while it logs.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


@pytest.fixture(scope="module")
def fitted(dose_age_svi):
    return dose_age_svi[0], dose_age_data()[0]


@pytest.fixture
def store(tmp_path, monkeypatch):
    # MLflow 3 keeps the file store behind an opt-in; a local folder is all a test needs.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("skimpact-test")
    yield tmp_path / "mlruns"
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_log_and_load_round_trip(fitted, store, tmp_path):
    est, X = fitted
    with mlflow.start_run() as run:
        info = log_estimator(est)
    loaded = mlflow.sklearn.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    eff = loaded.effect(X, {"dose": X["dose"] + 1.0}, kind="mean")
    ref = est.effect(X, {"dose": X["dose"] + 1.0}, kind="mean")
    np.testing.assert_array_equal(eff["predictions"]["y"].values, ref["predictions"]["y"].values)

    client = mlflow.tracking.MlflowClient()
    data = client.get_run(run.info.run_id).data
    assert data.params["num_steps"] == "1500"
    assert data.params["inference"] == "svi"
    assert data.metrics["converged"] in (0.0, 1.0)
    loss = est.diagnostics_["loss"]
    window = est.diagnostics_["elbo_window"]
    assert data.metrics["final_loss"] == pytest.approx(float(loss[-window:].mean()), rel=1e-6)
    names = {a.path for a in client.list_artifacts(run.info.run_id, "skimpact")}
    assert names == {"skimpact/posterior.nc", "skimpact/summary.csv", "skimpact/diagnostics.json"}

    folder = client.download_artifacts(run.info.run_id, "skimpact", str(tmp_path / "dl"))
    posterior = xr.open_datatree(f"{folder}/posterior.nc", engine="h5netcdf")
    xr.testing.assert_identical(posterior, est.posterior_)
    summary = pd.read_csv(f"{folder}/summary.csv", index_col=0)
    pd.testing.assert_frame_equal(summary, est.summary(), check_names=False, rtol=1e-6)
    diag = json.loads(open(f"{folder}/diagnostics.json").read())
    assert len(diag["loss"]) == 1500


def test_log_starts_and_ends_its_own_run(fitted, store):
    est, _ = fitted
    assert mlflow.active_run() is None
    info = log_estimator(est, name="est", log_posterior=False)
    assert mlflow.active_run() is None
    runs = mlflow.search_runs()
    assert len(runs) == 1
    assert runs["metrics.final_loss"].iloc[0] == pytest.approx(
        diagnostic_metrics(est)["final_loss"]
    )
    assert mlflow.sklearn.load_model(info.model_uri).n_features_in_ == 2



@pytest.mark.slow
def test_example_runs(store, tmp_path):
    path = Path(__file__).resolve().parents[1] / "examples" / "mlflow_tracking.py"
    spec = importlib.util.spec_from_file_location("_example_mlflow_tracking", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics, ate = module.main(store=tmp_path, num_steps=800)
    assert metrics["converged"] == 1.0
    assert {"final_loss", "elbo_rel_change", "fit_seconds"} <= set(metrics)
    assert ate["mean"] == pytest.approx(-1.5, abs=0.1)
    assert ate["hdi_lower"] < -1.5 < ate["hdi_upper"]
