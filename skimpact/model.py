"""Model factories, the built-in models and model introspection.

A *model factory* is a function ``factory(**hyperparameters) -> model`` where ``model`` is
a NumPyro model ``model(X, y=None, **inputs)``. :class:`Model` wraps a factory so that its
hyperparameters take part in scikit-learn's ``get_params`` / ``set_params`` / ``clone``.
"""

import copy
import hashlib
import inspect
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.util import potential_energy, unconstrain_fn

__all__ = ["Model", "linear_model", "logistic_model", "builtin_scales", "builtin_offsets",
           "TRACER_ERRORS", "traced_value_error"]

#: JAX's errors for a model that turns a traced value into NumPy or Python.
TRACER_ERRORS = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


def traced_value_error(exc, where=""):
    """The TypeError for a model that calls NumPy (or ``float()``, an ``if``) on a traced
    value, ``where`` naming the last site the model reached ("after its site 'b'")."""
    at = f" ({where})" if where else ""
    return TypeError(
        f"The model converts a traced JAX value to NumPy or Python{at}: a NumPy function "
        "such as np.exp or np.asarray, float(), or an `if` on a sampled value. Inference "
        "compiles the model, so write it with jax.numpy (import jax.numpy as jnp) and "
        f"jnp.where instead of `if`. JAX said: {type(exc).__name__}."
    )


