"""The built-in inference methods: SVI (any autoguide), MAP and NUTS, each returning
posterior draws.

Each is an :class:`~skimpact.methods.InferenceMethod` (:class:`SVIMethod`,
:class:`MAPMethod`, :class:`NUTSMethod`) registered under its name when this module is
imported; :func:`run_inference` runs the method a fit chose.

Every runner returns an :class:`InferenceResult` whose ``draws`` hold the latent sample
sites with leading ``(chain, draw)`` axes as NumPy arrays; nothing of NumPyro's guide or
MCMC objects is kept, so fitted estimators pickle cleanly and predictions never re-trace a
guide with the outcome unobserved.
"""

import math
import numbers
import signal
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.infer.autoguide as autoguide
from numpyro.handlers import replay, seed
from numpyro.infer import ELBO, NUTS, SVI, Predictive, Trace_ELBO, init_to_median
from numpyro.infer.util import compute_log_probs
from numpyro.optim import _NumPyroOptim
from numpyro.primitives import Messenger
from numpyro.util import check_model_guide_match

from .convergence import (
    LAPLACE_MAX_DIM, elbo_convergence, guide_spread_at, laplace_correlation_at, loss_problems,
    mcmc_diagnostics, mcmc_problems,
)
from .inspection import TRACER_ERRORS, ModelRef, potential_hessian, traced_value_error
from .methods import InferenceMethod, get_method, method_names, register_method

__all__ = [
    "InferenceError",
    "InferenceResult",
    "MAPMethod",
    "MAP_METHOD",
    "NUTSMethod",
    "NUTS_METHOD",
    "NutsOverBudget",
    "SVIMethod",
    "SVI_METHOD",
    "run_inference",
]


class InferenceError(RuntimeError):
    """Inference broke down (for example a non-finite SVI loss)."""


class NutsOverBudget(RuntimeError):
    """The first warm-up loop of a NUTS run needed so many leapfrog steps per iteration
    that the whole run would exceed its budget (``run_inference(..., nuts_budget=...)``).

    Attributes
    ----------
    expected_seconds : float
        The whole run extrapolated from the loop.
    mean_steps : float
        Leapfrog steps per iteration in the loop.
    iterations : int
        Iterations the loop ran.
    least_seconds : float
        The whole run's least possible cost: the steps taken so far, as if the rest of the
        measured window took none (the first warm-up iterations, before the step size
        adapts, take the deepest trees, so ``expected_seconds`` from a short loop is high).
    """

    def __init__(self, expected_seconds, mean_steps, iterations, least_seconds=None):
        self.expected_seconds, self.mean_steps, self.iterations = (
            float(expected_seconds), float(mean_steps), int(iterations))
        self.least_seconds = float(expected_seconds if least_seconds is None
                                   else least_seconds)
        super().__init__(
            f"NUTS would take about {expected_seconds:.3g} s: its first {iterations} "
            f"warm-up iterations averaged {mean_steps:.0f} leapfrog steps."
        )


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
    method, model, args, kwargs, *, latent_sites, deterministic_sites, key, settings,
    row_plate=None, local_sites=(), row_kwargs=(), cache_key=None, nuts_budget=None,
):
    """Run the inference method ``method`` (see :mod:`skimpact.methods`) on ``model``.

    With ``settings["fit_batch_size"]`` set (methods that take minibatches only: SVI and
    MAP), every step runs the model on a random minibatch of rows (of X and of the keyword
    arguments named in ``row_kwargs``: the outcome and the per-row inputs), the log-density of
    sites in the plate ``row_plate`` scaled by ``n_rows / batch`` so the ELBO stays
    unbiased; models with ``local_sites`` (one latent per row) cannot be fitted so.

    ``cache_key``, equal for fits that run the same program (model, guide, optimiser), lets
    them share one compilation of the SVI steps; ``None`` compiles per fit.

    ``nuts_budget``, ``(seconds, gradient seconds)``, makes a NUTS run measure its cost:
    the leapfrog steps its first :data:`_NUTS_CHUNK_STEPS` warm-up iterations take, times
    the gradient time, extrapolate the whole run, and beyond ``seconds`` it stops with
    :class:`NutsOverBudget`. The measurement runs in loops of :data:`_NUTS_PROBE_STEPS`
    iterations and stops as soon as the steps already taken decide it, so an over-budget
    run spends at most its budget's share of those iterations before it stops.

    The method's guide is ``settings["guide"]`` when the method reads ``guide`` (SVI),
    else its own default guide (``"AutoDelta"`` for MAP).
    """
    method = get_method(method)
    batch = settings.get("fit_batch_size")
    if batch is not None:
        _check_minibatch(method, batch, row_plate, local_sites)
    guide = settings["guide"] if "guide" in method.settings else method.default_guide
    try:
        result = method.run(
            model, args, kwargs, key=key, settings=settings, guide=guide,
            minibatch=None if batch is None else (int(batch), row_plate, tuple(row_kwargs)),
            cache_key=cache_key, budget=nuts_budget,
        )
        result.draws = {k: v for k, v in result.draws.items() if k in latent_sites}
        result.deterministic = _deterministic_sites(
            ModelRef(model, cache_key), args, kwargs, result.draws,
            tuple(deterministic_sites), key,
        )
    except TRACER_ERRORS as exc:
        raise traced_value_error(exc) from exc
    return result


