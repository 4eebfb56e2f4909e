"""Convergence checks of a fit: r_hat, effective sample sizes, the loss trace, warnings.

After every fit the estimator calls :func:`finish_fit`, which asks the fit's inference
method (:mod:`skimpact.methods`) for its checks and adds their figures to its
``diagnostics_``; the built-in methods check

* for NUTS: the number of divergent transitions, and per parameter the largest split
  ``r_hat`` and the smallest bulk and tail effective sample sizes (computed with
  arviz-stats over every element of the parameter);
* for SVI and MAP: the loss trace (negative ELBO) judged by :func:`elbo_convergence`:
  whether it diverged (ended above where it started), stalled (never fell beyond its
  noise) or has not settled (still changing between its last two windows of steps);
  and, for a mean-field guide, the largest posterior correlation between two latent
  elements under a Laplace approximation at the fitted mean (:func:`laplace_correlation`),
  which the guide ignores;

and warns with :class:`sklearn.exceptions.ConvergenceWarning`, saying what to change, when
a check fails. Posterior tables are in :mod:`skimpact.posterior_summary`.
"""

import math
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import chi2, kruskal, norm
from arviz_stats.base import array_stats
from sklearn.exceptions import ConvergenceWarning

from .inspection import potential_hessian
from .methods import get_method

_PACKAGE_DIR = str(Path(__file__).resolve().parent)

__all__ = [
    "RHAT_MAX",
    "RHAT_MAX_ONE_CHAIN",
    "RHAT_FALSE_ALARM",
    "ESS_MIN_PER_CHAIN",
    "ELBO_RTOL",
    "ELBO_NOISE_Z",
    "MEAN_FIELD_CORR_MAX",
    "GUIDE_SPREAD_MAX",
    "LAPLACE_MAX_DIM",
    "chain_stats",
    "check_convergence",
    "draws_by_chain",
    "elbo_convergence",
    "finish_fit",
    "guide_spread_at",
    "laplace_correlation",
    "laplace_correlation_at",
    "loss_problems",
    "loss_window",
    "mcmc_diagnostics",
    "mcmc_problems",
    "rhat_limits",
]

#: Largest acceptable split r_hat of any parameter element (several chains).
RHAT_MAX = 1.01
#: Largest acceptable r_hat of one chain's two halves: with a few hundred draws per half the
#: largest of many elements' r_hat passes 1.01 by chance alone, even for exact draws.
RHAT_MAX_ONE_CHAIN = 1.05
#: Chance that exact draws (independent chains that sample the posterior) trip the r_hat
#: check of a fit anywhere among its elements: see :func:`rhat_limits`.
RHAT_FALSE_ALARM = 0.01
#: Smallest acceptable bulk / tail effective sample size, per chain.
ESS_MIN_PER_CHAIN = 100
#: Largest acceptable relative change of the smoothed loss over the last window.
ELBO_RTOL = 1e-3
#: A change of the loss counts as real, not noise, beyond this many standard errors.
ELBO_NOISE_Z = 3.0
#: Largest share of the loss's whole fall that its last window may still make.
_ELBO_LATE_SHARE = 0.05
#: Largest absolute posterior correlation between two latent elements that a mean-field
#: guide (which assumes none) may ignore before the fit warns.
MEAN_FIELD_CORR_MAX = 0.5
#: Largest factor by which a full-rank guide's sd along any direction may exceed, or fall
#: short of, the Laplace approximation's at the guide's mean before the fit warns. Not 2:
#: where the posterior is far from normal the guide's best fit departs from the curvature
#: at its mean, by 2.0-2.1x on the retail model of ``benchmarks/bench_workflow.py`` (20
#: non-centred store intercepts) after 3,000 steps and after 10,000 alike.
GUIDE_SPREAD_MAX = 3.0
#: Latent elements up to which the Laplace approximation's Hessian is computed.
LAPLACE_MAX_DIM = 2000
#: Steps at the very start of the trace that also stand for its start.
_ELBO_HEAD = 10


