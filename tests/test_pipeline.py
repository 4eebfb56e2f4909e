"""Every estimator method that takes X, through a Pipeline with a ColumnTransformer."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import skimpact
from skimpact import ImpactRegressor

SETTINGS = dict(inference="svi", num_steps=1500, num_samples=200, learning_rate=0.05,
                random_state=0)


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "price": rng.uniform(5.0, 15.0, n),
        "advertising": rng.gamma(2.0, 1.5, n),
        "region": rng.choice(["north", "south"], n),
    }, index=pd.RangeIndex(100, 100 + n, name="shop"))
    y = 40.0 - 2.0 * X["price"] + 1.0 * X["advertising"] + 3.0 * (X["region"] == "south")
    return X, (y + rng.normal(0.0, 1.0, n)).to_numpy()


def _pipeline():
    return make_pipeline(
        ColumnTransformer([
            ("numeric", StandardScaler(), ["price", "advertising"]),
            ("region", OneHotEncoder(drop="first"), ["region"]),
        ]),
        ImpactRegressor(**SETTINGS),
    )


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return _pipeline().fit(X, y), X, y


# 200 draws give PSIS a Pareto-k threshold of 0.57, which one or two rows cross by chance
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")
@pytest.mark.slow
def test_each_function_matches_the_final_estimator_on_transformed_X(fitted):
    pipe, X, y = fitted
    est, Xt = pipe[-1], pipe[:-1].transform(X)
    q = skimpact.predict_quantiles(pipe, X, [0.1, 0.5, 0.9])
    assert list(q.columns) == [0.1, 0.5, 0.9] and q.index.equals(X.index)
    np.testing.assert_allclose(q.to_numpy(), est.predict_quantiles(Xt, [0.1, 0.5, 0.9]))
    interval = skimpact.predict_interval(pipe, X, coverage=0.8)
    assert list(interval.columns) == ["lower", "upper"] and interval.index.equals(X.index)
    np.testing.assert_allclose(interval.to_numpy(), q[[0.1, 0.9]].to_numpy())
    ppc = skimpact.sample_posterior_predictive(pipe, X, in_sample=True)
    assert dict(ppc["posterior_predictive"]["y"].sizes) == {"chain": 1, "draw": 200, "obs": 200}
    ll = skimpact.log_likelihood(pipe, X, y)
    np.testing.assert_allclose(ll["log_likelihood"]["y"].values,
                               est.log_likelihood(Xt, y)["log_likelihood"]["y"].values)
    elpd = skimpact.loo(pipe, X, y, pointwise=True)
    assert elpd.elpd == pytest.approx(est.loo(Xt, y).elpd)
    # noise sd 1: about -1.42 per row for a well-fitted Gaussian, -284 for 200 rows
    assert -300 < elpd.elpd < -260 and elpd.elpd_i.shape == (200,)
    table = skimpact.summary(pipe, var_names=["sigma"])
    assert table.loc["sigma", "mean"] == pytest.approx(1.0, abs=0.2)


def test_trees_through_a_pipeline_keep_the_raw_row_labels(fitted):
    # the ColumnTransformer returns a bare array; the outputs stay labelled by X's index
    pipe, X, y = fitted
    rows = X.iloc[[5, 0, 17]]
    trees = {
        "effect": skimpact.effect(pipe, rows, {"price": 10.0}, {"price": 12.0}),
        "counterfactual": skimpact.counterfactual_predict(pipe, rows, {"region": "south"}),
        "predictive": skimpact.sample_posterior_predictive(pipe, rows),
        "log_likelihood": skimpact.log_likelihood(pipe, rows, y[[5, 0, 17]]),
    }
    for name, tree in trees.items():
        group = next(g for g in ("predictions", "log_likelihood") if g in tree.children)
        assert tree[group]["y"].coords["obs"].values.tolist() == [105, 100, 117], name
    ppc = skimpact.sample_posterior_predictive(pipe, X, in_sample=True)
    assert ppc["posterior_predictive"]["y"].coords["obs"].values.tolist() == X.index.tolist()


def test_interval_covers_and_raw_interventions_shift_it(fitted):
    pipe, X, y = fitted
    interval = skimpact.predict_interval(pipe, X, coverage=0.9)
    covered = ((y >= interval["lower"]) & (y <= interval["upper"])).mean()
    assert 0.8 <= covered <= 0.98
    # a raw-column shift before the scaler: price + 1 lowers the median by about 2
    base = skimpact.predict_quantiles(pipe, X, 0.5)[0.5]
    shifted = skimpact.predict_quantiles(pipe, X, 0.5, {"price": lambda p: p + 1.0})[0.5]
    assert (shifted - base).mean() == pytest.approx(-2.0, abs=0.25)
    tree = skimpact.sample_posterior_predictive(pipe, X, {"region": "south"})
    north = (X["region"] == "north").to_numpy()
    lift = tree["predictions"]["y"].values.mean((0, 1)) - pipe.predict(X)
    assert lift[north].mean() == pytest.approx(3.0, abs=0.5)
    assert np.abs(lift[~north]).mean() < 0.5


def test_unknown_name_in_a_pipeline_lists_the_raw_columns_first(fitted):
    pipe, X, _ = fitted
    for call in (
        lambda: skimpact.predict_interval(pipe, X, intervention={"prcie": 1.0}),
        lambda: skimpact.predict_quantiles(pipe, X, 0.5, {"prcie": 1.0}),
        lambda: skimpact.sample_posterior_predictive(pipe, X, {"prcie": 1.0}),
    ):
        with pytest.raises(KeyError, match=r"Unknown intervention name 'prcie'; raw columns "
                                           r"of the Pipeline's input: \['price', 'advertising', "
                                           r"'region'\] \(changed before its transformers\)"):
            call()
    with pytest.raises(ValueError, match=r"column 'price' has shape \(3,\).*\(200,\)"):
        skimpact.predict_interval(pipe, X, intervention={"price": np.ones(3)})


def test_bad_estimators_and_arguments_are_refused(fitted):
    pipe, X, y = fitted
    with pytest.raises(TypeError, match="last step of the Pipeline is LinearRegression"):
        skimpact.loo(make_pipeline(StandardScaler(), LinearRegression()).fit(X[["price"]], y),
                     X[["price"]], y)
    with pytest.raises(TypeError, match="ending in one; got LinearRegression"):
        skimpact.summary(LinearRegression())
    with pytest.raises(NotFittedError):
        skimpact.predict_interval(_pipeline(), X)
    with pytest.raises(ValueError, match=r"coverage must be a number in \(0, 1\); got 1.5"):
        skimpact.predict_interval(pipe, X, coverage=1.5)
    with pytest.raises(ValueError, match=r"Quantiles must be numbers in \[0, 1\]"):
        skimpact.predict_quantiles(pipe, X, [0.5, 2.0])


def test_an_intervention_the_transformers_drop_is_refused_not_zero():
    # "weekday" is left out of the ColumnTransformer (remainder="drop"): changing it
    # changes nothing the model sees, an effect of exactly zero with no error before
    X, y = _data(60)
    X["weekday"] = np.arange(60) % 7
    pipe = make_pipeline(
        ColumnTransformer([("numeric", StandardScaler(), ["price", "advertising"])]),
        ImpactRegressor(inference="svi", num_steps=100, num_samples=20, random_state=0),
    ).fit(X, y)
    hidden = r"raw column\(s\) \['weekday'\], but the Pipeline's transformers " \
             r"\['columntransformer'\].*zero by construction"
    for call in (
        lambda: skimpact.effect(pipe, X, {"weekday": 3}),
        lambda: skimpact.effect(pipe, X, {"price": 10.0, "weekday": 3}),
        lambda: skimpact.effect(pipe, X, {"price": 10.0}, baseline={"weekday": 3}),
        lambda: skimpact.counterfactual_predict(pipe, X, {"weekday": lambda d: d + 1}),
    ):
        with pytest.raises(ValueError, match=hidden):
            call()
    # a change the model sees, and a change of nothing (the rows' own values), are answered
    moved = skimpact.effect(pipe, X, {"price": lambda p: p + 1.0})
    assert np.abs(moved["predictions"]["y"].mean()) > 0.1
    same = skimpact.effect(pipe, X, {"price": X["price"].to_numpy()})
    np.testing.assert_allclose(same["predictions"]["y"].values, 0.0, atol=1e-5)