class SVIMethod(InferenceMethod):
    """Stochastic variational inference: ``num_steps`` Adam steps (``learning_rate``,
    tapered to a tenth over the last third) on the ELBO of the guide ``guide``, then
    ``num_samples`` independent draws of the guide at its parameters averaged over the
    taper.

    Its checks judge the loss trace (:func:`~skimpact.convergence.elbo_convergence`), for
    a full-rank guide its spread against the Laplace approximation
    (:func:`~skimpact.convergence.guide_spread_at`) and, for a mean-field guide, the
    posterior correlation it ignores (:func:`~skimpact.convergence.loss_problems`).
    """

    name = "svi"
    settings = ("num_steps", "learning_rate", "guide")
    minibatch = True
    #: The loss as convergence messages name it.
    loss_name = "The SVI loss"

    def run(self, model, args, kwargs, *, key, settings, guide, minibatch=None,
            cache_key=None, budget=None):
        return _run_svi(
            model, args, kwargs, guide=guide, key=key, minibatch=minibatch,
            cache_key=None if cache_key is None else (cache_key, _hashable(guide)),
            loss_name=self.loss_name, **_svi_settings(settings),
        )

    def convergence(self, diagnostics, posterior, sample_sites=None):
        if "loss" not in diagnostics:
            return {}
        return elbo_convergence(diagnostics["loss"],
                                full_rate_steps=diagnostics.get("full_rate_steps"))

    def problems(self, diagnostics):
        return loss_problems(diagnostics, self.loss_name)


class MAPMethod(SVIMethod):
    """The posterior mode: SVI with a point-mass guide (``AutoDelta``), every one of the
    ``num_samples`` draws the same point."""

    name = "map"
    settings = ("num_steps", "learning_rate")
    default_guide = "AutoDelta"
    point_estimate = True
    loss_name = "The MAP optimisation's loss"


class NUTSMethod(InferenceMethod):
    """NUTS (MCMC): ``num_chains`` chains of ``num_warmup`` + ``num_samples`` iterations
    at ``target_accept_prob``.

    With ``num_chains=None`` it runs :attr:`default_chains` chains, so that r_hat compares
    chains. Chains run one per device when there are enough devices, else one after
    another: that reuses the one compiled program of a chain, where vectorised chains
    (NumPyro's ``chain_method="vectorized"``) compiled far longer and ran no faster on a
    2-core CPU (``benchmarks/README.md``, "NUTS chains").

    Its checks count divergent transitions and judge r_hat and the bulk and tail effective
    sample sizes of the sampled sites (:func:`~skimpact.convergence.mcmc_problems`); its
    ``sample_stats`` group holds ``diverging``.
    """

    name = "nuts"
    settings = ("num_warmup", "num_chains", "target_accept_prob")
    mcmc = True
    #: Chains run when ``num_chains`` is None.
    default_chains = 2

    def chains(self, num_chains):
        """How many chains run for the setting ``num_chains``.

        Parameters
        ----------
        num_chains : int or None
            The estimator's setting; ``None`` for :attr:`default_chains`.

        Returns
        -------
        int

        Examples
        --------
        >>> from skimpact.inference import NUTS_METHOD
        >>> NUTS_METHOD.chains(None), NUTS_METHOD.chains(1)
        (2, 1)
        """
        return self.default_chains if num_chains is None else int(num_chains)

    def run(self, model, args, kwargs, *, key, settings, guide, minibatch=None,
            cache_key=None, budget=None):
        return _run_nuts(model, args, kwargs, key=key, cache_key=cache_key, budget=budget,
                         num_chains=self.chains(settings["num_chains"]),
                         **_nuts_settings(settings))

    def convergence(self, diagnostics, posterior, sample_sites=None):
        if sample_sites is not None:
            posterior = posterior[[k for k in posterior.data_vars if k in set(sample_sites)]]
        return mcmc_diagnostics(posterior)

    def problems(self, diagnostics):
        return mcmc_problems(diagnostics)

    def sample_stats(self, diagnostics):
        return {"diverging": diagnostics["diverging"]} if "diverging" in diagnostics else None


