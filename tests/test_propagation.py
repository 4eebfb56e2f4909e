"""Interventions reach the latent sites downstream of them (skimpact.propagation).

Every model here is linear-Gaussian, so each draw's effect has a closed form in that draw's
own posterior values: the checks are per draw (exact up to float32 round-off), not
against a fit's accuracy, and hold for short fits.
"""

import json

import dask.array as da
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.infer.reparam import LocScaleReparam

from skimpact import (
    Experiment, ExperimentConflictWarning, ImpactRegressor, counterfactual_predict, effect, estimate_effect, mediation,
    refute,
    summarize_effect,
)
from skimpact.predictive import _COMPILED
from skimpact.propagation import DATA, couple, dependency_graph, downstream
from skimpact.streaming import effect_summary
import models

FIT = {"inference": "svi", "guide": "AutoNormal", "num_steps": 600, "num_samples": 100,
       "random_state": 0}


def _draws(tree, var="y", group="predictions"):
    """Per-draw average over rows, chains flattened."""
    values = tree[group][var].values
    return values.reshape(values.shape[0] * values.shape[1], -1).mean(1)


def _posterior(est, site):
    return est.posterior_["posterior"][site].values.reshape(-1)


@pytest.fixture(scope="module")
def chain():
    X, y = models.chain_data()
    return ImpactRegressor(models.global_chain, **FIT).fit(X, y), X


@pytest.fixture(scope="module")
def local():
    X, y = models.local_chain_data()
    return ImpactRegressor(models.local_chain, **FIT).fit(X, y), X


# ------------------------------------------------------------------------- structure
def test_dependency_graph_finds_parents_through_deterministic_sites_and_data():
    import numpyro

    def model(X, y=None):
        z = numpyro.sample("z", dist.Normal(0, 1))
        d = numpyro.deterministic("d", 3 * z)
        m = numpyro.sample("m", dist.Normal(d, 0.1))
        s = numpyro.sample("s", dist.HalfNormal(1))
        with numpyro.plate("obs", X.shape[0]):
            loc = numpyro.sample("loc", dist.Normal(2 * X[:, 0], 0.3))
            numpyro.sample("y", dist.Normal(m + loc, s), obs=y)

    latent = {"z": jnp.zeros(()), "m": jnp.zeros(()), "s": jnp.ones(()), "loc": jnp.zeros(1)}
    graph = dependency_graph(model, np.ones((1, 2), np.float32), {}, latent, ("d",))
    assert graph == {"z": frozenset(), "d": {"z"}, "m": {"z", "d"}, "s": frozenset(),
                     "loc": {DATA}}
    every = set(latent)
    assert downstream(graph, {"z"}, every) == ("m",)
    assert downstream(graph, {"d"}, every) == ("m",)
    assert downstream(graph, {DATA}, every) == ("loc",)
    assert downstream(graph, {"s"}, every) == ()


# ------------------------------------------------------------------ global latent chain
@pytest.mark.parametrize("semantics", ["counterfactual", "interventional"])
def test_a_global_latent_downstream_of_a_site_follows_it(chain, semantics):
    est, X = chain
    tree = effect(est, X, {"z": 1.0}, baseline={"z": 0.0}, kind="mean", semantics=semantics)
    # m moves by 2 per unit of z, in every draw (it was exactly 0 before propagation)
    np.testing.assert_allclose(_draws(tree), 2.0, rtol=1e-4)
    assert tree.attrs["semantics"] == semantics


def test_counterfactual_keeps_each_draws_noise(chain):
    est, X = chain
    tree = counterfactual_predict(est, X[:3], {"z": 5.0}, return_sites=["m"])
    m = tree["predictions"]["m"].values.reshape(-1)
    noise = _posterior(est, "m") - 2.0 * _posterior(est, "z")
    np.testing.assert_allclose(m, 10.0 + noise, rtol=1e-5, atol=1e-5)
    assert tree.attrs["semantics"] == "counterfactual"
    fresh = counterfactual_predict(est, X[:3], {"z": 5.0}, return_sites=["m"],
                                   semantics="interventional")["predictions"]["m"].values
    # drawn afresh from N(10, 0.1): not the posterior's noise, but the same distribution
    assert not np.allclose(fresh.reshape(-1), m)
    assert abs(fresh.mean() - 10.0) < 0.05 and 0.07 < fresh.std() < 0.13


def test_an_unrelated_intervention_leaves_every_draw_exactly(chain):
    est, X = chain
    # s is upstream of nothing latent: predictions equal the factual ones bit for bit
    tree = counterfactual_predict(est, X, {"s": 0.5}, return_sites=["m"])
    np.testing.assert_array_equal(tree["predictions"]["m"].values.reshape(-1),
                                  _posterior(est, "m"))


