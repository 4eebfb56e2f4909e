"""Inference runners: SVI (any autoguide), MAP and NUTS, each returning posterior draws.

Every runner returns an :class:`InferenceResult` whose ``draws`` hold the latent sample
sites with leading ``(chain, draw)`` axes as NumPy arrays; nothing of NumPyro's guide or
MCMC objects is kept, so fitted estimators pickle cleanly and predictions never re-trace a
guide with the outcome unobserved.
"""

import time
from dataclasses import dataclass, field
from functools import partial

import jax
import numpy as np
import numpyro.infer.autoguide as autoguide
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, init_to_median
from numpyro.optim import Adam

__all__ = ["InferenceError", "InferenceResult", "run_inference"]


class InferenceError(RuntimeError):
    """Inference broke down (for example a non-finite SVI loss)."""


@dataclass
class InferenceResult:
    """Posterior draws and what the runner observed while producing them."""

    draws: dict
    deterministic: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)


def resolve_guide(guide, model):
    """Build an autoguide for ``model`` from a name, an AutoGuide class or a callable."""
    if isinstance(guide, str):
        cls = getattr(autoguide, guide, None)
        if not (isinstance(cls, type) and issubclass(cls, autoguide.AutoGuide)):
            names = sorted(
                n
                for n, c in vars(autoguide).items()
                if isinstance(c, type) and issubclass(c, autoguide.AutoGuide) and n[:4] == "Auto"
            )
            raise ValueError(f"Unknown guide {guide!r}; use one of {names} or an AutoGuide class.")
        guide = cls
    if isinstance(guide, type) and issubclass(guide, autoguide.AutoGuide):
        return guide(model, init_loc_fn=init_to_median(num_samples=15))
    if callable(guide):
        return guide(model)
    raise TypeError(
        f"`guide` must be an AutoGuide class, its name or a callable model -> guide; got {guide!r}."
    )


def run_inference(
    method, model, args, kwargs, *, latent_sites, deterministic_sites, key, settings
):
    """Dispatch to the SVI / MAP / NUTS runner named by ``method``."""
    if method in ("svi", "map"):
        guide = "AutoDelta" if method == "map" else settings["guide"]
        result = _run_svi(model, args, kwargs, guide=guide, key=key, **_svi_settings(settings))
    elif method == "nuts":
        result = _run_nuts(model, args, kwargs, key=key, **_nuts_settings(settings))
    else:
        raise ValueError(f"`inference` must be one of 'svi', 'nuts', 'map'; got {method!r}.")
    result.draws = {k: v for k, v in result.draws.items() if k in latent_sites}
    result.deterministic = _deterministic_sites(
        model, args, kwargs, result.draws, deterministic_sites, key
    )
    return result


def _svi_settings(s):
    return {k: s[k] for k in ("num_steps", "learning_rate", "num_samples", "progress_bar")}


def _nuts_settings(s):
    keys = ("num_warmup", "num_samples", "num_chains", "target_accept_prob", "progress_bar")
    return {k: s[k] for k in keys}


@partial(jax.jit, static_argnums=(0, 2))
def _svi_chunk(svi, state, length, args, kwargs):
    def step(state, _):
        state, loss = svi.update(state, *args, **kwargs)
        return state, loss

    return jax.lax.scan(step, state, None, length=length)


def _run_svi(
    model, args, kwargs, *, guide, key, num_steps, learning_rate, num_samples, progress_bar
):
    guide = resolve_guide(guide, model)
    svi = SVI(model, guide, Adam(learning_rate), Trace_ELBO())
    k_init, k_post = jax.random.split(key)
    start = time.perf_counter()
    # The guide's prototype is traced here, with the outcome observed (kwargs hold y).
    state = svi.init(k_init, *args, **kwargs)
    n_chunks = 20 if progress_bar else 1
    chunk = -(-num_steps // n_chunks)
    losses, done = [], 0
    bar = _progress(progress_bar, num_steps, "SVI")
    while done < num_steps:
        length = min(chunk, num_steps - done)
        state, chunk_losses = _svi_chunk(svi, state, length, args, kwargs)
        chunk_losses = np.asarray(chunk_losses)
        bad = np.flatnonzero(~np.isfinite(chunk_losses))
        if bad.size:
            step = done + int(bad[0]) + 1
            raise InferenceError(
                f"SVI loss became {chunk_losses[bad[0]]} at step {step} of {num_steps}. "
                "Lower `learning_rate`, check the priors and the scale of X and y (standardise "
                "inputs), or start the guide nearer the data (e.g. init_to_median / "
                "init_to_feasible)."
            )
        losses.append(chunk_losses)
        done += length
        if bar is not None:
            bar.update(length)
            bar.set_postfix(loss=f"{chunk_losses[-1]:.4g}")
    if bar is not None:
        bar.close()
    params = svi.get_params(state)
    draws = guide.sample_posterior(k_post, params, *args, sample_shape=(num_samples,), **kwargs)
    draws = {k: np.asarray(v)[None] for k, v in draws.items()}
    losses = np.concatenate(losses)
    return InferenceResult(
        draws=draws,
        diagnostics={"loss": losses, "fit_seconds": time.perf_counter() - start},
    )


def _run_nuts(
    model,
    args,
    kwargs,
    *,
    key,
    num_warmup,
    num_samples,
    num_chains,
    target_accept_prob,
    progress_bar,
):
    chain_method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    mcmc = MCMC(
        NUTS(model, target_accept_prob=target_accept_prob),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    start = time.perf_counter()
    mcmc.run(key, *args, extra_fields=("diverging",), **kwargs)
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    return InferenceResult(
        draws=draws,
        diagnostics={
            "diverging": diverging,
            "num_divergences": int(diverging.sum()),
            "fit_seconds": time.perf_counter() - start,
        },
    )


def _deterministic_sites(model, args, kwargs, latent, names, key):
    """Deterministic sites ``names`` of the fitted model for each posterior draw."""
    if not names:
        return {}
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in latent.items()}
    n_chain, n_draw = next(iter(latent.values())).shape[:2]
    out = Predictive(model, posterior_samples=flat, return_sites=list(names))(key, *args, **kwargs)
    return {k: np.asarray(v).reshape((n_chain, n_draw) + v.shape[1:]) for k, v in out.items()}


def _progress(enabled, total, desc):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)
