"""The fitted program: everything about the model that predictions need, frozen at fit.

A :class:`Program` holds the NumPyro model as fitted (the factory's model with
``handlers.reparam`` applied), the name of the argument that receives the outcome, what
tracing the model found (:class:`~skimpact.model.ModelInfo`), the key under which compiled
programs are shared, and the data scales the built-in models take as inputs. The estimator
builds it once in ``fit``; changing the estimator's parameters afterwards changes nothing
until the next ``fit``.
"""

import inspect
from dataclasses import dataclass, field

import numpy as np
from numpyro import handlers
from numpyro.primitives import Messenger

from .model import inspect_model, trace_model

__all__ = ["Program", "build_program", "training_model"]


@dataclass(frozen=True)
class Program:
    """A fitted model, ready to run.

    Parameters
    ----------
    model : callable
        The NumPyro model with ``reparam`` applied.
    outcome : str
        The model's keyword argument that receives the outcome.
    info : skimpact.model.ModelInfo
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
        :func:`skimpact.model.builtin_offsets`).
    """

    model: object
    outcome: str
    info: object
    cache_key: object
    scales: dict = field(default_factory=dict)
    spec: object = None
    reparam: dict = None
    offsets: dict = field(default_factory=dict)

    def __getstate__(self):
        # the built model is usually a closure: pickle the factory and rebuild on load
        state = dict(self.__dict__)
        if state["spec"] is not None:
            state["model"] = None
        return state

    def __setstate__(self, state):
        if state["model"] is None:
            state["model"] = _reparameterised(state["spec"].build(), state["reparam"])
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


def build_program(model_spec, X, y, inputs, *, reparam=None, outcome="y", scales=None,
                  row_inputs=(), offsets=None):
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
        Inputs with one entry per row.
    offsets : dict, optional
        ``{site: offset}`` added to the sites' values after the model runs (``y`` is
        already less the outcome's offset).

    Returns
    -------
    Program

    Raises
    ------
    ValueError
        If ``reparam`` names a site the model does not sample.
    """
    scales = dict(scales or {})
    base = model_spec.build()
    _check_outcome_argument(base, outcome)
    kwargs = {outcome: y, **scales, **inputs}
    if reparam:
        _check_reparam(base, X, kwargs, reparam)
    model = _reparameterised(base, reparam)
    info = inspect_model(model, X, outcome, y, {**scales, **inputs}, row_inputs=row_inputs)
    return Program(
        model=model,
        outcome=outcome,
        info=info,
        cache_key=(model_spec.cache_key(), _reparam_key(reparam), outcome),
        scales=scales,
        spec=model_spec.snapshot(),
        reparam=dict(reparam) if reparam else None,
        offsets=dict(offsets or {}),
    )


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