class Model:
    """A NumPyro model factory together with its hyperparameters.

    Parameters
    ----------
    factory : callable
        ``factory(**hyperparameters)`` returns a NumPyro model callable
        ``model(X, y=None, **inputs)``.
    **hyperparameters
        Keyword arguments for ``factory``. Defaults from the factory's signature are exposed
        too, so every hyperparameter can be tuned as ``model__<name>`` in a scikit-learn
        search.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def linear(prior_scale=1.0):
    ...     def model(X, y=None):
    ...         b = numpyro.sample("b", dist.Normal(0, prior_scale).expand([X.shape[1]]))
    ...         with numpyro.plate("obs", X.shape[0]):
    ...             numpyro.sample("y", dist.Normal(X @ b, 1.0), obs=y)
    ...     return model
    >>> Model(linear, prior_scale=0.5)
    Model(linear, prior_scale=0.5)
    >>> Model(linear).get_params()["prior_scale"]
    1.0
    """

    def __init__(self, factory, **hyperparameters):
        if not callable(factory):
            raise TypeError(f"Model factory must be callable, got {factory!r}.")
        self.factory = factory
        self.hyperparameters = {**_signature_defaults(factory), **hyperparameters}
        _check_hyperparameter_names(factory, hyperparameters)

    def get_params(self, deep=True):
        """Return the factory and its hyperparameters (scikit-learn convention)."""
        return {"factory": self.factory, **self.hyperparameters}

    def set_params(self, **params):
        """Set hyperparameters (or ``factory``); returns ``self``."""
        if "factory" in params:
            self.factory = params.pop("factory")
        _check_hyperparameter_names(self.factory, params)
        self.hyperparameters.update(params)
        return self

    def build(self):
        """Call the factory and return the NumPyro model it makes."""
        try:
            model = self.factory(**self.hyperparameters)
        except Exception as exc:
            raise ValueError(
                f"Model factory {_name(self.factory)} failed with hyperparameters "
                f"{self.hyperparameters}: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(model):
            raise TypeError(
                f"Model factory {_name(self.factory)} with hyperparameters "
                f"{self.hyperparameters} returned {type(model).__name__}, not a NumPyro model "
                "callable. A factory returns the model function: `def factory(...): "
                "def model(X, y=None): ...; return model`."
            )
        return model

    def fit_inputs(self, X, y, weights=None, feature_names=None):
        """Keyword inputs of the model computed from the training data at ``fit``.

        The estimator passes them to the model at fit and with every prediction, so they
        stay those of the training data (a model's standardisation, say). The default
        is ``None``: a factory's model takes none; subclasses such as
        :class:`skimpact.effect_model.EffectModel` override it.

        Parameters
        ----------
        X : ndarray of shape (n, p)
            Training features (float64).
        y : ndarray of shape (n,)
            Training outcome as the model observes it.
        weights : ndarray of shape (n,), optional
            Frequency weights (zero where y is unobserved).
        feature_names : array-like of str, optional
            Column names of X, when it was a DataFrame.

        Returns
        -------
        dict or None

        Examples
        --------
        >>> import numpy as np
        >>> Model(linear_model).fit_inputs(np.zeros((3, 1)), np.zeros(3)) is None
        True
        """
        return None

    def snapshot(self):
        """An independent copy whose hyperparameters later ``set_params`` calls on this
        one do not change (what a fitted estimator keeps)."""
        new = object.__new__(type(self))
        new.__dict__ = {**self.__dict__,
                        "hyperparameters": copy.deepcopy(self.hyperparameters)}
        return new

    def cache_key(self):
        """A hashable key equal for models that build the same NumPyro program."""
        return (self.factory, tuple((k, _freeze(v)) for k, v in sorted(self.hyperparameters.items())))

    def __eq__(self, other):
        return (
            type(other) is type(self)
            and other.factory is self.factory
            and other.hyperparameters == self.hyperparameters
        )

    __hash__ = None

    def __getstate__(self):
        _check_picklable(self._callable_to_pickle(), "Model factory")
        return self.__dict__

    def _callable_to_pickle(self):
        return self.factory

    def __repr__(self):
        args = [_name(self.factory)]
        args += [f"{k}={v!r}" for k, v in self.hyperparameters.items()]
        return f"Model({', '.join(args)})"


def _freeze(value):
    """A hashable stand-in for a hyperparameter value, equal exactly when the values are."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _freeze(v)) for k, v in sorted(value.items())))
    if isinstance(value, (np.ndarray, jnp.ndarray)):
        arr = np.asarray(value)
        return ("array", arr.shape, arr.dtype.str, hashlib.sha1(arr.tobytes()).hexdigest())
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))  # unknown mutable value: shared only by the same object
    return value


def _name(fn):
    return getattr(fn, "__qualname__", None) or repr(fn)


def _check_picklable(fn, what):
    """Raise a PicklingError that says how to fix it if ``fn`` is a lambda or a closure,
    which ``pickle`` (and so ``joblib.dump``) cannot save by reference."""
    qualname = getattr(fn, "__qualname__", "") or ""
    if "<lambda>" in qualname:
        kind = "is a lambda"
    elif "<locals>" in qualname:
        kind = "is defined inside another function (a closure)"
    else:
        return
    import pickle

    raise pickle.PicklingError(
        f"{what} {qualname!r} {kind}, so a fitted estimator that uses it cannot be pickled "
        "or saved with joblib. Define it with `def` at the top level of an importable "
        "module (pass data-dependent values as hyperparameters: Model(factory, "
        "prior_scale=...)) and load the estimator where that module can be imported."
    )


def _signature_defaults(factory):
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    return {
        name: p.default
        for name, p in sig.parameters.items()
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _check_hyperparameter_names(factory, names):
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(names) - set(params))
    if unknown:
        raise ValueError(
            f"Unknown hyperparameter(s) {unknown} for model factory {_name(factory)}; "
            f"it accepts {sorted(params)}."
        )


class _FixedModel(Model):
    """A bare NumPyro model given as ``model=``: a factory with no hyperparameters."""

    def __init__(self, model):
        self.model = model
        super().__init__(self._build_fixed)

    def _build_fixed(self):
        return self.model

    def _callable_to_pickle(self):
        return self.model

    def get_params(self, deep=True):
        return {}

    def cache_key(self):
        return (self.model,)

    def __eq__(self, other):
        return type(other) is type(self) and other.model is self.model

    def __repr__(self):
        return _name(self.model)


def as_model(model):
    """Turn the estimator's ``model`` parameter into a :class:`Model` (``None`` excluded)."""
    if isinstance(model, Model):
        return model
    if callable(model):
        return _FixedModel(model)
    raise TypeError(
        f"`model` must be a skimpact.Model, a NumPyro model callable or None; got {model!r}."
    )


# --------------------------------------------------------------------------- built-ins
# The data's location and scale come in as keyword inputs (not closure constants), so one
# compiled program serves every fold of a cross-validation.
def linear_model(prior_scale=2.5):
    """Bayesian linear regression with weakly informative priors on the data's scale.

    The model works on standardised features and outcome, so its latent variables are of
    order one whatever the units of ``X`` and ``y``: intercept and coefficients per feature
    standard deviation ~ Normal(0, prior_scale), noise ~ Exponential(1), all in units of
    ``y``'s standard deviation. Deterministic sites ``intercept``, ``coef`` and ``sigma``
    report the parameters in the data's units. The estimator passes X and y centred on
    their training means (subtracted in float64, so no offset swallows the signal), the
    data's ``x_loc``, ``x_scale`` and ``y_scale`` as inputs, and adds the mean of y back to
    the outcome and ``intercept`` in float64 (see :func:`builtin_offsets`).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, Model
    >>> from skimpact.model import linear_model
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2)); y = 5 + X @ [1.0, -2.0] + rng.normal(0, 0.5, 100)
    >>> est = ImpactRegressor(Model(linear_model, prior_scale=1.0), inference="svi",
    ...                       num_steps=1000, num_samples=100, random_state=0).fit(X, y)
    >>> post = est.posterior_["posterior"]
    >>> post["coef"].mean(("chain", "draw")).values.round(1)
    array([ 0.9, -1.9], dtype=float32)
    >>> round(float(post["intercept"].mean()), 1)
    4.9
    """

    def model(X, y=None, *, x_loc=0.0, x_scale=1.0, y_scale=1.0):
        n, p = X.shape
        alpha = numpyro.sample("alpha", dist.Normal(0.0, prior_scale))
        with numpyro.plate("feature", p):
            beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale))
            coef = numpyro.deterministic("coef", beta * y_scale / x_scale)
        noise = numpyro.sample("noise", dist.Exponential(1.0))
        numpyro.deterministic("intercept", y_scale * alpha - jnp.sum(coef * x_loc))
        sigma = numpyro.deterministic("sigma", y_scale * noise)
        mu = y_scale * (alpha + (X / x_scale) @ beta)
        with numpyro.plate("obs", n):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    return model


