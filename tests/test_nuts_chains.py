"""NUTS runs two chains unless told otherwise, so that r_hat compares chains; "auto" keeps
to one when two would not fit its budget, and an explicit num_chains is respected."""

import numpy as np
import pytest

from skimpact import ImpactRegressor, choice
from skimpact.choice import InferenceChoice, after_over_budget, expected_leapfrog_steps
from skimpact.inference import NutsOverBudget

SHORT = {"num_warmup": 150, "num_samples": 150, "random_state": 0}


def _data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, 1.0 + X @ [1.0, -0.5] + rng.normal(0, 0.3, n)


def test_nuts_runs_two_chains_by_default_and_the_count_set():
    X, y = _data()
    est = ImpactRegressor(inference="nuts", **SHORT).fit(X, y)
    assert est.posterior_["posterior"].sizes["chain"] == 2
    assert est.diagnostics_["num_chains"] == 2
    assert est.posterior_["sample_stats"]["diverging"].shape == (2, 150)
    one = ImpactRegressor(inference="nuts", num_chains=1, **SHORT).fit(X, y)
    assert one.posterior_["posterior"].sizes["chain"] == 1


def test_auto_keeps_to_one_chain_when_two_exceed_the_budget(monkeypatch):
    X, y = _data()
    per_chain = 500 + 500
    # one chain's guess is 2/3 of the budget: it fits, two do not
    seconds = choice.NUTS_BUDGET_SECONDS / (1.5 * per_chain * expected_leapfrog_steps(4))
    monkeypatch.setattr(choice, "gradient_seconds", lambda *a: seconds)
    # however slow SVI is expected to be, NUTS's limit is the budget
    monkeypatch.setattr(choice, "NUTS_SVI_RATIO", np.inf)
    est = ImpactRegressor(num_samples=500, random_state=0)
    made = choice.choose_inference(
        "auto", None, (X,), {}, latent_dim=4, n_rows=len(X), key=None,
        settings={**est.get_params(), "guide": "auto"})
    assert made.method == "nuts" and made.num_chains == 1
    assert "with one chain" in made.reason and "with 2 (" in made.reason
    assert made.nuts_budget == (choice.NUTS_BUDGET_SECONDS, seconds)
    # a fraction of the budget: the default two chains
    monkeypatch.setattr(choice, "gradient_seconds", lambda *a: seconds / 10)
    made = choice.choose_inference(
        "auto", None, (X,), {}, latent_dim=4, n_rows=len(X), key=None,
        settings={**est.get_params(), "guide": "auto"})
    assert made.method == "nuts" and made.num_chains is None
    assert "2 chains x 1000 iterations" in made.reason


@pytest.mark.parametrize("measured, num_chains, expected", [
    (40.0, None, ("nuts", 1)),  # two chains over budget, one within: one chain
    (80.0, None, ("svi", None)),  # one chain over budget too: SVI
    (40.0, 2, ("svi", None)),  # chains the user set are not cut
])
def test_a_run_over_budget_goes_on_with_one_chain_if_one_fits(measured, num_chains,
                                                             expected):
    made = InferenceChoice("nuts", None, "NUTS: expected ...", 4, 1e-4, 5.0)
    over = NutsOverBudget(measured, 90.0, 100)
    then = after_over_budget(made, over, {"num_chains": num_chains, "guide": "auto"})
    assert (then.method, then.num_chains) == expected
    if then.method == "nuts":
        assert then.reason.startswith("NUTS with one chain: its first 100 warm-up")
        assert then.expected_nuts_seconds == measured / 2


def test_a_short_probe_decides_one_chain_by_its_least_possible_cost():
    # two chains stopped after 50 of the 100 measured iterations: extrapolated from those
    # (the deepest trees, before the step size adapts) one chain would take 40 s, but the
    # steps taken so far only prove 20 s: one chain runs and measures itself again
    made = InferenceChoice("nuts", None, "NUTS: expected ...", 4, 1e-4, 5.0)
    over = NutsOverBudget(80.0, 90.0, 50, 40.0)
    then = after_over_budget(made, over, {"num_chains": None, "guide": "auto"})
    assert (then.method, then.num_chains) == ("nuts", 1)
    assert "at least 20 s" in then.reason and "measures itself again" in then.reason
    beyond = NutsOverBudget(160.0, 90.0, 50, 80.0)  # even the least is over for one chain
    assert after_over_budget(made, beyond, {"num_chains": None, "guide": "auto"}).method == "svi"
