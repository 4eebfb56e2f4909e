"""Predictions sharded across devices, and NUTS chains run in parallel across devices, equal
the single-device run."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    import numpyro, numpyro.distributions as dist
    from skimpact import ImpactRegressor

    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
        mu = numpyro.sample("mu", dist.Normal(0, 1))
        with numpyro.plate("obs", X.shape[0]):
            t = numpyro.sample("t", dist.Normal(mu, 1.0))
            numpyro.sample("y", dist.Normal(X @ b + t, 0.5), obs=y)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)).astype(np.float32)
    y = (X @ np.array([1.0, 2.0]) + rng.normal(size=40)).astype(np.float32)
    est = ImpactRegressor(model, inference="svi", num_steps=50, num_samples=20, random_state=0, batch_size=16)
    est.fit(X, y)
    from skimpact.predictive import _draw_sharding
    assert (_draw_sharding(20) is None) == (jax.device_count() == 1)  # 20 draws are sharded
    out = est.sample_posterior_predictive(X[:30])["predictions"]
    ins = est.sample_posterior_predictive(X, in_sample=True)["posterior_predictive"]
    # a streamed summary: its draws reduced inside the sharded program
    from skimpact.blockwise import stream_effect
    from skimpact.effect_summaries import EffectSummarySink
    summary = stream_effect(est, X[:30], {0: 2.0 * X[:30, 0]}, sink=EffectSummarySink(
        "y", per_row=True, by=X[:30, 1] > 0))[0]
    # NUTS chains: in parallel across devices with two devices, sequential with one.
    nuts = ImpactRegressor(model, inference="nuts", num_warmup=50, num_samples=50,
                           num_chains=2, random_state=0).fit(X, y)
    np.savez(OUT or sys.argv[1], n=jax.device_count(), y=out["y"].values,
             t=out["t"].values, yi=ins["y"].values, b=nuts.posterior_["posterior"]["b"].values,
             rows=summary.row_frame().to_numpy(), by=summary.frame(by=True).to_numpy())
    """
)


@pytest.mark.slow
def test_two_devices_equal_one(tmp_path):
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    code = "OUT = None\n" + _SCRIPT
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "two.npz")], env=env, check=True)
    # The single-device run, in this process (one CPU device).
    exec(compile(_SCRIPT, "<single-device>", "exec"), {"OUT": str(tmp_path / "one.npz")})
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert int(one["n"]) == 1 and int(two["n"]) == 2
    assert one["b"].shape == (2, 50, 2)
    for name in ("y", "t", "yi", "b", "rows", "by"):
        np.testing.assert_allclose(one[name], two[name], rtol=1e-5, atol=1e-5)