def logistic_model(n_classes=2, prior_scale=2.5):
    """Bayesian logistic (``n_classes == 2``) or multinomial logistic regression.

    Coefficients per feature standard deviation ~ Normal(0, prior_scale); the outcome site
    ``y`` takes labels encoded as ``0 .. n_classes - 1``. The estimator passes X centred on
    the training means and the features' ``x_scale`` as an input.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactClassifier, Model
    >>> from skimpact.model import logistic_model
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2)); y = (X[:, 0] > 0).astype(int)
    >>> clf = ImpactClassifier(Model(logistic_model, prior_scale=1.0), inference="svi",
    ...                        num_steps=1000, num_samples=100, random_state=0).fit(X, y)
    >>> dict(clf.posterior_["posterior"]["beta"].sizes)
    {'chain': 1, 'draw': 100, 'feature': 2, 'class': 1}
    """

    def model(X, y=None, *, x_scale=1.0):
        n, p = X.shape
        k = 1 if n_classes == 2 else n_classes
        with numpyro.plate("class", k, dim=-1):
            alpha = numpyro.sample("alpha", dist.Normal(0.0, prior_scale))
            with numpyro.plate("feature", p, dim=-2):
                beta = numpyro.sample("beta", dist.Normal(0.0, prior_scale))
        logits = alpha + (X / x_scale) @ beta
        with numpyro.plate("obs", n):
            if n_classes == 2:
                numpyro.sample("y", dist.Bernoulli(logits=logits[:, 0]), obs=y)
            else:
                numpyro.sample("y", dist.Categorical(logits=logits), obs=y)

    return model


