"""Compiled programs are bounded: past the limit on memory maps, the next fit or
prediction releases them (counted releases and compilations, never times), and what is
computed afterwards is unchanged."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from skimpact import ImpactRegressor, Model
from skimpact._compilation_cache import PROGRAMS, ProgramBudget, _limit_from


def _linear():
    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0, 1.0).expand([X.shape[1]]).to_event(1))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(X @ b, 0.5), obs=y)

    return model


_COMPILES = [0]


def _count(name, *args, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


@pytest.fixture
def small_bound():
    """A bound every process is over, checked after every compilation."""
    saved = PROGRAMS.limit, PROGRAMS.every
    PROGRAMS.limit, PROGRAMS.every = 1, 1
    yield PROGRAMS
    PROGRAMS.limit, PROGRAMS.every = saved


def _fit(n):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 2))
    return ImpactRegressor(Model(_linear), inference="map", num_steps=50, num_samples=10,
                           random_state=0).fit(X, X @ [1.0, -1.0])


@pytest.mark.slow
def test_programs_over_the_bound_are_released_and_compiled_again(small_bound):
    X = np.ones((5, 2))
    first = _fit(41)
    before = first.predict(X)
    releases = small_bound.releases
    for n in (42, 43):  # distinct shapes: each fit compiles its own programs
        _fit(n)
    assert small_bound.releases >= releases + 2
    # the first fit's prediction program was released: predicting compiles it again, and
    # gives the same numbers
    compiled = _COMPILES[0]
    np.testing.assert_array_equal(first.predict(X), before)
    assert _COMPILES[0] > compiled


def test_no_bound_releases_nothing():
    budget = ProgramBudget(limit=0, every=1)
    budget.compiled = 10**6
    assert budget.release_if_over() is False and budget.releases == 0


def test_the_bound_is_read_from_the_environment():
    assert _limit_from({"SKIMPACT_MAX_MAPS": "5000"}) == 5000
    assert _limit_from({"SKIMPACT_MAX_MAPS": "0"}) == 0
    with pytest.raises(ValueError, match="SKIMPACT_MAX_MAPS must be a whole number"):
        _limit_from({"SKIMPACT_MAX_MAPS": "lots"})
