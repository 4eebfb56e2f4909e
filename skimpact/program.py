"""The fitted program: everything about the model that predictions need, frozen at fit.

A :class:`Program` holds the NumPyro model as fitted (the factory's model with
``handlers.reparam`` applied), the name of the argument that receives the outcome, what
tracing the model found (:class:`~skimpact.inspection.ModelInfo`), the key under which compiled
programs are shared, and the data scales the built-in models take as inputs. The estimator
builds it once in ``fit``; changing the estimator's parameters afterwards changes nothing
until the next ``fit``.

Numeric hyperparameters that the model uses only as values (a prior scale, a location
computed from the data) are *arguments* of the compiled programs: the model is built from
the factory inside each trace, from values passed among its keyword inputs, so fits that
differ only in those values share every compiled program. Those used as shapes or in
Python control flow are found by tracing the model with them as abstract values (which
fails for them) and stay constants of the programs, part of their cache key.
"""

import inspect
from collections import OrderedDict
from dataclasses import dataclass, field
from numbers import Integral, Real

import jax
import numpy as np
from jax.experimental import checkify
from numpyro import handlers
from numpyro.primitives import Messenger

from ._compilation_cache import PROGRAMS
from .inspection import ModelRef, inspect_model, trace_model

__all__ = ["Program", "build_program", "training_model", "HYPERPARAMETER_PREFIX"]

#: Prefix of the keyword inputs that carry hyperparameters passed as program arguments.
HYPERPARAMETER_PREFIX = "__hyperparameter__"
#: How many models' static / argument split of their hyperparameters is remembered.
_MAX_SPLITS = 256