def builtin_scales(factory, X, y=None, weights=None):
    """The data scales a built-in model takes as inputs, or ``None`` for other factories.

    Parameters
    ----------
    factory : callable
        The model factory.
    X : ndarray of shape (n, p)
        Training features (float64, not centred).
    y : ndarray of shape (n,), optional
        Training outcome (the linear model's location and scale).
    weights : ndarray of shape (n,), optional
        Frequency weights (sample weights times the observed mask): a row of weight 2
        gives the scales of that row repeated.

    Returns
    -------
    dict or None

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.model import builtin_scales, linear_model
    >>> X = np.array([[0.0, 10.0], [2.0, 30.0]]); y = np.array([1.0, 3.0])
    >>> {k: np.asarray(v).tolist() for k, v in builtin_scales(linear_model, X, y).items()}
    {'x_loc': [1.0, 20.0], 'x_scale': [1.0, 10.0], 'y_scale': 1.0}
    """
    if factory not in (linear_model, logistic_model):
        return None
    x_loc, x_scale = _loc_scale(X, weights)
    if factory is logistic_model:
        return {"x_scale": jnp.asarray(x_scale, dtype=jnp.float32)}
    _, y_scale = _loc_scale(np.asarray(y, dtype=np.float64)[:, None], weights)
    return {
        "x_loc": jnp.asarray(x_loc, dtype=jnp.float32),
        "x_scale": jnp.asarray(x_scale, dtype=jnp.float32),
        "y_scale": jnp.asarray(y_scale[0], dtype=jnp.float32),
    }


def builtin_offsets(factory, y, weights=None):
    """Offsets a built-in model's sites leave to be added after the model runs.

    The built-in linear model observes y centred on its (weighted) training mean, taken in
    float64, so a large offset (y around 1e9, say) cannot swallow the signal in float32.
    The mean is added back to the outcome and to ``intercept``.

    Parameters
    ----------
    factory : callable
        The model factory.
    y : ndarray of shape (n,)
        Training outcome (float64; NaN where unobserved).
    weights : ndarray of shape (n,), optional
        Frequency weights, as for :func:`builtin_scales` (zero where y is unobserved).

    Returns
    -------
    dict of str to float
        ``{site: offset}``; empty for every factory but :func:`linear_model`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.model import builtin_offsets, linear_model, logistic_model
    >>> builtin_offsets(linear_model, np.array([1e9, 1e9 + 2.0]))
    {'y': 1000000001.0, 'intercept': 1000000001.0}
    >>> builtin_offsets(logistic_model, np.array([0, 1]))
    {}
    """
    if factory is not linear_model:
        return {}
    y = np.asarray(y, dtype=np.float64)
    y_loc, _ = _loc_scale(np.where(np.isnan(y), 0.0, y)[:, None], weights)
    return {"y": float(y_loc[0]), "intercept": float(y_loc[0])}


def _loc_scale(X, weights=None):
    """Weighted column means and standard deviations (1 where a column is constant)."""
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    loc = (w @ X) / w.sum()
    scale = np.sqrt((w @ (X - loc) ** 2) / w.sum())
    return loc, np.where(scale > 0, scale, 1.0)


# ------------------------------------------------------------------------ introspection
@dataclass(frozen=True)
class ModelInfo:
    """What skimpact learned about a model by tracing it once on the training data."""

    outcome_site: str
    row_dim: str
    latent_sites: tuple
    local_sites: dict = field(default_factory=dict)  # latent name -> row axis (negative)
    deterministic_sites: tuple = ()
    observed_sites: tuple = ()
    site_plates: dict = field(default_factory=dict)  # name -> {plate: axis from the end}
    site_shapes: dict = field(default_factory=dict)
    site_row_axis: dict = field(default_factory=dict)  # name -> row axis (negative) or None
    plate_sizes: dict = field(default_factory=dict)  # plate name -> size at fit
    outcome_stats: tuple = ("sample",)  # what the outcome distribution gives in closed form
    site_supports: dict = field(default_factory=dict)  # sample site -> its support constraint

    @property
    def sites(self):
        return (
            self.latent_sites + self.deterministic_sites + self.observed_sites
        )