def test_the_streamed_and_dask_effects_equal_the_in_memory_one(chain):
    est, X = chain
    full = effect(est, X, {"z": 1.0}, baseline={"z": 0.0}, kind="mean")
    streamed = effect_summary(est, X, {"z": 1.0}, {"z": 0.0}, kind="mean")
    on_dask = effect_summary(est, da.from_array(X, chunks=70), {"z": 1.0}, {"z": 0.0},
                             kind="mean")
    assert streamed["mean"].iloc[0] == pytest.approx(2.0, rel=1e-4)
    assert on_dask["mean"].iloc[0] == pytest.approx(2.0, rel=1e-4)
    assert float(full["predictions"]["y"].mean()) == pytest.approx(2.0, rel=1e-4)


def test_estimate_effect_of_two_counterfactual_predictions(chain):
    est, X = chain
    eff = estimate_effect(est, args_baseline={"X": X, "intervention": {"z": 0.0}},
                          args_intervention={"X": X, "intervention": {"z": 1.0}})
    # sampled outcomes share their noise: the difference is m's move, 2 per unit
    np.testing.assert_allclose(_draws(eff), 2.0, rtol=1e-3)
    a = counterfactual_predict(est, X, {"z": 0.0})
    b = counterfactual_predict(est, X, {"z": 1.0}, semantics="interventional")
    with pytest.raises(ValueError, match="semantics='counterfactual'.*'interventional'"):
        estimate_effect(est, output_baseline=a, output_intervention=b)


def test_unknown_semantics_is_refused_with_the_choices(chain):
    est, X = chain
    with pytest.raises(ValueError, match="`semantics` must be 'counterfactual'.*'interventional'"):
        effect(est, X, {"z": 1.0}, semantics="twin")


# -------------------------------------------------------------------- local latent chain
@pytest.mark.parametrize("in_sample", [True, False])
def test_a_local_latent_downstream_of_a_column_follows_it(local, in_sample):
    est, X = local
    tree = effect(est, X, {0: X[:, 0] + 1.0}, kind="mean", in_sample=in_sample)
    group = "posterior_predictive" if in_sample else "predictions"
    # m_i moves by 2 in every row, so y by 2a in every draw (in-sample it was exactly 0)
    np.testing.assert_allclose(_draws(tree, group=group), 2.0 * _posterior(est, "a"),
                               rtol=1e-3)


def test_interventional_local_latents_agree_in_expectation(local):
    est, X = local
    a = _posterior(est, "a")
    # against the factual world, fresh draws of m_i replace the fitted ones: the same
    # effect in expectation, 2 E[a], within the Monte Carlo error of 300 rows' noise
    tree = effect(est, X, {0: X[:, 0] + 1.0}, kind="mean", in_sample=True,
                  semantics="interventional")
    assert _draws(tree, group="posterior_predictive").mean() == pytest.approx(
        2.0 * a.mean(), abs=0.1)
    # both scenarios moved column 0: both draw afresh, with the same random numbers
    tree = effect(est, X, {0: X[:, 0] + 1.0}, baseline={0: X[:, 0] - 1.0}, kind="mean",
                  in_sample=True, semantics="interventional")
    np.testing.assert_allclose(_draws(tree, group="posterior_predictive"), 4.0 * a, rtol=1e-3)
    # a baseline that sets column 0 to its own values changes no parent: m keeps its fit
    tree = effect(est, X, {0: X[:, 0] + 1.0}, baseline={0: X[:, 0]}, kind="mean",
                  in_sample=True, semantics="interventional")
    factual = effect(est, X, {0: X[:, 0] + 1.0}, kind="mean", in_sample=True,
                     semantics="interventional")
    np.testing.assert_array_equal(tree["posterior_predictive"]["y"].values,
                                  factual["posterior_predictive"]["y"].values)