@dataclass(frozen=True)
class Program:
    """A fitted model, ready to run.

    Parameters
    ----------
    model : callable
        The NumPyro model with ``reparam`` applied.
    outcome : str
        The model's keyword argument that receives the outcome.
    info : skimpact.inspection.ModelInfo
        Sites, plates and row axes found by tracing the model on the training data.
    cache_key : hashable
        Equal for programs that compile to the same code (same factory, hyperparameters,
        reparameterisation and outcome), so clones share compilations.
    scales : dict
        Keyword inputs fixed at fit (the data's location and scale for the built-in
        models); a call's own inputs come after them.
    spec : skimpact.Model, optional
        A copy of the factory and hyperparameters the model was built from: a pickled
        program stores these and builds its model again when loaded.
    reparam : dict, optional
        The reparameterisation applied to the built model.
    offsets : dict, optional
        ``{site: offset}`` added (in float64) to a site's values after the model runs: the
        model observes the outcome less its offset (see
        :func:`skimpact.builtin_models.builtin_offsets`).
    grounding : skimpact.grounding.Grounding, optional
        The bias term of a fit grounded on experiments: predictions under a changed
        treatment are corrected by it.
    arguments : tuple of str
        The hyperparameters passed to the compiled programs as arguments (among
        ``scales``, named with :data:`HYPERPARAMETER_PREFIX`) rather than compiled in.
    """

    model: object
    outcome: str
    info: object
    cache_key: object
    scales: dict = field(default_factory=dict)
    spec: object = None
    reparam: dict = None
    offsets: dict = field(default_factory=dict)
    grounding: object = None
    arguments: tuple = ()

    def __getstate__(self):
        # the built model is usually a closure: pickle the factory and rebuild on load
        state = dict(self.__dict__)
        if state["spec"] is not None:
            state["model"] = None
        return state

    def __setstate__(self, state):
        if state["model"] is None:
            spec, arguments = state["spec"], state.get("arguments", ())
            base = _WithHyperparameters(spec, arguments) if arguments else spec.build()
            state["model"] = _reparameterised(base, state["reparam"])
        state.setdefault("arguments", ())
        self.__dict__.update(state)

    def offsets_for(self, sites, outcome_stat="sample"):
        """``{site: offset}`` for those of ``sites`` that have one; the outcome's only where
        its values are on the outcome's scale (samples, conditional means)."""
        return {
            site: offset for site, offset in self.offsets.items()
            if site in sites and (site != self.info.outcome_site
                                  or outcome_stat in ("sample", "mean"))
        }

    def add_offsets(self, values, outcome_stat="sample"):
        """``values`` (``{site: array}``) with the sites' offsets added in float64."""
        offsets = self.offsets_for(values, outcome_stat)
        return {k: (np.asarray(v, dtype=np.float64) + offsets[k] if k in offsets else v)
                for k, v in values.items()}

    def inputs(self, inputs):
        """The model's keyword inputs for a call: the fixed scales, then ``inputs``."""
        return {**self.scales, **inputs}

    def check_indices(self, X, inputs, row_inputs=()):
        """Raise if integer inputs index an array of the model out of its bounds.

        JAX clamps an out-of-bounds index without a word (group 7 of 3 groups reads group
        2), so a group code unseen at fit would silently take another group's values. The
        model runs once, compiled with :mod:`jax.experimental.checkify`'s index checks, on
        the rows holding the smallest and largest value of each integer per-row input
        (where an index can leave its bounds); models without integer inputs are not run.
        Negative codes in an input that indexes an array are refused too: they wrap around.

        Parameters
        ----------
        X : ndarray
            The model's first argument.
        inputs : dict
            The model's keyword inputs for the call (the scales are added here).
        row_inputs : tuple of str
            The inputs with one entry per row.

        Raises
        ------
        IndexError
            Naming the integer inputs, their ranges and what the model indexes.
        """
        kwargs = self.inputs(inputs)
        self._check_float_indices(X, kwargs, row_inputs)
        integer = [k for k, v in kwargs.items()
                   if not k.startswith(HYPERPARAMETER_PREFIX) and np.asarray(v).dtype.kind in "iu"]
        if not integer:
            return
        per_row = [k for k in integer if k in row_inputs]
        rows = np.unique(np.concatenate(
            [[np.argmin(kwargs[k]), np.argmax(kwargs[k])] for k in per_row]
        ).astype(np.int64)) if per_row else np.zeros(1, np.int64)
        rows = np.pad(rows, (0, 2 * max(len(per_row), 1) - rows.size), mode="edge")
        sub = {k: (np.asarray(v)[rows] if k in row_inputs else v) for k, v in kwargs.items()}
        key = (self.cache_key, tuple(sorted(sub)), tuple(sorted(row_inputs)))
        check = _INDEX_CHECKS.get(key)
        if check is None:
            check = _INDEX_CHECKS.setdefault(key, _index_checker(self.model))
        X_rows = np.asarray(X)[rows]
        message = check(X_rows, sub)[0].get()
        for k in integer:
            if message or np.min(kwargs[k]) >= 0:
                continue
            # a negative code wraps around (-1 reads the last group); refuse it where the
            # input indexes an array, which a huge code pushed out of bounds reveals
            huge = {**sub, k: np.full_like(np.asarray(sub[k]), 2**30)}
            if check(X_rows, huge)[0].get():
                raise IndexError(
                    f"Input {k!r} indexes an array of the model and holds negative values "
                    f"(down to {np.min(kwargs[k])}), which wrap around: -1 reads the last "
                    "element. pandas.factorize marks missing values with -1; give every row "
                    "a valid code (impute, or add a group for them)."
                )
        if message:
            ranges = ", ".join(
                f"{k!r} from {np.min(kwargs[k])} to {np.max(kwargs[k])}" for k in integer
            )
            raise IndexError(
                f"The model indexes an array out of bounds with these inputs ({message.strip()}"
                f"); integer inputs here: {ranges}. JAX would clamp the index silently and "
                "use another element's value (another group's, say). Give codes within the "
                "range the model was built for, or refit with a model that has room for them."
            )


    def _check_float_indices(self, X, kwargs, row_inputs):
        """Raise, naming the input, where a float input indexes an array of the model (an
        integer input given, or intervened to, 0.5 say): JAX only says "Indexer must have
        integer or boolean type". Traced once per model and input dtypes (no compilation)."""
        floats = [k for k, v in kwargs.items()
                  if k not in self.scales and np.asarray(v).dtype.kind == "f"]
        if not floats:
            return
        sig = (self.cache_key, tuple(sorted(
            (k, str(np.asarray(v).dtype), np.ndim(v), k in row_inputs)
            for k, v in kwargs.items())))
        if sig in _FLOAT_INDEX_OK:
            return
        X_rows = np.asarray(X)[:1]
        sub = {k: (np.asarray(v)[:1] if k in row_inputs else v) for k, v in kwargs.items()}

        def float_indexes(as_float):
            trial = {k: (v if k in as_float or k not in floats else np.asarray(v).astype(np.int32))
                     for k, v in sub.items()}
            try:
                jax.eval_shape(lambda X, kw: _run_model(self.model, X, kw), X_rows, trial)
            except TypeError as exc:
                return "Indexer must have integer" in str(exc)
            except Exception:  # noqa: BLE001 - other failures are reported by the run itself
                return False
            return False

        if not float_indexes(floats):
            _FLOAT_INDEX_OK.add(sig)
            return
        culprits = [k for k in floats if float_indexes([k])] or floats
        shown = ", ".join(
            f"{k!r} (e.g. {np.asarray(kwargs[k]).reshape(-1)[:1].tolist()[0]!r})" for k in culprits)
        one = len(culprits) == 1
        raise TypeError(
            f"Input{'' if one else 's'} {shown} {'indexes' if one else 'index'} an array of "
            f"the model, so {'it' if one else 'they'} must hold integers (codes such as 0, 1, "
            f"2), but {'it holds' if one else 'they hold'} floats, as given or as an "
            "intervention set them. Give integer codes (e.g. np.int64), and intervene with "
            "integers."
        )