#: The built-in inference methods, registered under their names.
SVI_METHOD = register_method(SVIMethod())
MAP_METHOD = register_method(MAPMethod())
NUTS_METHOD = register_method(NUTSMethod())


def _svi_settings(s):
    return {k: s[k] for k in ("num_steps", "learning_rate", "num_samples", "progress_bar")}


_MEAN_FIELD = (autoguide.AutoNormal, autoguide.AutoDiagonalNormal)
_DETERMINISTIC_ELEMENTS = 2**24  # draws x rows evaluated at once for deterministic sites
_SVI_FIRST_CHUNK = 100  # SVI steps of the first compiled loop, which times one step
_SVI_MAX_CHUNK = 10_000  # most SVI steps per compiled loop (the size of its loss buffer)
_SVI_CHUNK_SECONDS = 0.25  # aimed-at wall time of one loop; KeyboardInterrupt lands between
_SVI_AHEAD_SECONDS = 2.0  # steps a first fit dispatches while it compiles the draws' program
_NUTS_CHUNK_STEPS = 100  # NUTS iterations per compiled loop; also the measured warm-up
_NUTS_PROBE_STEPS = 10  # iterations per compiled loop of a run that measures its cost


def _nuts_settings(s):
    keys = ("num_warmup", "num_samples", "target_accept_prob", "progress_bar")
    return {k: s[k] for k in keys}


class _Keyed:
    """The recipe of one SVI program (model, guide, optimiser) as a static jit argument,
    equal to others with an equal key, so fits of the same program share compiled steps.

    Every compiled function builds its own SVI object from the recipe inside its trace and
    initialises it there (:meth:`svi`): NumPyro's autoguides keep their prototype trace and
    SVI its constraint transforms as attributes, and objects built inside a trace are dropped
    with it, so no tracer outlives the trace that made it.
    """

    def __init__(self, make_svi, key):
        self.make_svi, self.shared = make_svi, key is not None
        self.key = key if self.shared else id(make_svi)

    def svi(self, args, kwargs, num_steps=1):
        """A fresh SVI object with its guide set up for ``args`` (and its step sizes for a
        run of ``num_steps``, which may be traced); the throw-away ``init`` only fixes
        shapes and constraints, and its unused values are compiled away."""
        svi = self.make_svi(num_steps=num_steps)
        svi.init(jax.random.PRNGKey(0), *args, **kwargs)
        return svi

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Keyed) and self.key == other.key


@partial(jax.jit, static_argnums=(0, 1, 4))
def _sample_guide(keyed, laplace_model, key, state, num_samples, args, kwargs, full_args,
                  full_kwargs):
    """``num_samples`` draws of the guide (with the draws' key of the fit's ``key``) and,
    when ``laplace_model`` is given and the latent values have at most ``LAPLACE_MAX_DIM``
    elements, the point and Hessian of the Laplace check at the guide's median on the full
    data, with a full-rank guide's covariance of the unconstrained latent values (in the
    same order, sites sorted by name): one program."""
    svi = keyed.svi(args, kwargs)
    params = _averaged_params(svi, state)
    draws = svi.guide.sample_posterior(
        _fit_keys(key)[1], params, *args, sample_shape=(num_samples,), **kwargs
    )
    if laplace_model is None:
        return draws, None
    median = svi.guide.median(params)
    if sum(math.prod(jnp.shape(v)) for v in median.values()) > LAPLACE_MAX_DIM:
        return draws, None
    z, hessian = potential_hessian(laplace_model, full_args, full_kwargs, median)
    if isinstance(svi.guide, autoguide.AutoMultivariateNormal):
        return draws, (z, hessian, svi.guide.get_posterior(params).covariance_matrix)
    return draws, (z, hessian)


def _fit_keys(key):
    """The fit's keys, derived inside the programs: (initial parameters, guide draws,
    minibatch rows)."""
    k_init, k_post = jax.random.split(key)
    return k_init, k_post, jax.random.fold_in(k_init, 1)


@partial(jax.jit, static_argnums=(0,))
def _svi_chunk(keyed, state, length, num_steps, args, kwargs):
    """``length`` (a traced count, at most ``_SVI_MAX_CHUNK``) SVI steps from ``state`` of
    a run of ``num_steps`` (traced too); the losses fill the first ``length`` entries of a
    buffer of fixed size. One program runs every chunk, whatever its length, so the
    schedule is free to follow the clock."""
    svi = keyed.svi(args, kwargs, num_steps)

    def step(i, carry):
        state, losses = carry
        state, loss = svi.update(state, *args, **kwargs)
        return state, losses.at[i].set(loss)

    return jax.lax.fori_loop(0, length, step, (state, _loss_buffer()))