def test_only_the_rows_whose_parents_changed_move(local):
    est, X = local
    first = np.where(np.arange(len(X)) < 10, X[:, 0] + 1.0, X[:, 0])
    tree = counterfactual_predict(est, X, {0: first}, in_sample=True, return_sites=["m"])
    m = tree["posterior_predictive"]["m"].values.reshape(-1, len(X))
    fitted = est.posterior_["posterior"]["m"].values.reshape(-1, len(X))
    np.testing.assert_allclose(m[:, :10], fitted[:, :10] + 2.0, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(m[:, 10:], fitted[:, 10:])


# ------------------------------------------------------- hierarchical hyperparameter
@pytest.mark.slow
@pytest.mark.parametrize("reparam", [None, {"theta": LocScaleReparam(0)}])
def test_an_intervened_hyperparameter_moves_every_group(reparam):
    X, y = models.hierarchical_data()
    est = ImpactRegressor(models.hierarchical, reparam=reparam, **FIT).fit(X, y)
    for in_sample in (True, False):
        tree = effect(est, X, {"mu": 1.0}, baseline={"mu": 0.0}, kind="mean",
                      in_sample=in_sample)
        group = "posterior_predictive" if in_sample else "predictions"
        np.testing.assert_allclose(_draws(tree, group=group), 1.0, rtol=1e-4)


# -------------------------------------------------------------------------- mediator
@pytest.fixture(scope="module")
def mediated():
    X, y, M = models.mediator_data()
    return ImpactRegressor(models.mediator, **FIT).fit(X, y, M=M), X, M


@pytest.mark.parametrize("in_sample", [True, False])
def test_a_treatment_acts_through_its_measured_mediator(mediated, in_sample):
    est, X, M = mediated
    alpha, beta, gamma = (_posterior(est, k) for k in ("alpha", "beta", "gamma"))
    group = "posterior_predictive" if in_sample else "predictions"
    tree = effect(est, X, {0: 1.0}, baseline={0: 0.0}, kind="mean", in_sample=in_sample, M=M)
    # the measured mediator follows the treatment from its data (it was held at it before)
    np.testing.assert_allclose(_draws(tree, group=group), gamma + alpha * beta, rtol=1e-3)
    tree = mediation(est, X, {0: 1.0}, {0: 0.0}, mediators="m", in_sample=in_sample, M=M)
    for var, expected in (("total", gamma + alpha * beta), ("direct", gamma),
                          ("indirect", alpha * beta)):
        np.testing.assert_allclose(_draws(tree, var, group), expected, rtol=1e-3, atol=1e-4)
    assert json.loads(tree.attrs["mediators"]) == ["m"]
    assert summarize_effect(tree)["mean"].iloc[0] == pytest.approx(
        float(np.mean(gamma + alpha * beta)), rel=1e-3)


def test_mediation_recovers_known_direct_and_indirect_effects(mediated):
    est, X, M = mediated
    tree = mediation(est, X, {0: 1.0}, {0: 0.0}, mediators=["m"], M=M)
    means = {v: summarize_effect(tree, var=v)["mean"].iloc[0] for v in ("direct", "indirect")}
    # simulated with direct 0.5 and indirect 1 x 2; this sample's least squares say
    # alpha 0.915, beta 2.007, gamma 0.502 (the posterior means under flat priors)
    t, w = X[:, 0], X[:, 1]
    alpha = np.linalg.lstsq(t[:, None], M - w, rcond=None)[0][0]
    beta, gamma = np.linalg.lstsq(np.column_stack([M, t]), models.mediator_data()[1],
                                  rcond=None)[0]
    assert means["direct"] == pytest.approx(gamma, abs=0.05)
    assert means["indirect"] == pytest.approx(alpha * beta, abs=0.05)


def test_mediation_refuses_a_mediator_that_is_no_site(mediated):
    est, X, M = mediated
    with pytest.raises(ValueError, match=r"`mediators` must name sites .*got \['mm'\].*'m'"):
        mediation(est, X, {0: 1.0}, {0: 0.0}, mediators="mm", M=M)
    with pytest.raises(ValueError, match=r"other than the outcome.*got \['y'\]"):
        mediation(est, X, {0: 1.0}, {0: 0.0}, mediators="y", M=M)


# ---------------------------------------------------------------------------- coupling
@pytest.mark.parametrize("old, new, value, expected", [
    (dist.Normal(0.0, 1.0), dist.Normal(2.0, 3.0), 0.5, 3.5),
    (dist.LogNormal(0.0, 1.0), dist.LogNormal(1.0, 1.0), np.e, np.e ** 2),
    (dist.Exponential(1.0), dist.Exponential(2.0), 1.0, 0.5),
    (dist.HalfNormal(1.0), dist.HalfNormal(2.0), 0.5, 1.0),
    (dist.Normal(0.0, 1.0).expand([3]).to_event(1), dist.Normal(1.0, 1.0).expand([3]).to_event(1),
     np.zeros(3), np.ones(3)),
    (dist.MultivariateNormal(np.zeros(2), np.eye(2)),
     dist.MultivariateNormal(np.ones(2), 4.0 * np.eye(2)), np.array([1.0, -1.0]),
     np.array([3.0, -1.0])),
])
def test_couple_keeps_the_exogenous_noise(old, new, value, expected):
    np.testing.assert_allclose(couple("m", old, new, jnp.asarray(value)), expected, rtol=1e-5)


@pytest.mark.parametrize("old, new, why", [
    (dist.Poisson(1.0), dist.Poisson(2.0), "discrete"),
    (dist.Gamma(2.0, 1.0), dist.Gamma(3.0, 1.0), "no cdf and inverse cdf"),
    (dist.Normal(0.0, 1.0), dist.Laplace(0.0, 1.0), "changes family"),
])
def test_couple_refuses_what_it_cannot_carry_naming_the_site(old, new, why):
    with pytest.raises(ValueError, match=rf"Latent site 'm' .*{why}.*semantics='interventional'"):
        couple("m", old, new, jnp.asarray(1.0))


# ------------------------------------------------------- experiments and refuters
@pytest.mark.slow
def test_an_experiment_through_a_downstream_latent_moves_the_fit(chain):
    est, X = chain
    _, y = models.chain_data()
    # setting z to 1 moves m by 2 (1 - z) against the factual world: a measured 0.2 says
    # z = 0.9; before propagation the model's contrast was 0 whatever z, and the
    # experiment a constant term that left z where the data put it
    exp = Experiment(X=X[:20], intervention={"z": 1.0}, effect=0.2, se=0.01)
    # it contradicts the observational fit, which cannot be grounded on a site's change
    with pytest.warns(ExperimentConflictWarning, match="could not ground it.*change \\['z'\\]"):
        fitted = ImpactRegressor(models.global_chain, **FIT).fit(X, y, experiments=[exp])
    z0, z1 = _posterior(est, "z").mean(), _posterior(fitted, "z").mean()
    assert abs(z1 - 0.9) < 0.05 and abs(z0 - 0.9) > 0.2


def test_refute_tests_the_real_effect_through_a_downstream_latent(chain):
    est, X = chain
    _, y = models.chain_data()
    result = refute(est, X, y, {"z": 1.0}, {"z": 0.0}, methods=("data_subset",), n_refits=1,
                    random_state=0)
    row = result.table.loc["data_subset"]
    # the effect was 0 [0, 0] and trivially "passed"; now it is m's move, 2 per unit
    assert row["original_mean"] == pytest.approx(2.0, rel=1e-3)
    assert row["refuted_mean"] == pytest.approx(2.0, rel=1e-3) and row["passed"]


def test_new_rows_streamed_and_on_dask_follow_a_column(local):
    est, X = local
    a = _posterior(est, "a")
    streamed = effect_summary(est, X, {0: X[:, 0] + 1.0}, kind="mean")
    on_dask = effect_summary(est, da.from_array(X, chunks=(110, 2)), {0: lambda v: v + 1.0},
                             kind="mean")
    for table in (streamed, on_dask):
        assert table["mean"].iloc[0] == pytest.approx(2.0 * a.mean(), rel=1e-3)


def test_repeated_effects_with_the_same_names_compile_nothing(chain):
    est, X = chain
    key = est.predictor_.program.cache_key

    def compilations():
        return {k[1]: fn._cache_size() for k, fn in _COMPILED.items() if k[0] == key}

    for semantics in ("counterfactual", "interventional"):
        effect(est, X, {"z": 1.0}, baseline={"z": 0.0}, kind="mean", semantics=semantics)
        before = compilations()
        for value in (2.0, -1.0):
            tree = effect(est, X, {"z": value}, baseline={"z": 0.0}, kind="mean",
                          semantics=semantics)
            np.testing.assert_allclose(_draws(tree), 2.0 * value, rtol=1e-4)
        assert compilations() == before


def test_an_observed_site_whose_distribution_reads_no_data_is_not_downstream_of_it():
    import numpyro

    def model(X, y=None, C=None):
        rate = numpyro.sample("rate", dist.HalfNormal(1.0))
        with numpyro.plate("obs", X.shape[0]):
            c = numpyro.sample("c", dist.Poisson(rate), obs=C)  # a count: no coupling
            numpyro.sample("y", dist.Normal(c + X[:, 0], 1.0), obs=y)

    latent = {"rate": jnp.ones(())}
    graph = dependency_graph(model, np.ones((1, 1), np.float32), {"C": jnp.ones(1)}, latent,
                             (), ("c",))
    # its value is data, but its distribution reads only rate: a column change leaves it
    assert graph["c"] == {"rate"}
    assert downstream(graph, {DATA}, {"rate", "c"}) == ()
    assert downstream(graph, {"rate"}, {"rate", "c"}) == ("c",)


def test_a_measured_mediator_set_by_intervention_stays_where_it_was_set(mediated):
    est, X, M = mediated
    alpha, beta = _posterior(est, "alpha"), _posterior(est, "beta")
    # do(t=1) with the mediator's data set to M + 1 keeps m at M + 1; do(t=1) alone moves
    # the untreated rows' m to M + alpha: the effect is beta (1 - alpha P(t=0)) per draw
    # (moving the set M + 1 by alpha again would give beta)
    tree = effect(est, X, {0: 1.0, "M": M + 1.0}, baseline={0: 1.0}, kind="mean", M=M)
    untreated = np.mean(X[:, 0] == 0)
    np.testing.assert_allclose(_draws(tree), beta * (1 - alpha * untreated), rtol=1e-3)
