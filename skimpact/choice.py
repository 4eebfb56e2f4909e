"""The automatic choice of inference method and guide (``inference="auto"``, ``guide="auto"``).

At ``fit`` the estimator knows the latent dimension of its model (the number of scalar
latent values, summed over latent sites), the number of rows, and the cost of one gradient
of the model's log-density, which :func:`choose_inference` measures: it compiles the
gradient, then times a few calls and keeps the fastest. The rule, with the measurements behind its constants in
``benchmarks/README.md``:

* **NUTS** when its expected cost, ``(num_warmup + num_samples) x num_chains x`` expected
  leapfrog steps per iteration ``x`` gradient time, is within its limit for one chain
  (for ``num_chains`` chains when that is set). With ``num_chains=None`` NUTS runs its
  default two chains, so that r_hat compares chains, when they too fit the limit, else
  one. The limit (:func:`nuts_limit`) compares NUTS with the SVI fit it would replace:
  :data:`NUTS_SVI_RATIO` times SVI's expected cost (``num_steps`` x one gradient, which
  an SVI step with one particle about costs), but never below
  :data:`NUTS_FREE_SECONDS`, below which the compilation both methods pay (5 to 7 s for a
  first fit on 2 cores) dominates either fit, and never above
  :data:`NUTS_BUDGET_SECONDS`.
  The expected number of leapfrog steps grows as the fourth root of the latent dimension
  (:func:`expected_leapfrog_steps`). This covers regression-sized models up to tens of
  thousands of rows, where NUTS is both fast and exact up to Monte Carlo error. That
  guess assumes a well-conditioned posterior; a correlated one needs far deeper trees (4
  to 5 times the guess, and more, on real models), so the run then *measures* its cost:
  the leapfrog steps its first 100 warm-up iterations actually take, times the gradient
  time, extrapolate the whole run, and beyond the limit the fit goes on with one chain if
  one fits, else switches to SVI (:func:`after_over_budget`, :func:`switch_to_svi`),
  saying so. The measurement stops as soon as the steps taken so far put the run over
  its limit (it runs in loops of 10 iterations), so an expensive posterior costs at most
  the limit's share of those iterations, not all of them.
* **SVI** otherwise (and whenever ``fit_batch_size`` asks for minibatches), with the guide
  :func:`choose_guide` picks from the latent dimension: a full-rank
  ``AutoMultivariateNormal`` up to :data:`FULL_RANK_MAX_DIM` dimensions, which keeps the
  correlations between coefficients that effects are contrasts of; a low-rank
  ``AutoLowRankMultivariateNormal`` up to :data:`LOW_RANK_MAX_DIM`; the mean-field
  ``AutoNormal`` only above.

Explicit settings win: ``inference="svi"``, ``"nuts"``, ``"map"`` or the name of any other
method registered in :mod:`skimpact.methods` is used as given (with the estimator's guide
for a method that reads ``guide``, else the method's own), and
a guide other than ``"auto"`` is used as given. With ``inference="auto"``, settings that
only one method reads decide for it when they were changed from their defaults:
``num_steps``, ``learning_rate`` or ``guide`` (:data:`SVI_SETTINGS`) choose SVI,
``num_warmup``, ``num_chains`` or ``target_accept_prob`` (:data:`NUTS_SETTINGS`) choose
NUTS; with settings of both, the rule above decides and the reason says which settings
the chosen method ignores.
"""

import math
import time
from dataclasses import asdict, dataclass, replace

import jax

from .inference import NUTS_METHOD, SVI_METHOD
from .inspection import potential_grads, start_point
from .methods import get_method

__all__ = [
    "NUTS_SETTINGS",
    "SVI_SETTINGS",
    "FULL_RANK_MAX_DIM",
    "LOW_RANK_MAX_DIM",
    "NUTS_BUDGET_SECONDS",
    "NUTS_FREE_SECONDS",
    "NUTS_SVI_RATIO",
    "InferenceChoice",
    "after_over_budget",
    "choose_guide",
    "switch_to_svi",
    "choose_inference",
    "expected_leapfrog_steps",
    "gradient_seconds",
    "latent_dimension",
    "nuts_limit",
]