def finish_fit(diagnostics, inference, posterior, sample_sites=None):
    """Complete the diagnostics of a fit and warn when a convergence check fails.

    The checks are the inference method's own (:meth:`~skimpact.methods.InferenceMethod.
    convergence` and :meth:`~skimpact.methods.InferenceMethod.problems`): for NUTS
    :func:`mcmc_diagnostics` and :func:`mcmc_problems`, for SVI and MAP
    :func:`elbo_convergence` and :func:`loss_problems`.

    Parameters
    ----------
    diagnostics : dict
        What the inference runner recorded (``loss`` for SVI and MAP, ``num_divergences``
        for NUTS, ...).
    inference : str or skimpact.methods.InferenceMethod
        The inference method of the fit, or its registered name (``"svi"``, ...).
    posterior : xarray.Dataset, xarray.DataTree or None
        The posterior draws (a DataTree's ``posterior`` group is used); read only by
        methods whose draws are Markov chains.
    sample_sites : sequence of str, optional
        The sites NUTS sampled: only these are judged, so a deterministic site that copies
        or transforms one (a coefficient under another name, a decentred site's original)
        does not report the same problem again.

    Returns
    -------
    dict
        A new dict: ``diagnostics`` with the figures of the method's checks and
        ``converged``, whether every check passed.

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        One per failed check (see :func:`check_convergence`).
    """
    method = get_method(inference)
    if hasattr(posterior, "children"):
        posterior = posterior["posterior"].to_dataset()
    diag = dict(diagnostics)
    diag.update(method.convergence(diag, posterior, sample_sites))
    problems = method.problems(diag)
    diag["converged"] = not problems
    for message in problems:
        # attributed to the user's line that called fit, however deep inside skimpact
        warnings.warn(message, ConvergenceWarning, skip_file_prefixes=(_PACKAGE_DIR,))
    return diag


def mcmc_diagnostics(posterior):
    """Worst-element ``r_hat`` and effective sample sizes of each parameter.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with leading dims ``chain`` and ``draw``.

    Returns
    -------
    dict
        ``r_hat``, ``ess_bulk`` and ``ess_tail``: each ``{parameter: value}`` holding the
        largest r_hat and smallest ESS over the parameter's elements; ``r_hat_limit``:
        ``{parameter: limit}`` of :func:`rhat_limits` at the element furthest above its
        own limit (or nearest below it); ``num_chains`` and ``num_draws``. With a single
        chain, r_hat compares the chain's two halves.
    """
    values = {name: draws_by_chain(da) for name, da in posterior.data_vars.items()}
    stats = {name: chain_stats(v) for name, v in values.items()}
    n_chains = int(posterior.sizes["chain"])
    n_elements = sum(int(np.isfinite(s["r_hat"]).sum()) for s in stats.values())
    r_hat, ess_bulk, ess_tail, r_hat_limit = {}, {}, {}, {}
    for name, st in stats.items():
        r_hat[name] = _worst(st["r_hat"], np.nanmax)
        ess_bulk[name] = _worst(st["ess_bulk"], np.nanmin)
        ess_tail[name] = _worst(st["ess_tail"], np.nanmin)
        limits = rhat_limits(_within_chain_ess(values[name]), n_chains, max(n_elements, 1))
        excess = st["r_hat"] - limits
        if np.isfinite(excess).any():
            r_hat_limit[name] = float(limits[np.nanargmax(excess)])
    return {
        "r_hat": r_hat,
        "r_hat_limit": r_hat_limit,
        "ess_bulk": ess_bulk,
        "ess_tail": ess_tail,
        "num_chains": n_chains,
        "num_draws": int(posterior.sizes["draw"]),
    }