def trace_model(model, args, kwargs, seed=0):
    """Trace ``model`` once with a fixed seed.

    The trace runs as one compiled program, its sites' values and distributions (pytrees)
    returned from it: eagerly, every operation of the model would compile a program of its
    own. A model that turns traced values into NumPy or Python (``np.exp``, an ``if`` on a
    sampled value) is refused here, naming the last site it reached, since inference
    compiles the model too; one that cannot run compiled otherwise (a distribution that is
    not a pytree) is traced eagerly. A model that fails on the data gets an error naming
    the last site it reached.
    """
    try:
        try:
            layout, arrays = _compiled_trace(model, args, kwargs, seed)
        except _TracedValueError:
            raise
        except Exception:  # any other failure: the eager trace raises the error to act on
            return _eager_trace(model, args, kwargs, seed)
    except _TracedValueError as exc:  # inference compiles the model: it would fail there
        raise traced_value_error(exc.__cause__, exc.where) from exc.__cause__
    tr = {}
    for name, kind, observed, frames in layout.sites:
        tr[name] = {"type": kind, "name": name, "is_observed": observed,
                    "cond_indep_stack": list(frames)}
        if name in arrays:
            tr[name]["value"], fn = arrays[name]
            if fn is not None:
                tr[name]["fn"] = fn.rebuild()
    return tr


@dataclass(frozen=True)
class _TraceLayout:
    """The static part of a trace (site names, types, observed flags, plates), returned
    from the compiled trace as a pytree node without leaves, so a cached program gives it
    back too."""

    sites: tuple


jax.tree_util.register_static(_TraceLayout)


@jax.tree_util.register_pytree_node_class
class _Fields:
    """A distribution as a pytree whose leaves come in the order of its field names.

    A NumPyro distribution flattens its fields in the order of a Python set of their
    names, which follows the process's string hash seed; a program returning it built a
    different program in each new process, which missed JAX's compilation cache.
    """

    def __init__(self, cls, aux, fields):
        self.cls, self.aux, self.fields = cls, aux, fields

    @classmethod
    def of(cls, value):
        if not isinstance(value, dist.Distribution):
            return value
        data, aux = value.tree_flatten()
        names = type(value).gather_pytree_data_fields()
        return cls(type(value), aux, {n: cls.of(v) for n, v in zip(names, data)})

    def rebuild(self):
        """The distribution."""
        return self.cls.tree_unflatten(self.aux, tuple(
            v.rebuild() if isinstance(v, _Fields) else v
            for v in (self.fields[n] for n in self.cls.gather_pytree_data_fields())))

    def tree_flatten(self):
        return (self.fields,), (self.cls, self.aux)

    @classmethod
    def tree_unflatten(cls, static, children):
        return cls(*static, *children)


@partial(jax.jit, static_argnums=(0, 3))
def _compiled_trace(model, args, kwargs, seed):
    """The trace's layout and ``{site: (value, distribution fields or None)}``; ``model``
    is static, so fits of one program (:class:`ModelRef`) share the compiled trace."""
    tr = _eager_trace(model, args, kwargs, seed)
    layout = _TraceLayout(tuple(
        (k, s["type"], bool(s.get("is_observed", False)), tuple(s.get("cond_indep_stack", ())))
        for k, s in tr.items()))
    return layout, {k: (s["value"], _Fields.of(s["fn"]) if s["type"] == "sample" else None)
                    for k, s in tr.items() if s["type"] in ("sample", "deterministic")}