def _run_model(model, X, kwargs):
    tr = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(X, **kwargs)
    return {k: site["value"] for k, site in tr.items() if site["type"] == "sample"}


_FLOAT_INDEX_OK = set()


def build_program(model_spec, X, y, inputs, *, reparam=None, outcome="y", scales=None,
                  row_inputs=(), offsets=None, row_plate=None):
    """Build the model of ``model_spec`` and trace it once on the training data.

    Parameters
    ----------
    model_spec : skimpact.Model
        The factory and hyperparameters.
    X, y : array
        Training features and the outcome as the model observes it.
    inputs : dict
        The model's keyword inputs (without ``scales``).
    reparam : dict, optional
        ``{site: Reparam}`` for :func:`numpyro.handlers.reparam`; every key must be a
        latent sample site of the model.
    outcome : str
        The model argument that receives ``y``.
    scales : dict, optional
        Keyword inputs fixed at fit.
    row_inputs : tuple of str
        Inputs with one entry per row; those the model uses whole are found when it is
        inspected (``info.row_inputs`` holds the rest).
    offsets : dict, optional
        ``{site: offset}`` added to the sites' values after the model runs (``y`` is
        already less the outcome's offset).
    row_plate : str, optional
        The plate over the rows (see :func:`skimpact.inspection.inspect_model`).

    Returns
    -------
    Program

    Raises
    ------
    ValueError
        If ``reparam`` names a site the model does not sample.
    """
    PROGRAMS.release_if_over()  # a fit compiles afresh: release programs over the bound
    scales = dict(scales or {})
    base = model_spec.build()
    _check_outcome_argument(base, outcome)
    arguments = _value_hyperparameters(model_spec, X, {outcome: y, **scales, **inputs})
    if arguments:
        base = _WithHyperparameters(model_spec.snapshot(), arguments)
        scales.update({HYPERPARAMETER_PREFIX + k: model_spec.hyperparameters[k]
                       for k in arguments})
    kwargs = {outcome: y, **scales, **inputs}
    cache_key = (_marked(model_spec, arguments).cache_key(), _reparam_key(reparam), outcome,
                 row_plate)
    if reparam:
        _check_reparam(ModelRef(base, (cache_key, "without reparam")), X, kwargs, reparam)
    model = _reparameterised(base, reparam)
    # models of one program share the compiled trace that inspects them
    info = inspect_model(ModelRef(model, cache_key), X, outcome, y, {**scales, **inputs},
                         row_inputs=row_inputs, row_plate=row_plate)
    return Program(
        model=model,
        outcome=outcome,
        info=info,
        cache_key=cache_key,
        scales=scales,
        spec=model_spec.snapshot(),
        reparam=dict(reparam) if reparam else None,
        offsets=dict(offsets or {}),
        arguments=arguments,
    )


class _WithHyperparameters:
    """The factory's model, built in each call from hyperparameters among its inputs.

    Parameters
    ----------
    spec : skimpact.Model
        The factory and the values of the other (static) hyperparameters.
    arguments : tuple of str
        The hyperparameters read from the keyword inputs ``HYPERPARAMETER_PREFIX + name``
        (traced values inside a compiled program).
    """

    def __init__(self, spec, arguments):
        self.spec, self.arguments = spec, tuple(arguments)

    def __call__(self, *args, **kwargs):
        values = {k: kwargs.pop(HYPERPARAMETER_PREFIX + k) for k in self.arguments}
        return self.spec.factory(**{**self.spec.hyperparameters, **values})(*args, **kwargs)


#: ``{key: arguments}``: which hyperparameters of a model (factory, static values, kinds of
#: the numeric ones) run as arguments, least recently used first.
_SPLITS = OrderedDict()