def rhat_limits(ess, n_chains, n_elements):
    """The largest acceptable r_hat of each element: :data:`RHAT_MAX` (or
    :data:`RHAT_MAX_ONE_CHAIN`), or more where exact draws with that element's ESS exceed
    it by chance.

    Split r_hat compares ``m`` half-chains (two per chain). For draws that do sample the
    posterior, ``(r_hat - 1) * 2 * ess / m`` follows about ``chi2(m - 1) / (m - 1) -
    1`` (a between-chain variance estimated from ``m`` means, each worth ``ess / m``
    draws). The limit is that quantity's ``1 - RHAT_FALSE_ALARM / n_elements`` quantile,
    so exact draws trip the check somewhere among ``n_elements`` elements with chance
    about :data:`RHAT_FALSE_ALARM`: with 2 chains of 500 draws and a few dozen elements
    the largest r_hat of exact draws passes 1.01 in most fits. With long runs (an ESS of
    a few thousand) the limit is :data:`RHAT_MAX` itself.

    Parameters
    ----------
    ess : array-like
        Effective sample size of each element: the sum of each chain's own (chains that
        disagree lower the ESS of their pooled draws, which would raise the limit by the
        very disagreement it is there to catch), the smaller of bulk and folded ESS.
    n_chains : int
        Chains of the run (one chain is split into two halves first).
    n_elements : int
        Elements checked in the whole fit.

    Returns
    -------
    numpy.ndarray
        One limit per element (NaN where the ESS is).

    Examples
    --------
    >>> from skimpact.convergence import rhat_limits
    >>> [round(float(v), 3) for v in rhat_limits([400, 4000], n_chains=2, n_elements=30)]
    [1.026, 1.01]
    """
    m = 2 * max(n_chains, 2)
    floor = RHAT_MAX if n_chains > 1 else RHAT_MAX_ONE_CHAIN
    excess = chi2.ppf(1 - RHAT_FALSE_ALARM / n_elements, m - 1) / (m - 1) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = 1 + excess * m / (2 * np.asarray(ess, dtype=float))
    return np.where(np.isnan(noise), np.nan, np.maximum(floor, noise))