class _TracedValueError(Exception):
    """A model turned a traced value into NumPy or Python; ``where`` names its last site."""

    def __init__(self, where):
        super().__init__(where)
        self.where = where


def _eager_trace(model, args, kwargs, seed):
    with handlers.trace() as tr, handlers.seed(rng_seed=seed):
        try:
            model(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            sites = [k for k, s in tr.items() if s["type"] in ("sample", "deterministic")]
            where = f"after its site {sites[-1]!r}" if sites else "before its first site"
            if isinstance(exc, TRACER_ERRORS):
                raise _TracedValueError(where) from exc
            hint = _float_index_hint(model, args, kwargs, seed, exc)
            raise type(exc)(
                f"The model failed on the training data {where}: {exc}{hint}"
            ) from exc
    return tr


def _is_float_index_error(exc):
    return isinstance(exc, TypeError) and "Indexer must have integer" in str(exc)


def _float_index_hint(model, args, kwargs, seed, exc):
    """Which float keyword inputs index an array (JAX names none): each is the culprit if
    the model still fails so with every other float input cast to integers."""
    if not _is_float_index_error(exc):
        return ""
    floats = [k for k, v in kwargs.items()
              if v is not None and jnp.issubdtype(jnp.result_type(v), jnp.floating)]

    def fails(keep):
        trial = {k: (jnp.asarray(v).astype(jnp.int32) if k in floats and k != keep else v)
                 for k, v in kwargs.items()}
        try:
            with handlers.block(), handlers.seed(rng_seed=seed):
                model(*args, **trial)
        except Exception as err:  # noqa: BLE001 - only this error counts
            return _is_float_index_error(err)
        return False

    culprits = [k for k in floats if fails(k)]
    if not culprits:
        return ""
    return (f". Input(s) {culprits} index an array of the model, so they must hold integers "
            "(codes such as 0, 1, 2), but they hold floats; give integer codes (e.g. "
            "np.int64).")


class ModelRef:
    """A model as a static argument of the compiled functions below, equal to another with
    an equal ``key`` (fits of the same program), so those fits share compiled programs;
    without a key, equal only to itself."""

    def __init__(self, model, key=None):
        self.model, self.key = model, key if key is not None else id(self)

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, ModelRef) and self.key == other.key


def unconstrained_point(model, args, kwargs, values=None, seed=0):
    """The model's latent sites in unconstrained space: ``values`` (constrained) where
    given, prior draws (seeded by ``seed``, an int or a PRNG key) for the others.

    Traceable, so it runs inside one compiled program (:func:`start_point`,
    :func:`potential_hessian`) rather than NumPyro's eager initialisation, which compiles
    one small program per operation.
    """
    seeded = handlers.seed(model, rng_seed=seed)
    tr = handlers.trace(handlers.substitute(seeded, data=values or {})).get_trace(
        *args, **kwargs)
    latent = {k: s["value"] for k, s in tr.items()
              if s["type"] == "sample" and not s["is_observed"]}
    return unconstrain_fn(seeded, args, kwargs, latent)


@partial(jax.jit, static_argnums=0)
def start_point(model, args, kwargs, seed):
    """A prior draw in unconstrained space (:func:`unconstrained_point` compiled; ``model``
    static: one program per model)."""
    return unconstrained_point(model, args, kwargs, seed=seed)


@partial(jax.jit, static_argnums=0)
def potential_grad(model, z, args, kwargs):
    """Gradient of the potential energy (negative log-density) at unconstrained ``z``."""
    return jax.grad(lambda z: potential_energy(model, args, kwargs, z))(z)


@partial(jax.jit, static_argnums=0)
def potential_hessian(model, args, kwargs, values):
    """The point ``z`` (:func:`unconstrained_point` of ``values``) and the Hessian of the
    potential energy there, flattened in the order of :func:`jax.flatten_util.ravel_pytree`
    (sites sorted by name)."""
    z = unconstrained_point(model, args, kwargs, values)
    flat, unravel = ravel_pytree(z)
    return z, jax.hessian(lambda f: potential_energy(model, args, kwargs, unravel(f)))(flat)


