"""Every DataTree skimpact returns survives netCDF (h5netcdf) and Zarr unchanged."""

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from skimpact import ImpactRegressor, estimate_effect


@pytest.fixture(scope="module")
def trees():
    rng = np.random.default_rng(5)
    index = pd.Index([f"shop-{i:02d}" for i in range(40)], name="shop")
    X = pd.DataFrame(
        {"price": rng.normal(size=40), "promo": rng.integers(0, 2, 40).astype(float)},
        index=index,
    )
    y = 3.0 - 1.2 * X["price"].to_numpy() + 0.8 * X["promo"].to_numpy() + rng.normal(0, 0.3, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svi = ImpactRegressor(inference="svi", num_steps=200, num_samples=30, random_state=0).fit(X, y)
        nuts = ImpactRegressor(
            inference="nuts", num_warmup=20, num_samples=20, num_chains=2, random_state=0
        ).fit(X, y)
    base = {"X": X, "intervention": {"promo": 0.0}}
    cheaper = svi.counterfactual_predict(X, {"price": lambda p: 0.9 * p})
    return {
        "posterior_svi": svi.posterior_,
        "posterior_nuts": nuts.posterior_,
        "posterior_predictive": svi.sample_posterior_predictive(X, in_sample=True),
        "counterfactual": cheaper,
        "effect": svi.effect(X, {"promo": 1.0}, baseline={"promo": 0.0}, kind="mean"),
        "estimate_effect": estimate_effect(
            svi, output_intervention=svi.counterfactual_predict(X, {"promo": 1.0}),
            args_baseline=base,
        ),
        "prior": svi.sample_prior_predictive(X, num_samples=15),
    }


def _write_read(tree, path, fmt):
    if fmt == "netcdf":
        tree.to_netcdf(path, engine="h5netcdf")
        return xr.open_datatree(path, engine="h5netcdf").load()
    tree.to_zarr(path, mode="w", consolidated=False)
    return xr.open_datatree(path, engine="zarr", consolidated=False).load()


@pytest.mark.slow
def test_every_tree_round_trips_identical(trees, tmp_path):
    # One test for all trees and formats: the fitted fixture is then built by one worker.
    for name, tree in trees.items():
        for fmt in ("netcdf", "zarr"):
            back = _write_read(tree, tmp_path / f"{name}.{fmt}", fmt)
            xr.testing.assert_identical(back, tree)
            assert back.attrs == tree.attrs, (name, fmt)
            for group in tree.children:
                assert back[group].attrs == tree[group].attrs, (name, fmt, group)
                for var in tree[group].data_vars:
                    got, want = back[group][var], tree[group][var]
                    assert got.dtype == want.dtype, (name, fmt, group, var)
                    np.testing.assert_array_equal(got.values, want.values)
    # What the trees hold that a careless writer would lose: string row labels, JSON attrs,
    # a shift intervention's description and boolean divergence flags.
    cf = trees["counterfactual"]
    assert cf["predictions"]["obs"].values[0] == "shop-00"
    assert "shift" in cf.attrs["intervention"]
    assert trees["posterior_nuts"]["sample_stats"]["diverging"].dtype == bool
    assert set(trees["prior"].children) == {"prior", "prior_predictive"}