#: Settings only SVI reads: changed from their defaults, they choose SVI.
SVI_SETTINGS = SVI_METHOD.settings
#: Settings only NUTS reads: changed from their defaults, they choose NUTS.
NUTS_SETTINGS = NUTS_METHOD.settings
#: Largest expected NUTS cost (seconds) for which ``inference="auto"`` runs NUTS.
NUTS_BUDGET_SECONDS = 30.0
#: Most times SVI's expected cost that ``inference="auto"`` lets NUTS take.
NUTS_SVI_RATIO = 2.0
#: Expected NUTS seconds ``inference="auto"`` always allows: about what compiling either
#: method costs a first fit on 2 cores, so NUTS within it stays within about 2x of SVI.
NUTS_FREE_SECONDS = 5.0
#: Largest latent dimension for which ``guide="auto"`` is a full-rank multivariate normal.
FULL_RANK_MAX_DIM = 200
#: Largest latent dimension for which ``guide="auto"`` is a low-rank multivariate normal.
LOW_RANK_MAX_DIM = 20_000
#: Leapfrog steps per NUTS iteration expected for a one-dimensional posterior.
_LEAPFROG_BASE = 8.0
#: Most leapfrog steps of one NUTS iteration (NumPyro's default tree depth of 10).
_LEAPFROG_MAX = 1023
#: Timed calls of the compiled gradients (at least; up to ten times as many within
#: _GRADIENT_SECONDS); the fastest counts. A timed loop runs at most _GRADIENT_LOOP
#: gradients, as many as fit in a fifth of _GRADIENT_SECONDS.
_GRADIENT_CALLS = 5
_GRADIENT_SECONDS = 0.05
_GRADIENT_LOOP = 64


@dataclass(frozen=True)
class InferenceChoice:
    """The inference method and guide a fit uses, and why.

    Attributes
    ----------
    method : str
        The registered name of the inference method (:mod:`skimpact.methods`).
    guide : str or None
        The guide (SVI only; ``"AutoDelta"`` for MAP, ``None`` for NUTS).
    reason : str
        A sentence saying why, with the figures the rule used.
    latent_dim : int
        Scalar latent values of the model.
    gradient_seconds : float
        Time of one gradient of the log-density (NaN when not measured).
    expected_nuts_seconds : float
        The rule's estimate of the NUTS run (NaN when not measured).
    limit_seconds : float
        The most NUTS may take (:func:`nuts_limit`); a NUTS run chosen by the rule
        measures itself against it.
    expected_svi_seconds : float
        The rule's estimate of the SVI run (NaN when not measured).
    num_chains : int or None
        NUTS chains the choice fixed for the run (one, when NUTS's default chains would
        exceed the budget); ``None`` leaves them to the ``num_chains`` setting.
    """

    method: str
    guide: object
    reason: str
    latent_dim: int
    gradient_seconds: float = math.nan
    expected_nuts_seconds: float = math.nan
    limit_seconds: float = NUTS_BUDGET_SECONDS
    expected_svi_seconds: float = math.nan
    num_chains: object = None

    @property
    def nuts_budget(self):
        """``(limit seconds, gradient seconds)`` when the rule chose NUTS from its guess
        (the run then measures its cost against the limit), else ``None``."""
        if not get_method(self.method).mcmc or math.isnan(self.expected_nuts_seconds):
            return None
        return self.limit_seconds, self.gradient_seconds

    def as_dict(self):
        """The choice as a plain dict (what ``diagnostics_["inference_choice"]`` holds)."""
        out = asdict(self)
        if not isinstance(out["guide"], (str, type(None))):
            out["guide"] = repr(out["guide"])
        return out


def latent_dimension(site_shapes, latent_sites):
    """Number of scalar latent values: the sizes of the latent sites, summed.

    Parameters
    ----------
    site_shapes : dict
        ``{site: shape}`` of a traced model (:attr:`skimpact.inspection.ModelInfo.site_shapes`).
    latent_sites : sequence of str

    Returns
    -------
    int

    Examples
    --------
    >>> from skimpact.choice import latent_dimension
    >>> latent_dimension({"b": (3,), "sigma": (), "y": (100,)}, ["b", "sigma"])
    4
    """
    return int(sum(math.prod(site_shapes.get(k, ())) for k in latent_sites))


def expected_leapfrog_steps(latent_dim):
    """Leapfrog steps per NUTS iteration expected for a posterior of ``latent_dim`` dims.

    With a well-adapted mass matrix the trajectory length NUTS needs grows about as the
    fourth root of the dimension: ``8 * latent_dim ** 0.25``, at most 1023.

    Parameters
    ----------
    latent_dim : int

    Returns
    -------
    float

    Examples
    --------
    >>> from skimpact.choice import expected_leapfrog_steps
    >>> expected_leapfrog_steps(16)
    16.0
    """
    return float(min(_LEAPFROG_MAX, _LEAPFROG_BASE * max(1, latent_dim) ** 0.25))


