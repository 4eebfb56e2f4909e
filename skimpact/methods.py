"""Inference methods as objects, and the registry of the names ``inference=`` accepts.

Every inference method is an :class:`InferenceMethod`: it runs a fit, names the estimator
settings it reads and its default guide, judges its own convergence, writes its own
``sample_stats`` group and says whether its draws are Markov chains. The estimator, the
automatic choice, the convergence checks and the summaries ask the method, never its name:
the built-in SVI, MAP and NUTS methods (:mod:`skimpact.inference`) are registered here
like any other, and a new method is one subclass and one :func:`register_method` call.

Examples
--------
>>> from skimpact.methods import get_method, method_names
>>> method_names()
('svi', 'map', 'nuts')
>>> get_method("nuts").mcmc, get_method("svi").mcmc
(True, False)
"""

from abc import ABC, abstractmethod

__all__ = ["InferenceMethod", "get_method", "method_names", "register_method",
           "unregister_method"]

#: Names that ``inference=`` gives another meaning, and so no method may take.
RESERVED_NAMES = frozenset({"auto"})

_REGISTRY = {}


class InferenceMethod(ABC):
    """One way of computing the posterior draws of a fit.

    Subclasses set the class attributes and implement :meth:`run`; the checks default to
    none. Instances are stateless: one instance serves every fit.

    Attributes
    ----------
    name : str
        The value of ``inference=`` that selects the method.
    settings : tuple of str
        Estimator parameters that this method reads and the other candidates of
        ``inference="auto"`` do not (``num_samples``, ``progress_bar`` and
        ``random_state`` are read by every method). With ``inference="auto"``, such a
        setting changed from its default chooses the method that reads it.
    default_guide : str or None
        The guide the method always uses (``"AutoDelta"`` for MAP); ``None`` when it uses
        none, or the estimator's ``guide`` when ``"guide"`` is in :attr:`settings`.
    mcmc : bool
        Whether the draws are Markov chains: chains, r_hat and effective sample sizes then
        mean something, and PSIS-LOO estimates the draws' relative efficiency.
    point_estimate : bool
        Whether every draw is the same point, so intervals of effects carry no posterior
        uncertainty.
    minibatch : bool
        Whether the method takes ``fit_batch_size`` (a random minibatch of rows per step).
    """

    name = None
    settings = ()
    default_guide = None
    mcmc = False
    point_estimate = False
    minibatch = False

    @abstractmethod
    def run(self, model, args, kwargs, *, key, settings, guide, minibatch=None,
            cache_key=None, budget=None):
        """Posterior draws of ``model`` given its data.

        Parameters
        ----------
        model : callable
            The NumPyro model as fitted (weights and masks applied).
        args, kwargs : tuple, dict
            The model's arguments, the outcome observed.
        key : jax.random.PRNGKey
        settings : dict
            The estimator's parameters.
        guide : str, AutoGuide class, callable or None
            The guide the fit uses (resolved from ``guide="auto"``).
        minibatch : tuple of (int, str, tuple of str), optional
            ``(rows per step, name of the row plate, keyword arguments cut with the rows)``
            when ``fit_batch_size`` is set.
        cache_key : hashable, optional
            Equal for fits that run the same program, which may share its compilation.
        budget : tuple of (float, float), optional
            ``(seconds, gradient seconds)``: a method that can measure its cost early
            raises :class:`~skimpact.inference.NutsOverBudget` beyond ``seconds``.

        Returns
        -------
        skimpact.inference.InferenceResult
            Draws of the latent sites with leading ``(chain, draw)`` axes.
        """

    def convergence(self, diagnostics, posterior, sample_sites=None):
        """The figures of the method's convergence checks (for :meth:`problems`).

        Parameters
        ----------
        diagnostics : dict
            What :meth:`run` recorded.
        posterior : xarray.Dataset or None
            The posterior draws; given when :attr:`mcmc` is true.
        sample_sites : sequence of str, optional
            The sites the method sampled (not their deterministic copies).

        Returns
        -------
        dict
            Added to the fit's ``diagnostics_``; none by default.
        """
        return {}

    def problems(self, diagnostics):
        """Messages describing each failed convergence check, with what to change.

        Parameters
        ----------
        diagnostics : dict
            The fit's ``diagnostics_`` with :meth:`convergence`'s figures.

        Returns
        -------
        list of str
            Empty when every check passes (by default: there are no checks).
        """
        return []

    def sample_stats(self, diagnostics):
        """The ``sample_stats`` group of the posterior tree.

        Parameters
        ----------
        diagnostics : dict
            What :meth:`run` recorded.

        Returns
        -------
        dict or None
            ``{statistic: array of shape (chain, draw)}``, or ``None`` for no group (the
            default).
        """
        return None

    def __repr__(self):
        return f"<inference method {self.name!r}>"


