"""The effect examples in ``examples/`` run and give their documented numbers."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_shared_data

from skimpact import summarize_effect

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _load(name):
    """Import ``examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def confounder():
    module = _load("confounder")
    return module, module.main(num_samples=100)


@pytest.mark.slow
def test_confounder_trees_are_as_documented(confounder):
    _, result = confounder
    for how in ("eager", "lazy", "mixed"):
        tree = result[how]
        assert sorted(tree.children) == ["posterior", "predictions"]
        pred = tree["predictions"]
        assert sorted(pred.data_vars) == ["y", "z"]
        assert dict(pred.sizes) == {"chain": 1, "draw": 100, "data": 100}
        for name in ("y", "z"):
            assert pred[name].dims == ("chain", "draw", "data")
        assert tree["posterior"]["beta_zy"].dims == ("chain", "draw")
        assert tree["posterior"].sizes["draw"] == 100
        assert json.loads(tree.attrs["baseline"]) == {"z": 0.0}
        assert json.loads(tree.attrs["intervention"]) == {"z": "array of shape (100,)"}


@pytest.mark.slow
def test_confounder_eager_lazy_and_mixed_agree(confounder):
    module, result = confounder
    _, _, _, Z = module.simulate()
    eager = result["eager"]["predictions"]
    for how in ("lazy", "mixed"):
        other = result[how]["predictions"]
        for name in ("y", "z"):
            np.testing.assert_array_equal(other[name].values, eager[name].values)
    # z is set in both scenarios: its effect is Z - 0 in every draw.
    np.testing.assert_allclose(eager["z"].values[0], np.broadcast_to(Z, (100, 100)), rtol=1e-6)
    assert set(np.unique(eager["y"].values)) <= {-1, 0, 1}


@pytest.mark.slow
def test_confounder_effect_of_z_is_positive(confounder):
    module, result = confounder
    X, _, C, Z = module.simulate()
    # The data raise the log-odds of y by 0.8 per unit of z, and Z > 0.
    assert result["ate"] > 0.0
    assert result["summary"].loc["ATE", "prob_positive"] > 0.8
    mean_kind = result["estimator"].effect(X, {"z": Z}, {"z": 0.0}, kind="mean", C=C)
    probs = mean_kind["predictions"]["y"].values
    assert np.all((probs > -1.0) & (probs < 1.0))
    ate_mean = summarize_effect(mean_kind).loc["ATE", "mean"]
    assert ate_mean > 0.0
    assert abs(ate_mean - result["ate"]) < 0.05


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "collections_email.csv").is_file(),
    reason=f"reference data {SHARED_DATA / 'collections_email.csv'} is absent "
    "(the shared folder sits beside the repo in CI)",
)
def test_collections_email_ate_matches_the_published_estimate():
    result = _load("collections_email").main()
    published = result["published"]
    assert abs(result["ate"] - published["ate"]) < 1.0
    # The 94% HDI overlaps the published 95% CI.
    assert result["hdi_lower"] < published["ci_upper"]
    assert result["hdi_upper"] > published["ci_lower"]
    assert result["prob_positive"] > 0.95
    assert result["num_divergences"] == 0


@pytest.mark.slow
def test_heterogeneous_effect_is_recovered():
    result = _load("heterogeneous_effect").main()
    assert result["hdi_lower"] <= result["true_ate"] <= result["hdi_upper"]
    assert result["covered"]
    assert result["cate_correlation"] > 0.9
    assert result["cate_rmse"] < 0.3


@pytest.mark.slow
def test_mediation_recovers_known_direct_and_indirect_effects():
    table = _load("mediation").main()
    # simulated total 2.5, direct 0.5, indirect 1 x 2; the posterior means agree with this
    # sample's least squares and each 94% interval covers the truth
    np.testing.assert_allclose(table["mean"], table["least_squares"], atol=0.03)
    assert ((table["hdi_lower"] <= table["truth"]) & (table["truth"] <= table["hdi_upper"])).all()
    assert table.loc["total", "mean"] == pytest.approx(
        table.loc["direct", "mean"] + table.loc["indirect", "mean"], rel=1e-5)


@pytest.mark.slow
@needs_shared_data
@pytest.mark.parametrize("missing, n_rows, n_masked", [("error", 2825, 0), ("mask", 2892, 67)])
def test_thornton_ate_with_default_settings_matches_the_experiment(missing, n_rows, n_masked):
    result = _load("thornton_hiv").main(missing=missing)
    assert (result["n_rows"], result["n_masked"]) == (n_rows, n_masked)
    assert result["inference"].startswith("NUTS")
    assert abs(result["ate"] - 0.45) < 0.03
    assert result["hdi_lower"] <= 0.45 <= result["hdi_upper"]
    assert 0.015 < result["sd"] < 0.03  # the published SE of the difference is 0.021