def nuts_limit(svi_seconds):
    """The most seconds ``inference="auto"`` lets NUTS take, and why.

    :data:`NUTS_SVI_RATIO` times the expected SVI run, at least :data:`NUTS_FREE_SECONDS`
    and at most :data:`NUTS_BUDGET_SECONDS`.

    Parameters
    ----------
    svi_seconds : float
        The expected SVI run (``num_steps`` x one gradient).

    Returns
    -------
    limit : float
    why : str
        What sets the limit, for the choice's reason.

    Examples
    --------
    >>> from skimpact.choice import nuts_limit
    >>> nuts_limit(0.2)[0], nuts_limit(4.0)[0], nuts_limit(100.0)[0]
    (5.0, 8.0, 30.0)
    """
    relative = NUTS_SVI_RATIO * svi_seconds
    limit = min(NUTS_BUDGET_SECONDS, max(relative, NUTS_FREE_SECONDS))
    if limit == NUTS_BUDGET_SECONDS:
        return limit, f"the {NUTS_BUDGET_SECONDS:g} s budget"
    if limit == relative:
        return limit, f"{NUTS_SVI_RATIO:g} x SVI's expected {svi_seconds:.3g} s"
    return limit, (f"{NUTS_FREE_SECONDS:g} s, as SVI's expected {svi_seconds:.3g} s is "
                   "small beside the compilation both methods pay")


def choose_guide(guide, latent_dim):
    """The SVI guide for ``guide`` (``"auto"`` picks one from the latent dimension).

    Parameters
    ----------
    guide : str, AutoGuide class or callable
        ``"auto"``, or a guide used as given.
    latent_dim : int

    Returns
    -------
    guide : str, AutoGuide class or callable
        ``"AutoMultivariateNormal"`` up to :data:`FULL_RANK_MAX_DIM` dims,
        ``"AutoLowRankMultivariateNormal"`` up to :data:`LOW_RANK_MAX_DIM`, else
        ``"AutoNormal"``; ``guide`` itself when it is not ``"auto"``.

    Examples
    --------
    >>> from skimpact.choice import choose_guide
    >>> choose_guide("auto", 12), choose_guide("auto", 50_000)
    ('AutoMultivariateNormal', 'AutoNormal')
    """
    if not (isinstance(guide, str) and guide == "auto"):
        return guide
    if latent_dim <= FULL_RANK_MAX_DIM:
        return "AutoMultivariateNormal"
    if latent_dim <= LOW_RANK_MAX_DIM:
        return "AutoLowRankMultivariateNormal"
    return "AutoNormal"