def loss_window(n_steps):
    """Steps per window when smoothing or judging a loss trace of ``n_steps`` steps.

    Parameters
    ----------
    n_steps : int
        Length of the loss trace.

    Returns
    -------
    int
        A tenth of the steps, at least 50, but never more than ``n_steps`` (and at least 1).
    """
    n_steps = int(n_steps)
    return max(1, min(n_steps, max(n_steps // 10, 50)))


def elbo_convergence(loss, window=None, full_rate_steps=None):
    """Whether an SVI loss trace fell from its start and settled at its end.

    The trace is judged by the mean loss over windows of ``window`` steps, each compared
    with another by the difference of their means in standard errors (the loss is a noisy
    one-sample ELBO estimate). In order, the fit

    * **diverged** when the last window ends above the first: every loss of the last
      window exceeds every loss of the first, or the rise is beyond
      :data:`ELBO_NOISE_Z` standard errors and above :data:`ELBO_RTOL` relative;
    * otherwise, when the last window is not below the start by more than
      :data:`ELBO_NOISE_Z` standard errors (the start is the first window, or the first
      10 steps, whichever shows the larger fall) or by more than :data:`ELBO_RTOL`
      relative, it **diverged** if the loss's level differs between windows beyond noise
      (a rank test over all windows at the two-sided tail of :data:`ELBO_NOISE_Z`: the
      parameters were thrown about by too large steps and found nothing lower) and
      **stalled** if it kept one level throughout (the parameters never moved);
    * **has not settled** when the trace has fewer than two windows, or when the mean of
      the last window differs from the one before by more than :data:`ELBO_NOISE_Z`
      standard errors and either by more than :data:`ELBO_RTOL` relative or by more than
      5 % of the loss's whole fall (a slow, steady descent).

    When ``full_rate_steps`` is given, only the trace's first ``full_rate_steps`` steps
    are judged: SVI tapers its step size over its last third (:mod:`skimpact.inference`),
    where the loss falls further as the parameters jitter less, whether or not the
    optimisation had settled, and where a loss thrown about by too large a
    ``learning_rate`` comes down without that rate being right.

    Parameters
    ----------
    loss : array-like of shape (num_steps,)
        Negative ELBO per step.
    window : int, optional
        Steps per window; default :func:`loss_window` of the trace length. Traces shorter
        than two windows are judged for divergence and stalling on their halves.
    full_rate_steps : int, optional
        Steps run at the full learning rate, before a taper.

    Returns
    -------
    dict
        ``elbo_window``; ``elbo_start`` and ``elbo_end``, the mean loss of the first and
        last window; ``elbo_drop_ratio``, the fall from start to end in standard errors
        (negative when the loss rose); ``elbo_rel_change`` and ``elbo_noise_ratio``, the
        relative change between the last two windows and that change in standard errors
        (NaN with fewer than two windows); ``elbo_levels_differ``, for a trace that did
        not fall, whether its level differed between windows (``None`` otherwise);
        ``elbo_problem``, one of ``"diverged"``,
        ``"stalled"``, ``"not settled"`` or ``None``; and ``elbo_converged``, whether
        ``elbo_problem`` is ``None``. With ``full_rate_steps``, the figures are those of
        the steps judged, and ``elbo_full_rate_steps`` says how many they were.
    """
    loss = np.asarray(loss, dtype=float)
    n = len(loss)
    if full_rate_steps is not None and full_rate_steps < n:
        return {**elbo_convergence(loss[:full_rate_steps], window),
                "elbo_full_rate_steps": int(full_rate_steps)}
    window = int(window or loss_window(n))
    out = {
        "elbo_window": window,
        "elbo_start": math.nan,
        "elbo_end": math.nan,
        "elbo_drop_ratio": math.nan,
        "elbo_rel_change": math.nan,
        "elbo_noise_ratio": math.nan,
        "elbo_levels_differ": None,
    }
    problem, drop = "not settled", math.nan
    span = min(window, n // 2)
    if span >= 2:
        first, last, head = loss[:span], loss[-span:], loss[: min(_ELBO_HEAD, span)]
        start, end = first.mean(), last.mean()
        scale = max(abs(start), abs(end), np.finfo(float).tiny)
        drop = max(start, head.mean()) - end
        drop_z = max(_z_score(first, last), _z_score(head, last))
        out.update(elbo_start=float(start), elbo_end=float(end), elbo_drop_ratio=float(drop_z))
        rise = end - start
        if rise > 0 and (
            last.min() > first.max()
            or (-_z_score(first, last) > ELBO_NOISE_Z and rise > ELBO_RTOL * scale)
        ):
            problem = "diverged"
        elif drop_z <= ELBO_NOISE_Z or drop <= ELBO_RTOL * scale:
            # no fall beyond noise: a trace whose level moved between windows was thrown
            # about by too large steps; one that kept a single level never moved
            moved = _levels_differ(loss, span)
            out["elbo_levels_differ"] = moved
            problem = "diverged" if moved else "stalled"
    if n >= 2 * window:
        last, previous = loss[-window:], loss[-2 * window : -window]
        change = previous.mean() - last.mean()
        rel = abs(change) / max(abs(last.mean()), abs(previous.mean()), np.finfo(float).tiny)
        noise_ratio = abs(_z_score(previous, last))
        out.update(elbo_rel_change=float(rel), elbo_noise_ratio=float(noise_ratio))
        settled = noise_ratio <= ELBO_NOISE_Z or (
            rel <= ELBO_RTOL and not change > _ELBO_LATE_SHARE * drop
        )
        if problem == "not settled" and settled:
            problem = None
    out.update(elbo_problem=problem, elbo_converged=problem is None)
    return out


def check_convergence(diagnostics, inference):
    """Messages describing each failed convergence check, with what to change.

    Parameters
    ----------
    diagnostics : dict
        An estimator's ``diagnostics_``.
    inference : str or skimpact.methods.InferenceMethod
        The inference method of the fit, or its registered name; its checks are asked.

    Returns
    -------
    list of str
        Empty when every check passes.
    """
    return get_method(inference).problems(diagnostics)


def mcmc_problems(diagnostics, sampler="NUTS"):
    """The failed checks of Markov chains: divergences, r_hat and effective sample sizes.

    Parameters
    ----------
    diagnostics : dict
        ``num_divergences`` and :func:`mcmc_diagnostics`'s figures.
    sampler : str, default="NUTS"
        The sampler as messages name it.

    Returns
    -------
    list of str
        Empty when every check passes.

    Examples
    --------
    >>> from skimpact.convergence import mcmc_problems
    >>> mcmc_problems({"num_divergences": 3, "num_chains": 2})[0].split(".")[0]
    'NUTS had 3 divergent transition(s)'
    """
    problems = []
    n_div = int(diagnostics.get("num_divergences", 0))
    if n_div > 0:
        problems.append(
            f"{sampler} had {n_div} divergent transition(s). Raise `target_accept_prob` "
            "(e.g. 0.95) or reparameterise hierarchical scales, e.g. "
            "reparam={'theta': LocScaleReparam(centered=0)}."
        )
    chains = int(diagnostics.get("num_chains", 1))
    floor = RHAT_MAX if chains > 1 else RHAT_MAX_ONE_CHAIN
    limits = diagnostics.get("r_hat_limit", {})
    bad = {k: v for k, v in diagnostics.get("r_hat", {}).items() if v > limits.get(k, floor)}
    limit = (f"{floor}" if all(limits.get(k, floor) == floor for k in bad) else
             f"{floor} (or what exact draws of their ESS reach by chance: "
             f"{_fmt({k: limits.get(k, floor) for k in bad})})")
    if bad and chains > 1:
        problems.append(
            f"r_hat above {limit} for {_fmt(bad)}: the {chains} chains disagree about "
            "these sites. Increase `num_warmup` and `num_samples`, or reparameterise."
        )
    elif bad:
        problems.append(
            f"r_hat of the single chain's two halves above {limit} for {_fmt(bad)}: the "
            "chain drifted between its first and second half, so it has not mixed. One "
            "chain can show such drift but not whether a chain started elsewhere would "
            "find the same posterior: run `num_chains=2` or more (and raise "
            "`num_warmup` and `num_samples`), or reparameterise."
        )
    min_ess = ESS_MIN_PER_CHAIN * chains
    ess = {kind: {k: v for k, v in diagnostics.get(f"ess_{kind}", {}).items()
                  if v < min_ess}
           for kind in ("bulk", "tail")}
    low = [f"{k} ({', '.join(f'{kind} {ess[kind][k]:.0f}' for kind in ess if k in ess[kind])})"
           for k in dict.fromkeys([*ess["bulk"], *ess["tail"]])]
    if low:
        problems.append(
            f"Effective sample size below {min_ess} ({ESS_MIN_PER_CHAIN} per chain) for "
            f"{', '.join(low)}: bulk ESS measures how well the draws pin down a site's "
            "mean and centre, tail ESS its 5% and 95% quantiles (the ends of intervals). "
            "Increase `num_samples` (or `num_chains`); strongly autocorrelated draws may "
            "also need a reparameterisation."
        )
    return problems


def loss_problems(diagnostics, loss="The SVI loss"):
    """The failed checks of an optimised loss: :func:`elbo_convergence`'s verdict, for a
    full-rank guide its spread against the posterior's curvature
    (:func:`guide_spread_at`) and, for a mean-field guide, the posterior correlation it
    ignores.

    Parameters
    ----------
    diagnostics : dict
        ``loss`` with :func:`elbo_convergence`'s figures, the ``guide_sd_ratio_*``
        figures of :func:`guide_spread_at` when the guide is full-rank, and the
        ``laplace_*`` figures of :func:`laplace_correlation_at` when it is mean-field.
    loss : str, default="The SVI loss"
        The loss as messages name it (``"The MAP optimisation's loss"``).

    Returns
    -------
    list of str
        Empty when every check passes.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.convergence import elbo_convergence, loss_problems
    >>> loss = np.full(400, 7.0)
    >>> loss_problems({"loss": loss, **elbo_convergence(loss)})[0][:22]
    'The SVI loss stalled: '
    """
    problems = []
    if "loss" in diagnostics and not diagnostics.get("elbo_converged", True):
        problems.append(_elbo_message(diagnostics, loss))
    # the Laplace approximation is taken at the fitted mean: after a loss that diverged
    # or stalled that mean is far from the posterior, and so is its curvature
    fell = diagnostics.get("elbo_problem") not in ("diverged", "stalled")
    low = diagnostics.get("guide_sd_ratio_min", math.nan)
    high = diagnostics.get("guide_sd_ratio_max", math.nan)
    # judged once the loss settled: before that the loss's own message says what to do
    settled = diagnostics.get("elbo_problem") is None
    if settled and (low < 1 / GUIDE_SPREAD_MAX or high > GUIDE_SPREAD_MAX):
        how, why = (
            (f"{1 / low:.2g}x narrower", "spread along a ridge of correlated parameters, "
             "which the loss barely feels")
            if low < 1 / GUIDE_SPREAD_MAX else
            (f"{high:.2g}x wider", "shrunk where many rows pin the posterior down"))
        problems.append(
            f"The guide {diagnostics.get('guide', '')} is {how} along some direction "
            "of the latent values than the posterior's curvature at its mean says "
            f"(Laplace approximation): either the optimisation has not yet {why} (more "
            "`num_steps` move it), or the posterior is far from normal there (they do "
            "not). Either way effects along that direction may get a wrong interval: "
            "raise `num_steps` and compare, or use inference='nuts'."
        )
    corr = diagnostics.get("laplace_max_abs_corr", math.nan)
    if fell and corr > MEAN_FIELD_CORR_MAX:
        a, b = diagnostics.get("laplace_pair", ("?", "?"))
        problems.append(
            f"The mean-field guide {diagnostics.get('guide', '')} treats the latent "
            f"values as independent, but their posterior correlation between {a} and "
            f"{b} is {diagnostics.get('laplace_corr', corr):+.2f} (Laplace approximation "
            "at the fitted mean): effects that combine them get a wrong mean and "
            "interval. Use guide='AutoMultivariateNormal' (or guide='auto') or "
            "inference='nuts'."
        )
    return problems


def laplace_correlation(model, args, kwargs, values):
    """The strongest posterior correlation between two latent elements, from a Laplace
    approximation at ``values``.

    The Hessian of the model's potential energy (negative log-density in unconstrained
    space) at ``values`` is inverted to a covariance whose correlations are compared.

    Parameters
    ----------
    model : callable
        A NumPyro model.
    args, kwargs : tuple, dict
        Its arguments, the outcome observed.
    values : dict
        ``{latent site: value}`` in the constrained space (e.g. a guide's median).

    Returns
    -------
    dict
        ``laplace_max_abs_corr`` (NaN when the Hessian is not positive definite or there
        are more than 2,000 latent elements), ``laplace_corr`` (its signed value) and
        ``laplace_pair`` (the two elements, ``"site[i]"``).

    Examples
    --------
    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> from skimpact.convergence import laplace_correlation
    >>> def model(X, y=None):
    ...     b = numpyro.sample("b", dist.Normal(0, 10).expand([2]).to_event(1))
    ...     numpyro.sample("y", dist.Normal(X @ b, 1.0), obs=y)
    >>> X = np.column_stack([np.ones(50), np.linspace(5, 6, 50)]); y = X @ [1.0, 2.0]
    >>> out = laplace_correlation(model, (X,), {"y": y}, {"b": np.array([1.0, 2.0])})
    >>> round(out["laplace_corr"], 2), out["laplace_pair"]
    (-1.0, ('b[0]', 'b[1]'))
    """
    # an unconstrained site has at most as many elements as its value (a simplex one fewer)
    if sum(math.prod(np.shape(v)) for v in values.values()) > LAPLACE_MAX_DIM:
        return laplace_correlation_at(None, None)
    return laplace_correlation_at(*potential_hessian(model, args, kwargs, values))


def guide_spread_at(z, hessian, covariance):
    """How far a full-rank guide's spread departs from the posterior's curvature at the
    guide's mean: the extreme ratios, over every direction of the unconstrained latent
    space, of the guide's sd along it to the Laplace approximation's there.

    For a posterior close to normal, as a fitted full-rank guide assumes, both are 1. A
    ratio far below 1 is a guide that has not spread along a direction the data leave
    loose (a ridge of strongly correlated parameters, which the loss barely feels); far
    above 1, a guide that has not shrunk where many rows pin the posterior down.

    Parameters
    ----------
    z : dict or None
        ``{latent site: unconstrained value}`` at the guide's mean; ``None`` when the
        Hessian was not computed (more than :data:`LAPLACE_MAX_DIM` latent elements).
    hessian, covariance : arrays of shape (d, d)
        The potential energy's Hessian at ``z`` and the guide's covariance, both
        flattened in the order of :func:`jax.flatten_util.ravel_pytree` (sites sorted by
        name).

    Returns
    -------
    dict
        ``guide_sd_ratio_min`` and ``guide_sd_ratio_max`` (NaN when ``z`` is ``None`` or
        the Hessian is not positive definite there, so that there is no Laplace
        approximation to compare with).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.convergence import guide_spread_at
    >>> hessian = np.linalg.inv([[1.0, 0.99], [0.99, 1.0]])   # a ridge along (1, -1)
    >>> out = guide_spread_at({"b": np.zeros(2)}, hessian, np.eye(2))
    >>> round(out["guide_sd_ratio_min"], 2), round(out["guide_sd_ratio_max"], 2)
    (0.71, 10.0)
    """
    out = {"guide_sd_ratio_min": math.nan, "guide_sd_ratio_max": math.nan}
    if z is None:
        return out
    hessian, covariance = np.asarray(hessian, float), np.asarray(covariance, float)
    if not (np.all(np.isfinite(hessian)) and np.all(np.isfinite(covariance))):
        return out
    try:
        root = np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return out
    # the guide's covariance in the coordinates where the Laplace approximation is the
    # identity: its eigenvalues are the squared sd ratios along the extreme directions
    ratios = np.sqrt(np.clip(np.linalg.eigvalsh(root.T @ covariance @ root), 0, None))
    return {"guide_sd_ratio_min": float(ratios.min()), "guide_sd_ratio_max": float(ratios.max())}


def laplace_correlation_at(z, hessian):
    """:func:`laplace_correlation` from the potential energy's Hessian at the point ``z``.

    Parameters
    ----------
    z : dict or None
        ``{latent site: unconstrained value}``; ``None`` when the Hessian was not computed
        (more than :data:`LAPLACE_MAX_DIM` latent elements).
    hessian : array of shape (d, d) or None
        Hessian of the potential energy at ``z``, flattened in the order of
        :func:`jax.flatten_util.ravel_pytree` (sites sorted by name).

    Returns
    -------
    dict
        As :func:`laplace_correlation`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.convergence import laplace_correlation_at
    >>> out = laplace_correlation_at({"b": np.zeros(2)}, np.array([[1.0, 0.5], [0.5, 1.0]]))
    >>> round(out["laplace_corr"], 2), out["laplace_pair"]
    (-0.5, ('b[0]', 'b[1]'))
    """
    out = {"laplace_max_abs_corr": math.nan, "laplace_corr": math.nan,
           "laplace_pair": ("", "")}
    if z is None:
        return out
    sizes = {k: math.prod(np.shape(v)) for k, v in z.items()}
    hessian = np.asarray(hessian, float)
    if hessian.shape[0] < 2 or not np.all(np.isfinite(hessian)) \
            or np.linalg.eigvalsh(hessian).min() <= 0:
        return out
    cov = np.linalg.inv(hessian)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 0.0)
    i, j = np.unravel_index(np.argmax(np.abs(corr)), corr.shape)
    i, j = min(i, j), max(i, j)
    labels = [f"{k}[{n}]" if sizes[k] > 1 else k for k in sorted(sizes) for n in range(sizes[k])]
    out.update(laplace_max_abs_corr=float(abs(corr[i, j])), laplace_corr=float(corr[i, j]),
               laplace_pair=(labels[i], labels[j]))
    return out


def draws_by_chain(da):
    """The draws of one parameter as a ``(chain, draw, n_elements)`` float array.

    Parameters
    ----------
    da : xarray.DataArray
        Draws with dims ``chain``, ``draw`` and any others (flattened, in order).

    Returns
    -------
    numpy.ndarray of shape (n_chain, n_draw, n_elements)
    """
    da = da.transpose("chain", "draw", ...)
    values = np.asarray(da.values, dtype=float)
    return values.reshape(values.shape[0], values.shape[1], -1)


def chain_stats(values):
    """Split r_hat, bulk and tail ESS per element of a ``(chain, draw, k)`` array.

    A single chain is cut into its two halves for r_hat, so drift within it still shows.
    Elements that never change (a MAP point estimate) get NaN: there is nothing to mix.

    Parameters
    ----------
    values : numpy.ndarray of shape (n_chain, n_draw, k)
        Draws of ``k`` elements (:func:`draws_by_chain`).

    Returns
    -------
    dict
        ``r_hat``, ``ess_bulk`` and ``ess_tail``, each an array of ``k`` floats.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.convergence import chain_stats
    >>> draws = np.random.default_rng(0).normal(size=(2, 400, 1))
    >>> bool(chain_stats(draws)["r_hat"][0] < 1.01)
    True
    """
    chains = values
    if values.shape[0] == 1 and values.shape[1] >= 8:
        half = values.shape[1] // 2
        chains = np.stack([values[0, :half], values[0, half : 2 * half]])
    constant = np.ptp(values.reshape(-1, values.shape[-1]), axis=0) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = {
            "r_hat": np.asarray(array_stats.rhat(chains, chain_axis=0, draw_axis=1)),
            "ess_bulk": np.asarray(
                array_stats.ess(values, method="bulk", chain_axis=0, draw_axis=1)
            ),
            "ess_tail": np.asarray(
                array_stats.ess(
                    values, method="tail", prob=(0.05, 0.95), chain_axis=0, draw_axis=1
                )
            ),
        }
    return {k: np.where(constant, np.nan, v.astype(float)) for k, v in stats.items()}


# ------------------------------------------------------------------------------ helpers
def _within_chain_ess(values):
    """Sum over chains of each chain's own ESS, the smaller of its bulk ESS and its folded
    ESS (r_hat is the larger of a location and a folded, scale comparison), per element
    of ``(chain, draw, k)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return sum(np.minimum(*(np.asarray(array_stats.ess(values[c : c + 1], method=m,
                                                           chain_axis=0, draw_axis=1),
                                           dtype=float) for m in ("bulk", "folded")))
                   for c in range(values.shape[0]))


def _z_score(a, b):
    """How far the mean of ``a`` lies above the mean of ``b``, in standard errors of the
    difference (infinite when both are constant and differ)."""
    diff = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if se > 0:
        return float(diff / se)
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)


def _levels_differ(loss, window):
    """Whether the loss's level differs between consecutive windows of ``window`` steps
    beyond noise: Kruskal-Wallis over the windows (ranks, so the huge losses of a thrashing
    fit do not swamp the test) at the two-sided normal tail of :data:`ELBO_NOISE_Z`."""
    groups = [loss[i : i + window] for i in range(0, len(loss) - window + 1, window)]
    if len(groups) < 2 or np.ptp(loss) == 0:
        return False
    p_value = kruskal(*groups).pvalue
    return bool(p_value < 2 * norm.sf(ELBO_NOISE_Z))


def _elbo_message(diag, loss):
    """The warning for a loss trace that :func:`elbo_convergence` did not pass, naming the
    loss as the user knows it (``loss``: SVI's, or the MAP optimisation's)."""
    window = diag.get("elbo_window")
    start, end = diag.get("elbo_start", math.nan), diag.get("elbo_end", math.nan)
    problem = diag.get("elbo_problem") or "not settled"
    if problem == "diverged":
        how = (
            f"its level jumped between windows of steps and it ended at {end:.4g} against "
            f"{start:.4g} over the first steps, no lower beyond its noise"
            if diag.get("elbo_levels_differ")
            else f"it rose from {start:.4g} over the first steps to {end:.4g} over the last"
        )
        how += _at_full_rate(diag)
        return (
            f"{loss} diverged: {how}. Lower `learning_rate` (it must be positive, "
            "e.g. 0.001 to 0.01), and standardise X and y if their scales are large."
        )
    if problem == "stalled":
        return (
            f"{loss} stalled: it averaged {start:.4g} over the first steps and {end:.4g} "
            "over the last, no lower beyond its noise, so the parameters did not move. "
            "`learning_rate` must be positive: raise it (e.g. 0.01), and check that the "
            "model's likelihood depends on its parameters."
        )
    rel = diag.get("elbo_rel_change", math.nan)
    what = (
        "fewer than two windows of steps to judge"
        if math.isnan(rel)
        else f"relative change {rel:.2g} over the last {window} steps"
    ) + _at_full_rate(diag)
    return (
        f"{loss} has not settled ({what}). Increase `num_steps`, or raise "
        "`learning_rate` if the loss is still falling steadily (lower it if it jumps)."
    )


def _at_full_rate(diag):
    steps = diag.get("elbo_full_rate_steps")
    return "" if steps is None else f" of the {steps} steps at the full learning rate"


def _worst(values, reduce):
    values = np.asarray(values, dtype=float)
    return float(reduce(values)) if np.isfinite(values).any() else math.nan


def _fmt(values, spec=".3f"):
    return ", ".join(f"{k} ({v:{spec}})" for k, v in values.items())