@partial(jax.jit, static_argnums=(0, 1))
def _svi_minibatch_chunk(keyed, batch, state, length, num_steps, args, kwargs):
    """:func:`_svi_chunk` on a random minibatch of rows per step, ``batch`` being ``(rows,
    names of the keyword arguments cut with them)``; ``state`` is the SVI state and the key
    of the next minibatch."""
    (size, names), n = batch, args[0].shape[0]
    svi = keyed.svi(*_rows(args, kwargs, jnp.zeros(size, int), names), num_steps)

    def step(i, carry):
        (state, key), losses = carry
        key, k_rows = jax.random.split(key)
        idx = jax.random.randint(k_rows, (size,), 0, n)
        b_args, b_kwargs = _rows(args, kwargs, idx, names)
        state, loss = svi.update(state, *b_args, **b_kwargs)
        return (state, key), losses.at[i].set(loss)

    return jax.lax.fori_loop(0, length, step, (state, _loss_buffer()))


@partial(jax.jit, static_argnums=(0, 1))
def _initial_state(keyed, batch, key, args, kwargs):
    """The guide's initial parameters (NumPyro's ``SVI.init``) for the fit's ``key``, in
    one program rather than NumPyro's op-by-op set-up; with minibatches (``batch`` as in
    :func:`_svi_minibatch_chunk`), set up on one such minibatch and returned with the key of
    the next."""
    k_init, _, k_steps = _fit_keys(key)
    if batch is None:
        return keyed.make_svi().init(k_init, *args, **kwargs)
    (size, names), n = batch, args[0].shape[0]
    k_init, k_rows = jax.random.split(k_init)
    args, kwargs = _rows(args, kwargs, jax.random.randint(k_rows, (size,), 0, n), names)
    return keyed.make_svi().init(k_init, *args, **kwargs), k_steps


