"""Eight Schools with NUTS and a non-centred reparameterisation against posteriordb's reference."""

import json

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from conftest import SHARED_DATA, needs_shared_data
from numpyro.infer.reparam import LocScaleReparam

from skimpact import ImpactRegressor

# posteriordb eight_schools_noncentered reference posterior (Stan, 10,000 draws)
REFERENCE = {"mu": 4.41, "tau": 3.60}


def eight_schools(X, y=None):
    """Centred Eight Schools: the school's standard error is the one feature."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", X.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, X[:, 0]), obs=y)


@pytest.mark.slow
@needs_shared_data
def test_eight_schools_matches_posteriordb_reference():
    data = json.loads((SHARED_DATA / "eight_schools.json").read_text())
    X = np.asarray(data["sigma"], dtype=float)[:, None]
    y = np.asarray(data["y"], dtype=float)
    est = ImpactRegressor(
        eight_schools,
        inference="nuts",
        num_warmup=1000,
        num_samples=2000,
        num_chains=4,
        target_accept_prob=0.9,
        reparam={"theta": LocScaleReparam(centered=0)},
        random_state=0,
    ).fit(X, y)
    stats = est.posterior_["sample_stats"]
    assert int(stats["diverging"].sum()) == 0
    post = est.posterior_["posterior"]
    assert post.sizes == {"chain": 4, "draw": 2000, "school": 8}
    assert "theta_decentered" in post and post["theta"].dims == ("chain", "draw", "school")
    for name, ref in REFERENCE.items():
        assert abs(float(post[name].mean()) - ref) < 0.3, (name, float(post[name].mean()))
    # the reparameterised model still predicts: theta is rebuilt from theta_decentered
    pred = est.sample_posterior_predictive(X, in_sample=True)["posterior_predictive"]["y"]
    assert pred.shape == (4, 2000, 8)
    assert np.all(np.abs(pred.mean(("chain", "draw")).values - post["theta"].mean(("chain", "draw")).values) < 2.0)