def choose_inference(method, model, args, kwargs, *, latent_dim, n_rows, settings, key,
                     explicit=()):
    """Resolve ``inference`` and ``guide`` settings to what a fit runs.

    Parameters
    ----------
    method : str
        The estimator's ``inference``: ``"auto"``, or the name of a registered inference
        method (:mod:`skimpact.methods`), which is kept.
    model : callable
        The model as fitted (weights and masks applied).
    args, kwargs : tuple, dict
        The model's arguments at fit (the outcome observed).
    latent_dim : int
        Scalar latent values (:func:`latent_dimension`).
    n_rows : int
        Rows of the training data (reported in the reason).
    settings : dict
        The estimator's parameters (``guide``, ``num_steps``, ``num_warmup``,
        ``num_samples``, ``num_chains``, ``fit_batch_size``).
    key : jax.random.PRNGKey
        For the point at which the gradient is timed.
    explicit : collection of str
        Settings changed from their defaults: those of :data:`SVI_SETTINGS` or
        :data:`NUTS_SETTINGS` decide ``"auto"`` for their method.

    Returns
    -------
    InferenceChoice

    Examples
    --------
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from skimpact.choice import choose_inference
    >>> def model(X, y=None):
    ...     b = numpyro.sample("b", dist.Normal(0, 1).expand([2]).to_event(1))
    ...     with numpyro.plate("obs", X.shape[0]):
    ...         numpyro.sample("y", dist.Normal(X @ b, 1.0), obs=y)
    >>> X = np.ones((50, 2)); y = np.zeros(50)
    >>> settings = {"guide": "auto", "num_steps": 3000, "num_warmup": 500,
    ...             "num_samples": 500, "num_chains": 1, "fit_batch_size": None}
    >>> choice = choose_inference("auto", model, (X,), {"y": y}, latent_dim=2, n_rows=50,
    ...                           settings=settings, key=jax.random.PRNGKey(0))
    >>> choice.method, choice.guide
    ('nuts', None)
    """
    guide = settings.get("guide", "auto")
    if method != "auto":
        chosen = get_method(method)
        if "guide" not in chosen.settings:
            return InferenceChoice(chosen.name, chosen.default_guide,
                                   f"inference={chosen.name!r} was set.", latent_dim)
        guided = choose_guide(guide, latent_dim)
        return InferenceChoice(chosen.name, guided, f"inference={chosen.name!r} was set"
                               + _guide_reason(guide, guided, latent_dim), latent_dim)
    nuts, svi = NUTS_METHOD.name, SVI_METHOD.name
    if settings.get("fit_batch_size") is not None:
        chosen = choose_guide(guide, latent_dim)
        return InferenceChoice(
            svi, chosen, "fit_batch_size asks for minibatches, which only SVI takes"
            + _guide_reason(guide, chosen, latent_dim), latent_dim)
    svi_set = [k for k in SVI_SETTINGS if k in explicit]
    nuts_set = [k for k in NUTS_SETTINGS if k in explicit]
    if svi_set and not nuts_set:
        chosen = choose_guide(guide, latent_dim)
        return InferenceChoice(
            svi, chosen, f"SVI: {_settings(svi_set, settings)} set, which only SVI reads"
            + _guide_reason(guide, chosen, latent_dim), latent_dim)
    if nuts_set and not svi_set:
        return InferenceChoice(
            nuts, None, f"NUTS: {_settings(nuts_set, settings)} set, which only NUTS "
            "reads.", latent_dim)
    seconds = gradient_seconds(model, args, kwargs, key)
    per_chain = settings["num_warmup"] + settings["num_samples"]
    steps = expected_leapfrog_steps(latent_dim)
    chains = NUTS_METHOD.chains(settings["num_chains"])
    svi_seconds = settings["num_steps"] * seconds
    limit, why = nuts_limit(svi_seconds)
    # SVI when one chain does not fit (the user's chains when set); NUTS's default chains
    # when they fit, else one
    judged = chains if settings["num_chains"] is not None else 1
    one = per_chain * steps * seconds
    made = dict(latent_dim=latent_dim, gradient_seconds=seconds, limit_seconds=limit,
                expected_svi_seconds=svi_seconds)

    def figures(n):
        return (f"{latent_dim} latent dims, {n_rows} rows, gradient {seconds * 1e3:.3g} ms, "
                f"{_chains(n)} x {per_chain} iterations x {steps:.0f} expected leapfrog "
                f"steps; limit {limit:.3g} s: {why}")

    if one * judged > limit:
        chosen = choose_guide(guide, latent_dim)
        reason = (f"SVI: NUTS would take about {one * judged:.3g} s > {limit:.3g} s "
                  f"({figures(judged)})" + _ignored(nuts_set, settings, "SVI")
                  + _guide_reason(guide, chosen, latent_dim))
        return InferenceChoice(svi, chosen, reason, expected_nuts_seconds=one * judged,
                               **made)
    if one * chains <= limit:
        reason = (f"NUTS: expected {one * chains:.3g} s <= {limit:.3g} s "
                  f"({figures(chains)})" + _ignored(svi_set, settings, "NUTS") + ".")
        return InferenceChoice(nuts, None, reason, expected_nuts_seconds=one * chains, **made)
    reason = (f"NUTS: expected {one:.3g} s <= {limit:.3g} s with one chain, "
              f"{one * chains:.3g} s with {chains} ({figures(1)})"
              + _ignored(svi_set, settings, "NUTS") + ".")
    return InferenceChoice(nuts, None, reason, expected_nuts_seconds=one, num_chains=1,
                           **made)


def after_over_budget(choice, over, settings):
    """The choice after a NUTS run measured itself over its limit.

    Parameters
    ----------
    choice : InferenceChoice
        The rule's NUTS choice.
    over : skimpact.inference.NutsOverBudget
        What the first warm-up loop measured.
    settings : dict
        The estimator's parameters (``num_chains``, ``guide``).

    Returns
    -------
    InferenceChoice
        NUTS with one chain when the run had NUTS's default chains (``num_chains=None``)
        and one chain may fit the limit (its least possible cost does; the one-chain run
        measures itself again and goes to SVI if it is over); else :func:`switch_to_svi`'s
        SVI.
    """
    chains = NUTS_METHOD.chains(choice.num_chains or settings["num_chains"])
    one = over.expected_seconds / chains
    limit = choice.limit_seconds
    if chains == 1 or settings["num_chains"] is not None \
            or over.least_seconds / chains > limit:
        return switch_to_svi(choice, over, settings["guide"])
    reason = (
        f"NUTS with one chain: its first {over.iterations} warm-up iterations averaged "
        f"{over.mean_steps:.0f} leapfrog steps (the guess was "
        f"{expected_leapfrog_steps(choice.latent_dim):.0f}), so {chains} chains would take "
        f"about {over.expected_seconds:.3g} s > {limit:.3g} s; one chain takes "
        f"at least {over.least_seconds / chains:.3g} s (about {one:.3g} s if the first "
        "iterations' trees stay as deep), so it runs and measures itself again."
    )
    return replace(choice, reason=reason, expected_nuts_seconds=one, num_chains=1)


