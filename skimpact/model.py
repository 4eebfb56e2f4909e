"""Model factories: the model as a specification with tunable hyperparameters.

A *model factory* is a function ``factory(**hyperparameters) -> model`` where ``model`` is
a NumPyro model ``model(X, y=None, **inputs)``. :class:`Model` wraps a factory so that its
hyperparameters take part in scikit-learn's ``get_params`` / ``set_params`` / ``clone``.
"""

import copy
import hashlib
import inspect

import jax.numpy as jnp
import numpy as np

__all__ = ["FIT_SETTINGS", "Model", "as_model"]

#: The estimator settings a model may declare with :meth:`Model.fit_settings`.
FIT_SETTINGS = ("inference", "guide", "learning_rate", "num_steps", "num_warmup",
                "num_samples", "num_chains", "target_accept_prob")

#: JAX's errors for a model that turns a traced value into NumPy or Python.


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
        >>> from skimpact.builtin_models import linear_model
        >>> Model(linear_model).fit_inputs(np.zeros((3, 1)), np.zeros(3)) is None
        True
        """
        return None

    def fit_settings(self):
        """Inference settings the model is fitted with best, used in place of the
        estimator's defaults.

        A model whose author has measured how it fits (a posterior too correlated for
        NUTS within any sensible budget, say, and the SVI steps its accuracy was measured
        with) declares those settings here. The estimator uses each of them where its own
        setting is at its default; settings the user sets win. Which ones applied is said
        in ``diagnostics_["inference_choice"]``. The default is ``{}``: the estimator's
        defaults (``inference="auto"``) hold; subclasses such as
        :class:`skimpact.effect_model.EffectModel` override it.

        Returns
        -------
        dict
            Keys among :data:`FIT_SETTINGS`, values as the estimator's parameters of the
            same names take them.

        Examples
        --------
        >>> from skimpact.builtin_models import linear_model
        >>> Model(linear_model).fit_settings()
        {}
        """
        return {}

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