def inspect_model(model, X, outcome, y, inputs, row_inputs=()):
    """Trace ``model(X, outcome=y, **inputs)`` and find the outcome site, row plate and sites.

    The outcome site is the observed sample site whose value is ``y``. The row plate is the
    plate of that site whose size is the number of rows; sample sites inside it are local
    latents (one value per row). Dims of every site come from its plates (and, for sample
    sites, its event dims), as ArviZ's NumPyro converter names them. A deterministic site
    computed outside the row plate but from per-row values (``numpyro.deterministic("mu",
    X @ b)``) has its row axis found by tracing the model on one row and on two: the axis
    that grows holds rows. ``row_inputs`` names the keyword inputs with one entry per row.
    """
    n = X.shape[0]
    tr = trace_model(model, (X,), {outcome: y, **inputs})
    samples = {k: s for k, s in tr.items() if s["type"] == "sample"}
    observed = [k for k, s in samples.items() if s["is_observed"]]
    y_arr = np.asarray(y)
    outcome_site = None
    for k in observed:
        v = np.asarray(tr[k]["value"])
        if v.shape == y_arr.shape and np.array_equal(v, y_arr, equal_nan=True):
            outcome_site = k
            break
    if outcome_site is None:
        listing = ", ".join(
            f"{k} ({s['type']}{', observed' if s.get('is_observed') else ''})"
            for k, s in tr.items()
            if s["type"] in ("sample", "deterministic")
        )
        raise ValueError(
            f"No sample site of the model observes the outcome passed as `{outcome}=`. "
            f"The model's sites are: {listing or 'none'}. Give the outcome site "
            f"`obs={outcome}`, or set the estimator's `outcome=` to the name of the model "
            "argument that receives y."
        )
    row_dim, row_plate = "obs", None
    for frame in tr[outcome_site]["cond_indep_stack"]:
        if frame.size == n:
            row_dim, row_plate = frame.name, frame
            break
    latent = tuple(k for k, s in samples.items() if not s["is_observed"])
    _refuse_discrete_latents({k: samples[k]["fn"] for k in latent})
    site_plates = {}  # site -> {plate name: axis of the site's value, counted from the end}
    for k, site in tr.items():
        if site["type"] not in ("sample", "deterministic"):
            continue
        event_dim = len(site["fn"].event_shape) if site["type"] == "sample" else 0
        site_plates[k] = {f.name: f.dim - event_dim for f in site.get("cond_indep_stack", ())}
    shapes = {
        k: tuple(jnp.shape(s["value"]))
        for k, s in tr.items()
        if s["type"] in ("sample", "deterministic")
    }
    row_axis = {
        k: (plates.get(row_dim) if row_plate is not None else None)
        for k, plates in site_plates.items()
    }
    outside = [k for k in row_axis if row_axis[k] is None and tr[k]["type"] == "deterministic"]
    # latents outside the row plate with an axis as long as the rows: do they follow them?
    global_latent = [k for k in latent if row_axis[k] is None and n in shapes[k]]
    if (row_plate is not None and outside) or global_latent:
        grown = _growing_axes(model, X, outcome, y, inputs, row_inputs, outside + global_latent)
        _refuse_row_sized_globals(
            {k: shapes[k] for k in global_latent if grown.get(k) is not None}, row_dim, n)
        if row_plate is not None:
            row_axis.update({k: grown.get(k) for k in outside})
    local = {k: row_axis[k] for k in latent if row_axis[k] is not None}
    return ModelInfo(
        outcome_site=outcome_site,
        row_dim=row_dim,
        latent_sites=latent,
        local_sites=local,
        deterministic_sites=tuple(k for k, s in tr.items() if s["type"] == "deterministic"),
        observed_sites=tuple(observed),
        site_plates=site_plates,
        site_shapes=shapes,
        site_row_axis=row_axis,
        outcome_stats=_outcome_stats(tr[outcome_site]["fn"]),
        site_supports={k: s["fn"].support for k, s in samples.items()},
        plate_sizes={
            f.name: f.size
            for s in tr.values()
            for f in s.get("cond_indep_stack", ())
        },
    )