def _chains(n):
    return "1 chain" if n == 1 else f"{n} chains"


def switch_to_svi(choice, over, guide):
    """The choice after a NUTS run measured itself over its limit.

    Parameters
    ----------
    choice : InferenceChoice
        The rule's NUTS choice.
    over : skimpact.inference.NutsOverBudget
        What the first warm-up iterations measured.
    guide : str, AutoGuide class or callable
        The estimator's ``guide`` setting.

    Returns
    -------
    InferenceChoice
        SVI with :func:`choose_guide`'s guide, the measured expectation and a reason
        giving the guess and the measurement.
    """
    chosen = choose_guide(guide, choice.latent_dim)
    guess = expected_leapfrog_steps(choice.latent_dim)
    reason = (
        f"SVI: NUTS was expected to take {choice.expected_nuts_seconds:.3g} s with "
        f"{guess:.0f} leapfrog steps per iteration, but its first {over.iterations} warm-up "
        f"iterations averaged {over.mean_steps:.0f} (a correlated posterior): about "
        f"{over.expected_seconds:.3g} s > {choice.limit_seconds:.3g} s"
        + _guide_reason(guide, chosen, choice.latent_dim)
    )
    return replace(choice, method=SVI_METHOD.name, guide=chosen, reason=reason,
                   expected_nuts_seconds=over.expected_seconds, num_chains=None)


def _settings(names, settings):
    return ", ".join(f"{k}={settings[k]!r}" for k in names)


def _ignored(names, settings, method):
    return f"; {method} ignores {_settings(names, settings)}" if names else ""


def gradient_seconds(model, args, kwargs, key):
    """Seconds of one gradient of ``model``'s potential energy (its negative log-density
    in unconstrained space) as NUTS's and SVI's compiled loops run it.

    The difference between a compiled loop of many gradients and one of a single gradient,
    per gradient, so that the cost of dispatching a call (tens of microseconds, more than
    the gradient of a model of a few hundred rows) is not counted; each the fastest of a
    few timed calls.

    Parameters
    ----------
    model : callable
    args, kwargs : tuple, dict
        The model's arguments, the outcome observed.
    key : jax.random.PRNGKey
        For the initial point.

    Returns
    -------
    float

    Examples
    --------
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from skimpact.choice import gradient_seconds
    >>> def model(y=None):
    ...     numpyro.sample("y", dist.Normal(numpyro.sample("m", dist.Normal()), 1), obs=y)
    >>> bool(gradient_seconds(model, (), {"y": np.zeros(3)}, jax.random.PRNGKey(0)) < 1)
    True
    """
    # a prior draw as the point (one compiled program, not NumPyro's eager initialisation)
    z = start_point(model, args, kwargs, key)
    args, kwargs = jax.device_put((args, kwargs))
    compiled = potential_grads.lower(model, z, args, kwargs, 1).compile()

    def fastest(n, calls):
        # the fastest of several calls: on a loaded machine single calls are descheduled
        best, done, begin = math.inf, 0, time.perf_counter()
        while done < calls or (done < 10 * calls
                               and time.perf_counter() - begin < _GRADIENT_SECONDS):
            start = time.perf_counter()
            jax.block_until_ready(compiled(z, args, kwargs, n))
            best = min(best, time.perf_counter() - start)
            done += 1
        return best

    jax.block_until_ready(compiled(z, args, kwargs, 1))
    one = fastest(1, _GRADIENT_CALLS)
    # a loop of n gradients, n from the one call's time (its dispatch included, which
    # inside NUTS's or SVI's compiled loops is paid once, not per gradient): the
    # difference of the two is n - 1 gradients as those loops run them
    n = int(min(_GRADIENT_LOOP, max(2, _GRADIENT_SECONDS / 5 / one)))
    return float(max(fastest(n, _GRADIENT_CALLS) - one, 0.0) / (n - 1) or one / n)


def _guide_reason(guide, chosen, latent_dim):
    name = chosen if isinstance(chosen, str) else getattr(chosen, "__name__", repr(chosen))
    if isinstance(guide, str) and guide == "auto":
        return f"; guide {name} for {latent_dim} latent dims."
    return f"; guide {name} as set."