def _compile_together(*calls):
    """Trace and lower each ``(jitted function, arguments)`` here, compiling each in a
    thread of its own as soon as it is lowered (XLA compiles without holding the GIL): the
    next program is traced while the last compiles, and a first fit waits for its slowest
    program, not for their sum. Programs compiled before are found in JAX's caches and
    compile nothing."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        compiled = [pool.submit(fn.lower(*args).compile) for fn, args in calls]
    for c in compiled:
        c.result()  # a failed compilation raises here


_PREPARED = OrderedDict()  # signatures of the shared programs compiled together
_PREPARED_MAX = 64


def _prepared(static, inputs, prepare):
    """``prepare()`` (compile the fit's programs together) once per shared program
    (``static`` starts with its recipe) and input types: a refit of the same shapes goes
    straight to its compiled programs. What ``prepare()`` returns, or ``None`` when it was
    not called."""
    if not static[0].shared:
        return prepare()
    leaves, treedef = jax.tree.flatten(inputs)
    signature = (static, treedef, tuple(jax.typeof(v) for v in leaves))
    if signature in _PREPARED:
        _PREPARED.move_to_end(signature)
        return None
    done = prepare()
    _PREPARED[signature] = True
    if len(_PREPARED) > _PREPARED_MAX:
        _PREPARED.popitem(last=False)
    return done


def _loss_buffer():
    return jnp.full(_SVI_MAX_CHUNK, jnp.nan, dtype=jnp.result_type(float))


def _make_svi(model, guide, learning_rate, num_steps=1):
    return SVI(model, resolve_guide(guide, model), _tapered_adam(learning_rate, num_steps),
               _SiteOrderELBO())


#: Adam's first- and second-moment decays in SVI. The second is shorter than Adam's usual
#: 0.999: that remembers a squared gradient for about a thousand steps, so once the loss
#: has fallen the large gradients of the first steps keep every step tiny for thousands
#: more, and a guide whose scale must shrink far (a posterior made narrow by many rows)
#: had not shrunk after the default 3,000 steps.
_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.95, 1e-8
#: The last third of the SVI steps shrinks the step size geometrically to this factor of
#: ``learning_rate`` and averages the parameters: Adam at a constant step jitters about
#: the optimum by about its step, more than the posterior's sd when many rows make it
#: narrow.
_TAPER_FROM, _TAPER_TO = 2 / 3, 0.1


def _tapered_adam(learning_rate, num_steps):
    """Adam for a run of ``num_steps`` steps: ``learning_rate`` for the first
    ``_TAPER_FROM`` of them, then a geometric taper to ``_TAPER_TO`` of it over the rest,
    during which the state also keeps the running mean of the parameters
    (:func:`_averaged_params`), the parameters a fit reports. ``num_steps`` may be traced,
    so one program serves every length."""
    start = num_steps * _TAPER_FROM // 1  # steps at the full rate (no eager op for an int)

    def rate(i):  # step i + 1 of num_steps
        return learning_rate * _TAPER_TO ** jnp.clip((i + 1 - start) / (num_steps - start),
                                                     0, 1)

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return params, zeros, zeros, params

    def update(i, grads, state):
        params, m, v, mean = state
        m = jax.tree.map(lambda m, g: _ADAM_B1 * m + (1 - _ADAM_B1) * g, m, grads)
        v = jax.tree.map(lambda v, g: _ADAM_B2 * v + (1 - _ADAM_B2) * g * g, v, grads)
        m_bias, v_bias = 1 - _ADAM_B1 ** (i + 1), 1 - _ADAM_B2 ** (i + 1)
        params = jax.tree.map(
            lambda p, m, v: p - rate(i) * (m / m_bias) / (jnp.sqrt(v / v_bias) + _ADAM_EPS),
            params, m, v)
        weight = 1 / jnp.maximum(i + 1 - start, 1)  # 1 before the taper
        mean = jax.tree.map(lambda a, p: a + weight * (p - a), mean, params)
        return params, m, v, mean

    # NumPyro's own wrapper of optax transformations builds its optimisers this way
    return _NumPyroOptim(lambda *fns: fns, init, update, lambda state: state[0])


def _averaged_params(svi, state):
    """The guide's constrained parameters a fit reports: the mean of the iterates over
    the taper (:func:`_tapered_adam`)."""
    return svi.constrain_fn(state.optim_state[1][3])


class _SiteOrderELBO(ELBO):
    """NumPyro's ``Trace_ELBO`` with one particle, from the same random numbers, summed
    over sites in the order the guide and the model run them.

    ``Trace_ELBO`` sums over a Python set of site names, whose order follows the string
    hash seed of the process: each new process (a joblib worker, a second session) built a
    different step program, missed JAX's compilation cache and compiled it again. A model
    with ``numpyro.mutable`` sites, whose state ``Trace_ELBO`` carries, is left to it.
    """

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        model_seed, guide_seed = jax.random.split(rng_key)
        guide_log_probs, guide_trace = compute_log_probs(
            seed(guide, guide_seed), args, kwargs, param_map)
        model_log_probs, model_trace = compute_log_probs(
            replay(seed(model, model_seed), guide_trace), args, kwargs, param_map)
        if any(site["type"] == "mutable" for tr in (guide_trace, model_trace)
               for site in tr.values()):
            return Trace_ELBO().loss_with_mutable_state(
                rng_key, param_map, model, guide, *args, **kwargs)
        check_model_guide_match(model_trace, guide_trace)
        elbo = sum(model_log_probs.values()) - sum(guide_log_probs.values())
        return {"loss": -elbo, "mutable_state": None}


def _rows(args, kwargs, idx, names):
    """Rows ``idx`` of X (the first argument) and of the keyword arguments ``names``."""
    return ((args[0][idx], *args[1:]),
            {k: (v[idx] if k in names else v) for k, v in kwargs.items()})


def _hashable(obj):
    try:
        hash(obj)
    except TypeError:
        return id(obj)
    return obj


def _check_minibatch(method, batch, row_plate, local_sites):
    if not method.minibatch:
        takers = " or ".join(repr(n) for n in method_names() if get_method(n).minibatch)
        raise ValueError(
            f"`fit_batch_size` needs inference={takers}; got {method.name!r}.")
    if not isinstance(batch, numbers.Integral) or batch < 1:
        raise ValueError(f"`fit_batch_size` must be a positive integer or None; got {batch!r}.")
    if row_plate is None:
        raise ValueError(
            "`fit_batch_size` subsamples the model's data plate, but the outcome site is in no "
            "plate over the rows. Put it in `numpyro.plate(\"obs\", X.shape[0])`."
        )
    if local_sites:
        raise ValueError(
            f"`fit_batch_size` cannot fit models with local latent sites {sorted(local_sites)} "
            "(one latent per row): their variational parameters cover every row. Fit without "
            "minibatches."
        )


class _ScaleRows(Messenger):
    """Scale the log-density of every sample site inside the plate named ``plate``."""

    def __init__(self, fn=None, plate=None, scale=1.0):
        self.plate, self.scale = plate, scale
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and any(
            f.name == self.plate for f in msg.get("cond_indep_stack", ())
        ):
            msg["scale"] = self.scale if msg["scale"] is None else msg["scale"] * self.scale


def _run_svi(
    model, args, kwargs, *, guide, key, num_steps, learning_rate, num_samples, progress_bar,
    loss_name, minibatch=None, cache_key=None,
):
    n = args[0].shape[0]
    full_model, full_args, full_kwargs = ModelRef(model, cache_key), args, kwargs
    if minibatch is not None and minibatch[0] < n:
        plate = minibatch[1]
        model = _ScaleRows(model, plate=plate, scale=n / minibatch[0])
        # the guide's draws and the Laplace check see one minibatch's shapes
        args, kwargs = _rows(args, kwargs, np.arange(minibatch[0]), minibatch[2])
    else:
        minibatch = None
    if cache_key is not None:
        # the guide is part of the compiled program: fits share it only with the same guide
        cache_key = (cache_key, _hashable(guide), learning_rate, minibatch)
    keyed = _Keyed(partial(_make_svi, model, guide, learning_rate), cache_key)
    batch = None if minibatch is None else (minibatch[0], minibatch[2])
    guide_type = type(keyed.make_svi().guide)  # built, not set up: only its class is read
    # what a mean-field guide cannot represent (correlations of the posterior at its
    # median) and where a full-rank guide's spread departs from the posterior's curvature
    laplace_model = full_model if issubclass(
        guide_type, (*_MEAN_FIELD, autoguide.AutoMultivariateNormal)) else None
    start = time.perf_counter()
    losses = []
    bar = _progress(progress_bar, num_steps, "SVI")

    def check(first, chunk_losses, length):
        chunk_losses = np.asarray(chunk_losses)[:length]
        bad = np.flatnonzero(~np.isfinite(chunk_losses))
        if bad.size:
            raise InferenceError(
                f"{loss_name} became "
                f"{chunk_losses[bad[0]]} at step {first + int(bad[0]) + 1} of "
                f"{num_steps}. Lower `learning_rate`, check the priors and the scale of X and y "
                "(standardise inputs), or start the guide nearer the data (e.g. init_to_median "
                "/ init_to_feasible)."
            )
        losses.append(chunk_losses)
        if bar is not None:
            bar.update(chunk_losses.size)
            bar.set_postfix(loss=f"{chunk_losses[-1]:.4g}")

    if minibatch is None:
        chunk = partial(_svi_chunk, keyed)
        chunk_args = (num_steps, args, kwargs)
    else:
        chunk = partial(_svi_minibatch_chunk, keyed, batch)
        chunk_args = (num_steps, full_args, full_kwargs)
    final = partial(_sample_guide, keyed, laplace_model)
    final_args = (num_samples, args, kwargs, full_args, full_kwargs)

    def prepare():
        # The guide's prototype is traced with the outcome observed (kwargs hold y); the
        # initial state's types let the steps compile while it is computed, and the draws
        # while the steps run.
        blank = jax.eval_shape(_initial_state, keyed, batch, key, full_args, full_kwargs)
        _compile_together(
            (chunk.func, (*chunk.args, blank, 1, *chunk_args)),
            (_initial_state, (keyed, batch, key, full_args, full_kwargs)),
        )
        return partial(_compile_together, (
            final.func, (*final.args, key, blank[0] if minibatch else blank, *final_args)))

    with _Interrupts() as interrupts:  # from the compilation to the last chunk
        compile_final = _prepared((keyed, batch, laplace_model, num_samples),
                                  (full_args, full_kwargs), prepare)
        state = _initial_state(keyed, batch, key, full_args, full_kwargs)
        # The first chunk is short and waited for: its time per step sets the length of the
        # others, about _SVI_CHUNK_SECONDS each, so a small model pays few dispatches and a
        # big one still answers Ctrl-C and moves the progress bar. Each later chunk's losses
        # are read while the next one runs, so the device never waits for the host. The
        # steps, and so the fit, are the same for any schedule.
        length = min(_SVI_FIRST_CHUNK, num_steps)
        state, chunk_losses = chunk(state, length, *chunk_args)
        t0 = time.perf_counter()  # the loop is compiled and running
        check(0, chunk_losses, length)
        per_step = max(time.perf_counter() - t0, 1e-9) / length
        planned = int(np.clip(_SVI_CHUNK_SECONDS / per_step, 1, _SVI_MAX_CHUNK))
        # a first fit dispatches up to _SVI_AHEAD_SECONDS of steps at once and compiles
        # the draws' program in this thread while the device runs them
        ahead = (int(_SVI_AHEAD_SECONDS / per_step) if compile_final is not None else 0)
        done, pending = length, []
        while done < num_steps:
            interrupts.check()
            length = min(planned, num_steps - done)
            state, chunk_losses = chunk(state, length, *chunk_args)
            pending.append((done, chunk_losses, length))
            done += length
            if compile_final is not None and (done >= min(num_steps, ahead)):
                compile_final()
                compile_final = None
            while len(pending) > 1 and compile_final is None:
                check(*pending.pop(0))
    draws, laplace = final(key, state[0] if minibatch else state, *final_args)
    for chunk_pending in pending:
        check(*chunk_pending)
    if bar is not None:
        bar.close()
    draws = {k: np.asarray(v)[None] for k, v in draws.items()}
    diagnostics = {"loss": np.concatenate(losses), "fit_seconds": time.perf_counter() - start,
                   "guide": guide_type.__name__,
                   "full_rate_steps": math.floor(num_steps * _TAPER_FROM)}
    if issubclass(guide_type, autoguide.AutoMultivariateNormal):
        diagnostics.update(guide_spread_at(*(laplace or (None, None, None))))
    elif laplace_model is not None:
        diagnostics.update(laplace_correlation_at(*(laplace or (None, None))))
    return InferenceResult(draws=draws, diagnostics=diagnostics)


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
    cache_key=None,
    budget=None,
):
    # the warm-up length and target are part of the compiled program (adaptation schedule)
    ref = _KernelRef(model, target_accept_prob, num_warmup,
                     None if cache_key is None else (cache_key, target_accept_prob, num_warmup))
    start = time.perf_counter()
    # Warm-up and sampling run in compiled loops of at most _NUTS_CHUNK_STEPS iterations,
    # each continuing from the state the last one ended in (the kernel adapts while its
    # iteration count is below num_warmup), so Ctrl-C is honoured between loops. Every loop
    # of a fit runs one compiled program (MCMC.run would lower and compile one per call),
    # and so does the initialisation (NUTS's eager init compiles one per operation).
    states = [
        _nuts_init(ref, k, args, kwargs)
        for k in (jax.random.split(key, num_chains) if num_chains > 1 else [key])
    ]
    # Chains run one after another, or one per device (as MCMC's "parallel") when there are
    # enough devices: each chain's draws are the same either way.
    parallel = 1 < num_chains <= jax.local_device_count()
    if parallel:
        states = [jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)]
    draws, diverging, probe_steps = [], [], 0.0
    # a run that measures its cost runs short loops (one compiled program for the run)
    chunk = _NUTS_CHUNK_STEPS if budget is None else _NUTS_PROBE_STEPS
    bar = _progress(progress_bar, num_warmup + num_samples, "NUTS")
    with _Interrupts() as interrupts:
        for phase, total, done in _nuts_schedule(num_warmup, num_samples, chunk):
            interrupts.check()
            length = min(chunk, total - done)
            if parallel:
                states, outs = _nuts_parallel(ref, length)(states[0], args, kwargs)
                states, outs = [states], jax.device_get(outs)
            else:
                done_chains = [_nuts_chunk(ref, st, length, args, kwargs) for st in states]
                states = [st for st, _ in done_chains]
                outs = jax.device_get([out for _, out in done_chains])
                outs = jax.tree.map(lambda *leaves: np.stack(leaves), *outs)
            if phase == "sample":
                draws.append(outs[0])
                diverging.append(np.asarray(outs[1]))
            elif done < _NUTS_CHUNK_STEPS and budget is not None:
                # the cost measured, not guessed: the first _NUTS_CHUNK_STEPS warm-up
                # iterations' trees, extrapolated; the steps taken so far are a lower
                # bound on theirs, so the run stops as soon as that bound is over budget
                probe_steps += float(np.sum(outs[2])) / num_chains
                ran = done + length
                window = min(_NUTS_CHUNK_STEPS, num_warmup)
                per_iteration = budget[1] * (num_warmup + num_samples) * num_chains
                if per_iteration * probe_steps / window > budget[0]:
                    if bar is not None:
                        bar.close()
                    raise NutsOverBudget(per_iteration * probe_steps / ran,
                                         probe_steps / ran, ran,
                                         per_iteration * probe_steps / window)
            if bar is not None:
                bar.update(length)
                bar.set_postfix(phase=phase)
    if bar is not None:
        bar.close()
    draws = {k: np.concatenate([d[k] for d in draws], axis=1) for k in draws[0]}
    diverging = np.concatenate(diverging, axis=1)
    return InferenceResult(
        draws=draws,
        diagnostics={
            "diverging": diverging,
            "num_divergences": int(diverging.sum()),
            "fit_seconds": time.perf_counter() - start,
        },
    )


def _nuts_schedule(num_warmup, num_samples, chunk=_NUTS_CHUNK_STEPS):
    """``(phase, its length, iterations done)`` at the start of each NUTS loop of at most
    ``chunk`` iterations."""
    for phase, total in (("warmup", num_warmup), ("sample", num_samples)):
        for done in range(0, total, chunk):
            yield phase, total, done


class _KernelRef:
    """The recipe of a NUTS kernel (model, target acceptance, warm-up length) as a static
    jit argument: the loops of one fit share one compiled program, and so do fits of the
    same program with equal keys.

    Every compiled function builds and initialises its own kernel inside its trace
    (:meth:`kernel`): NUTS keeps its adaptation schedule and transforms as attributes set
    by ``init``, and a kernel built inside a trace is dropped with it, so no tracer outlives
    the trace that made it.
    """

    def __init__(self, model, target_accept_prob, num_warmup, key=None):
        self.model, self.target_accept_prob, self.num_warmup = (
            model, target_accept_prob, num_warmup)
        self.key = key if key is not None else id(self)

    def init(self, key, args, kwargs):
        kernel = NUTS(self.model, target_accept_prob=self.target_accept_prob)
        return kernel, kernel.init(key, self.num_warmup, model_args=args, model_kwargs=kwargs)

    def kernel(self, args, kwargs):
        """A fresh kernel set up for ``args``; the throw-away ``init`` only fixes the
        schedule and transforms, and its unused values are compiled away."""
        return self.init(jax.random.PRNGKey(0), args, kwargs)[0]

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _KernelRef) and self.key == other.key


@partial(jax.jit, static_argnums=(0,))
def _nuts_init(ref, key, args, kwargs):
    return ref.init(key, args, kwargs)[1]


def _nuts_steps(kernel, state, length, args, kwargs):
    constrain = kernel.postprocess_fn(args, kwargs)

    def step(state, _):
        state = kernel.sample(state, args, kwargs)
        return state, (constrain(state.z), state.diverging, state.num_steps)

    return jax.lax.scan(step, state, None, length=length)


@partial(jax.jit, static_argnums=(0, 2))
def _nuts_chunk(ref, state, length, args, kwargs):
    return _nuts_steps(ref.kernel(args, kwargs), state, length, args, kwargs)


@lru_cache(maxsize=16)
def _nuts_parallel(ref, length):
    """``_nuts_chunk`` with one chain per device."""
    return jax.pmap(lambda state, args, kwargs: _nuts_steps(ref.kernel(args, kwargs), state,
                                                           length, args, kwargs),
                    in_axes=(0, None, None))


def _deterministic_sites(model, args, kwargs, latent, names, key):
    """Deterministic sites ``names`` of the fitted model for each posterior draw."""
    if not names:
        return {}
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in latent.items()}
    n_chain, n_draw = next(iter(latent.values())).shape[:2]
    total = n_chain * n_draw
    # Draws in chunks, so memory stays bounded for many rows (the whole model runs per draw).
    step = max(1, _DETERMINISTIC_ELEMENTS // max(1, args[0].shape[0]))
    parts = []
    for start in range(0, total, step):
        chunk = {k: v[start : start + step] for k, v in flat.items()}
        parts.append({k: np.asarray(v) for k, v in
                      _deterministic_draws(model, names, key, chunk, args, kwargs).items()})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {k: v.reshape((n_chain, n_draw) + v.shape[1:]) for k, v in out.items()}


@partial(jax.jit, static_argnums=(0, 1))
def _deterministic_draws(model, names, key, draws, args, kwargs):
    """The sites ``names`` for each of ``draws``: one program per model (a
    :class:`~skimpact.inspection.ModelRef`) and shape, which refits of the model share."""
    return Predictive(model, posterior_samples=draws, return_sites=list(names))(
        key, *args, **kwargs)


class _Interrupts:
    """Ctrl-C during a fit's loops, raised between chunks.

    Python raises ``KeyboardInterrupt`` at the next bytecode its main thread runs, and that
    may be inside a garbage-collection callback (JAX registers one), where the exception
    is printed and dropped: the fit would carry on. While the loops run, SIGINT only sets a
    flag, and :meth:`check` raises after the chunk. Outside the main thread, or when SIGINT
    has a handler other than Python's default, nothing changes.
    """

    def __enter__(self):
        self.pending, self._previous = False, None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame):
        self.pending = True

    def check(self):
        if self.pending:
            raise KeyboardInterrupt

    def __exit__(self, exc_type, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if exc_type is None:
            self.check()  # an interrupt during the last chunk


def _progress(enabled, total, desc):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)