def register_method(method, *, replace=False):
    """Make ``method`` selectable as ``inference=method.name``.

    Parameters
    ----------
    method : InferenceMethod
        An instance (not the class).
    replace : bool, default=False
        Whether a method already registered under the same name may be replaced.

    Returns
    -------
    InferenceMethod
        ``method``.

    Raises
    ------
    TypeError
        When ``method`` is not an :class:`InferenceMethod` instance.
    ValueError
        When its name is not an identifier-like string, is reserved (``"auto"``), or is
        taken and ``replace`` is false; or when its flags are not booleans or its settings
        not a tuple of str.

    Examples
    --------
    >>> from skimpact.methods import get_method, register_method
    >>> register_method(get_method("map"))
    Traceback (most recent call last):
    ...
    ValueError: An inference method named 'map' is registered already (<inference method 'map'>); pass replace=True to replace it, or choose another name.
    """
    if isinstance(method, type):
        raise TypeError(
            f"register_method takes an instance of an InferenceMethod subclass, not the class "
            f"itself: register_method({method.__name__}())."
        )
    if not isinstance(method, InferenceMethod):
        raise TypeError(
            "register_method takes an instance of a subclass of "
            f"skimpact.methods.InferenceMethod; got {type(method).__name__}."
        )
    name = method.name
    if not (isinstance(name, str) and name.replace("-", "_").isidentifier()):
        raise ValueError(
            f"An inference method's `name` must be a short name of letters, digits, '_' or "
            f"'-' (what inference= takes); {type(method).__name__}.name is {name!r}."
        )
    if name in RESERVED_NAMES:
        raise ValueError(
            f"The inference method name {name!r} is reserved (inference={name!r} chooses "
            "among the methods); choose another name."
        )
    if name in _REGISTRY and not replace:
        raise ValueError(
            f"An inference method named {name!r} is registered already "
            f"({_REGISTRY[name]!r}); pass replace=True to replace it, or choose another name."
        )
    flags = {k: getattr(method, k) for k in ("mcmc", "point_estimate", "minibatch")}
    bad = [k for k, v in flags.items() if not isinstance(v, bool)]
    if bad:
        raise ValueError(
            f"{type(method).__name__}.{bad[0]} must be True or False; got "
            f"{flags[bad[0]]!r}."
        )
    settings = method.settings
    if not (isinstance(settings, tuple) and all(isinstance(s, str) for s in settings)):
        raise ValueError(
            f"{type(method).__name__}.settings must be a tuple of estimator parameter names "
            f"(str); got {settings!r}."
        )
    _REGISTRY[name] = method
    return method


def unregister_method(name):
    """Remove the method registered as ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    InferenceMethod
        The method removed.

    Raises
    ------
    KeyError
        When no method is registered as ``name``.
    """
    get_method(name)
    return _REGISTRY.pop(name)


def get_method(name):
    """The inference method registered as ``name``.

    Parameters
    ----------
    name : str or InferenceMethod
        A registered name; a method is returned as it is.

    Returns
    -------
    InferenceMethod

    Raises
    ------
    KeyError
        Naming the registered methods, when ``name`` is not one of them.

    Examples
    --------
    >>> from skimpact.methods import get_method
    >>> get_method("svi").settings
    ('num_steps', 'learning_rate', 'guide')
    """
    if isinstance(name, InferenceMethod):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(
            f"No inference method is registered as {name!r}; the registered ones are "
            f"{list(method_names())}. A new one is registered with "
            "skimpact.methods.register_method."
        ) from None


def method_names():
    """The names of the registered inference methods, in the order they were registered.

    Returns
    -------
    tuple of str
    """
    return tuple(_REGISTRY)