def _refuse_row_sized_globals(shapes, row_dim, n):
    """Raise, naming the sites, if a latent site outside the row plate changes shape with
    the number of rows: fitted draws of 200 values met 7 rows in predict ("incompatible
    shapes for broadcasting"), and minibatches disagreed with the guide."""
    if not shapes:
        return
    shown = ", ".join(f"{k!r} (shape {s} for {n} rows)" for k, s in shapes.items())
    raise ValueError(
        f"Latent site(s) {shown} change shape with the number of rows of X, outside the row "
        f"plate {row_dim!r}. A latent site's shape must not depend on the number of rows: its "
        "fitted draws could not predict other rows. Put per-row latents inside the row plate "
        f"(with numpyro.plate({row_dim!r}, X.shape[0]): numpyro.sample(...)), or give the "
        "site a shape that does not depend on X.shape[0]."
    )


def _refuse_discrete_latents(fns):
    """Raise, naming the sites, if a latent (unobserved) sample site is discrete: NumPyro
    would say "install funsor" (SVI) or "grad requires real-valued inputs" (NUTS)."""
    discrete = {k: type(fn).__name__ for k, fn in fns.items() if fn.support.is_discrete}
    if not discrete:
        return
    shown = ", ".join(f"{k!r} ({d})" for k, d in discrete.items())
    raise ValueError(
        f"The model samples discrete latent site(s) {shown}. skimpact's inference (SVI "
        "guides, NUTS and MAP gradients) needs every unobserved site continuous. Marginalise "
        "the discrete site by hand (sum its values out of the likelihood, e.g. with "
        "dist.MixtureSameFamily or jax.nn.logsumexp and numpyro.factor), make it "
        "continuous (e.g. a Beta probability in place of a Bernoulli draw), or observe it. "
        "Enumerating it (infer={'enumerate': 'parallel'} with funsor installed) needs "
        "NumPyro's MCMC run directly: skimpact does not enumerate discrete sites."
    )


_CLASS_DISTRIBUTIONS = (
    dist.BernoulliProbs, dist.BernoulliLogits, dist.CategoricalProbs, dist.CategoricalLogits,
)


def _outcome_stats(fn):
    """``sample`` and ``log_prob`` always; ``mean`` where ``fn`` has a finite one (not a
    Cauchy's), ``undefined_mean`` where its mean is NaN or infinite, and ``probs`` for
    class distributions."""
    stats = ["sample", "log_prob"]
    try:
        stats.append("mean" if np.isfinite(np.asarray(fn.mean)).all() else "undefined_mean")
    except NotImplementedError:
        pass
    if isinstance(fn, _CLASS_DISTRIBUTIONS):
        stats.append("probs")
    return tuple(stats)


def _growing_axes(model, X, outcome, y, inputs, row_inputs, names):
    """The axis (negative) of each site in ``names`` that grows from one row to two."""

    def shapes(rows):
        kwargs = {k: (np.asarray(v)[rows] if k in row_inputs else v) for k, v in inputs.items()}
        kwargs[outcome] = np.asarray(y)[rows]

        def run():
            tr = trace_model(model, (np.asarray(X)[rows],), kwargs)
            return {k: tr[k]["value"] for k in names}

        return jax.eval_shape(run)

    try:
        one, two = shapes(np.zeros(1, int)), shapes(np.zeros(2, int))
    except Exception:  # a model that cannot run on one row: its sites keep no row axis
        return {}
    axes = {}
    for k in names:
        diff = [i for i, (a, b) in enumerate(zip(one[k].shape, two[k].shape)) if a != b]
        axes[k] = diff[0] - len(one[k].shape) if diff else None
    return axes