def _value_hyperparameters(spec, X, kwargs):
    """The numeric scalar hyperparameters of ``spec`` that its model uses only as values.

    The model is traced abstractly (no compilation) with the candidates as abstract
    values: all together, else each alone and then those that passed together. One used
    as a shape, in Python control flow or by NumPy fails that trace and stays static.
    """
    candidates = tuple(sorted(k for k, v in spec.hyperparameters.items() if _is_scalar(v)))
    if not candidates:
        return ()
    key = (_marked(spec, candidates).cache_key(), _structure(X, kwargs))
    if key in _SPLITS:
        _SPLITS.move_to_end(key)
        return _SPLITS[key]

    def traces(names):
        model = _WithHyperparameters(spec, names)
        values = {HYPERPARAMETER_PREFIX + k: spec.hyperparameters[k] for k in names}
        try:
            jax.eval_shape(lambda values: _run_model(model, X, {**kwargs, **values}), values)
        except Exception:  # noqa: BLE001 - any failure keeps the hyperparameters static
            return False
        return True

    if traces(candidates):
        arguments = candidates
    else:
        arguments = tuple(k for k in candidates if traces((k,)))
        if len(arguments) > 1 and not traces(arguments):
            arguments = ()
    _SPLITS[key] = arguments
    if len(_SPLITS) > _MAX_SPLITS:
        _SPLITS.popitem(last=False)
    return arguments


def _is_scalar(value):
    """A real number (not a bool), as Python or NumPy scalar or 0-d array."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (Integral, Real)):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"


def _marked(spec, names):
    """A copy of ``spec`` whose hyperparameters ``names`` are replaced by their kind: its
    ``cache_key()`` is equal for every value they take."""
    if not names:
        return spec
    marked = spec.snapshot()
    marked.hyperparameters.update({
        k: ("argument", np.result_type(spec.hyperparameters[k]).kind) for k in names})
    return marked


def _structure(X, kwargs):
    """Shapes and dtypes of the model's arguments."""
    def of(v):
        return np.shape(v), str(getattr(v, "dtype", type(v).__name__))

    return of(X), tuple(sorted((k, of(v)) for k, v in kwargs.items()))


#: Compiled index checkers, one per program and input structure.
_INDEX_CHECKS = {}
PROGRAMS.register(_INDEX_CHECKS.clear)


def _index_checker(model):
    """``jit(checkify(run the model once))`` with checkify's index checks."""

    def run(X, inputs):
        tr = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(X, **inputs)
        return {k: site["value"] for k, site in tr.items() if site["type"] == "sample"}

    return jax.jit(checkify.checkify(run, errors=checkify.index_checks))


def _reparameterised(model, reparam):
    return handlers.reparam(model, config=dict(reparam)) if reparam else model


def _check_outcome_argument(model, outcome):
    """The model must take the outcome as the keyword argument ``outcome``."""
    try:
        params = inspect.signature(model).parameters
    except (TypeError, ValueError):
        return
    if outcome in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    names = [k for k, p in params.items() if p.kind != p.VAR_POSITIONAL][1:]
    raise ValueError(
        f"The model has no argument {outcome!r} to receive y; its arguments after X are "
        f"{names}. Set the estimator's `outcome=` to the argument that receives the outcome"
        + (f", e.g. outcome={names[0]!r}." if names else ".")
    )


def _check_reparam(model, X, kwargs, reparam):
    tr = trace_model(model, (X,), kwargs)
    latent = [k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]
    unknown = [k for k in reparam if k not in latent]
    if unknown:
        raise ValueError(
            f"`reparam` names {unknown}, which the model does not sample as latent sites; "
            f"its latent sites are {latent}. Use the names of `numpyro.sample` sites."
        )


def _reparam_key(reparam):
    if not reparam:
        return None
    return tuple(
        (k, type(r).__name__, repr(sorted(vars(r).items())))
        for k, r in sorted(reparam.items())
    )


def training_model(program, *, scale=None, mask=None):
    """The program's model for fitting: the outcome site's log-density scaled by the
    sample weights ``scale`` and masked by ``mask`` (priors untouched); the model itself
    when both are ``None``."""
    if scale is None and mask is None:
        return program.model
    return _LikelihoodOnly(program.model, site=program.info.outcome_site, scale=scale, mask=mask)


class _LikelihoodOnly(Messenger):
    """``handlers.scale`` / ``handlers.mask`` restricted to one site (the outcome)."""

    def __init__(self, fn=None, site=None, scale=None, mask=None):
        self.site, self.scale, self.mask = site, scale, mask
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["name"] != self.site:
            return
        if self.scale is not None:
            msg["scale"] = self.scale if msg["scale"] is None else msg["scale"] * self.scale
        if self.mask is not None:
            msg["fn"] = msg["fn"].mask(self.mask)
