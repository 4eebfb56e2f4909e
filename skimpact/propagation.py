"""How an intervention reaches the latent sites downstream of it.

The engine runs each posterior draw with the draw's latent values substituted. A latent
sample site *downstream* of an intervened site, input or column would keep its fitted
value, so an effect through it would be exactly zero. This module finds those sites from
the model's structure and moves their values, under one of two semantics:

``"counterfactual"`` (abduction, action, prediction: the twin world)
    Each downstream latent keeps its exogenous noise, inferred from its fitted value under
    its factual parents, and is recomputed under the new parents: exactly for
    location-scale families (``Normal``, ``StudentT`` of unchanged ``df``, ``Laplace``,
    ``Cauchy``, ``Logistic``, ``Gumbel``), ``MultivariateNormal``, ``Delta`` and
    transforms of them (``LogNormal``, a site that ``LocScaleReparam`` or
    ``TransformReparam`` decentred), and by quantile coupling
    (``u = F_old(value)``, new value ``F_new^-1(u)``) for other continuous univariate
    families with a ``cdf`` and an ``icdf``. A discrete site, or one without an inverse
    cdf, is refused with its name.
``"interventional"``
    Each downstream latent is drawn afresh from its distribution given the new parents
    (what a new unit under the intervention would see); both scenarios of an effect use
    the same random numbers.

Only the elements whose distribution the intervention changed move: the others keep their
fitted values exactly (a per-row site changes only in the rows whose parents changed).

Nothing here knows of estimators or outputs: the engine asks :func:`dependency_graph` once
per program and :func:`downstream` per request, and wraps the model in :class:`Propagate`.
"""

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.ops.provenance import eval_provenance
from numpyro.primitives import Messenger

__all__ = ["SEMANTICS", "DATA", "Propagate", "dependency_graph", "downstream"]

#: The two semantics of an intervention on downstream latent sites.
SEMANTICS = ("counterfactual", "interventional")
#: The node of the graph that stands for the model's data (X and its keyword inputs).
DATA = "<data>"

_X, _INPUTS = "__skimpact_X", "__skimpact_inputs"
_LOC_SCALE = (dist.Normal, dist.Laplace, dist.Cauchy, dist.Logistic, dist.Gumbel)


def check_semantics(semantics):
    """Raise a ValueError naming the choices unless ``semantics`` is one of them."""
    if semantics not in SEMANTICS:
        raise ValueError(
            f"`semantics` must be 'counterfactual' (each downstream latent keeps its "
            f"fitted noise: what would have happened to these units) or 'interventional' "
            f"(downstream latents drawn afresh given their new parents); got {semantics!r}."
        )
    return semantics


def dependency_graph(model, X, inputs, latent, deterministic, observed=()):
    """The parents of every latent, deterministic and observed site of ``model``.

    The model runs once abstractly (no computation) with every latent value and every
    deterministic value tracked (NumPyro's provenance): a sample site's parents are what
    its distribution's parameters depend on, a deterministic site's what its value does.
    The data (``X`` and every keyword input) is one node, :data:`DATA`: column-level
    changes are told apart later, per element, by whether the site's distribution moved.

    Parameters
    ----------
    model : callable
    X : array
    inputs : dict
    latent : dict of str to array
        One value per latent sample site, shaped as the call's rows need.
    deterministic : tuple of str
    observed : tuple of str
        Observed sample sites whose parents are wanted too (their values are data).

    Returns
    -------
    dict of str to frozenset
        ``{site: parents}`` for the latent and deterministic sites; a site that the model
        cannot trace abstractly makes every site depend on everything (conservative: the
        per-element check still keeps unchanged values).
    """
    names = tuple(latent) + tuple(deterministic) + tuple(observed)
    arrays = {k: v for k, v in inputs.items() if hasattr(v, "shape")}
    static = {k: v for k, v in inputs.items() if k not in arrays}

    def densities(**tracked):
        recorded = {}
        m = _Tap(model, {k: tracked[k] for k in deterministic}, recorded)
        m = handlers.substitute(m, data={k: tracked[k] for k in latent})
        tr = handlers.trace(handlers.seed(m, 0)).get_trace(
            tracked[_X], **static, **tracked[_INPUTS])
        # a sample site depends on what its distribution's parameters read (its own value,
        # data for an observed site, is no parent of it)
        out = {k: jax.tree_util.tree_leaves(tr[k]["fn"]) for k in (*latent, *observed)
               if k in tr}
        out.update(recorded)
        return out

    tracked = {**dict(latent), **{k: jnp.zeros(()) for k in deterministic}}
    tracked[_X], tracked[_INPUTS] = X, arrays
    try:
        deps = eval_provenance(densities, **tracked)
    except Exception:  # noqa: BLE001 - an untraceable model: assume every dependence
        every = frozenset(names) | {DATA}
        return {k: every - {k} for k in names}
    graph = {}
    for k in names:
        found = frozenset().union(*jax.tree_util.tree_leaves(
            deps.get(k, []), is_leaf=lambda x: isinstance(x, frozenset)))
        parents = {DATA if p in (_X, _INPUTS) else p for p in found}
        graph[k] = frozenset(parents - {k})
    return graph


def downstream(graph, changed, candidates):
    """The ``candidates`` (latent sites) reachable from the ``changed`` nodes in ``graph``,
    in no particular order; the changed sites themselves are set, not moved."""
    reached, frontier = set(), set(changed)
    while frontier:
        nxt = {k for k, parents in graph.items() if parents & frontier and k not in reached}
        reached |= nxt
        frontier = nxt - set(changed)
    return tuple(sorted(k for k in reached if k in candidates and k not in changed))


class _Tap(Messenger):
    """Record each deterministic site's computed value and add a tracked zero to it, so
    what depends on the site depends on its name too."""

    def __init__(self, fn, zeros, recorded):
        self.zeros, self.recorded = zeros, recorded
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "deterministic" and msg["name"] in self.zeros:
            value = msg["value"]
            self.recorded[msg["name"]] = value
            msg["value"] = value + self.zeros[msg["name"]].astype(jnp.result_type(value))


class Propagate(Messenger):
    """Substitute fitted latent values, moving those of the ``names`` sites whose
    distribution differs from the factual one (an observed site among ``names`` moves from
    its observed value: its noise is known from the data).

    Parameters
    ----------
    fn : callable
        The model under the intervention's handlers.
    latent : dict of str to array
        One draw's latent values.
    factual : dict
        A trace of the model under the same draw with no intervention: each site's factual
        distribution.
    names : tuple of str
        The latent sites downstream of the intervention.
    semantics : {"counterfactual", "interventional"}
    key : jax.random key
        The draw's key, for fresh draws under ``"interventional"``.
    """

    def __init__(self, fn, latent, factual, names, semantics, key):
        self.latent, self.factual, self.names = latent, factual, names
        self.semantics, self.key = semantics, key
        super().__init__(fn)

    def process_message(self, msg):
        name = msg["name"]
        if msg["type"] != "sample":
            return
        observed = msg.get("is_observed")
        if name in self.names:
            value = msg["value"] if observed else self.latent[name]
            moved = self._move(name, self.factual[name]["fn"], msg["fn"], value)
            if observed:
                # data that the intervention itself changed (an input set to new values)
                # are set, not moved: only the site's factual data carry its noise
                moved = jnp.where(value == self.factual[name]["value"], moved, value)
            msg["value"] = moved
        elif not observed and name in self.latent:
            msg["value"] = self.latent[name]

    def _move(self, name, old, new, value):
        event = (1,) * new.event_dim
        changed = old.log_prob(value) != new.log_prob(value)
        changed = jnp.reshape(changed, jnp.shape(changed) + event)
        if self.semantics == "interventional":
            key = jax.random.fold_in(self.key, 1 + self.names.index(name))
            moved = new.sample(key)
        else:
            moved = couple(name, old, new, value)
        return jnp.where(changed, jnp.broadcast_to(moved, jnp.shape(value)), value)


def couple(name, old, new, value):
    """``value``, drawn from ``old``, moved to ``new`` with the same exogenous noise.

    Raises
    ------
    ValueError
        For a discrete site, or a family without the inverse cdf that the coupling needs,
        naming the site and the ways out.
    """
    old, new = _unwrap(old), _unwrap(new)
    if type(old) is not type(new):
        raise _refusal(name, f"its distribution changes family ({type(old).__name__} to "
                             f"{type(new).__name__})")
    if isinstance(new, dist.TransformedDistribution):
        base = value
        for t in reversed(old.transforms):
            base = t.inv(base)
        moved = couple(name, old.base_dist, new.base_dist, base)
        for t in new.transforms:
            moved = t(moved)
        return moved
    if isinstance(new, dist.Delta):
        return new.v
    if isinstance(new, _LOC_SCALE):
        return new.loc + new.scale * (value - old.loc) / old.scale
    if isinstance(new, dist.StudentT):
        # exact while df stays; a changed df needs the quantile coupling, whose inverse cdf
        # NumPyro takes from TensorFlow Probability: without it those elements are NaN
        affine = new.loc + new.scale * (value - old.loc) / old.scale
        try:
            other = _quantile(name, old, new, value)
        except ValueError:
            other = jnp.nan
        return jnp.where(old.df == new.df, affine, other)
    if isinstance(new, dist.MultivariateNormal):
        noise = jax.scipy.linalg.solve_triangular(
            old.scale_tril, (value - old.loc)[..., None], lower=True)
        return new.loc + (new.scale_tril @ noise)[..., 0]
    if new.is_discrete:
        raise _refusal(name, f"it is discrete ({type(new).__name__}): its fitted noise does "
                             "not determine its value under new parents")
    return _quantile(name, old, new, value)


def _quantile(name, old, new, value):
    if new.event_dim:
        raise _refusal(name, f"it is multivariate ({type(new).__name__}) with no "
                             "location-scale form")
    try:
        return new.icdf(jnp.clip(old.cdf(value), 0.0, 1.0))
    except (NotImplementedError, ImportError):
        raise _refusal(name, f"{type(new).__name__} has no cdf and inverse cdf in NumPyro "
                             "for quantile coupling") from None


def _unwrap(fn):
    while isinstance(fn, (dist.Independent, dist.ExpandedDistribution,
                          dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _refusal(name, why):
    return ValueError(
        f"Latent site {name!r} lies downstream of the intervention, but its value cannot be "
        f"carried into the counterfactual world: {why}. Use semantics='interventional' "
        f"(draw {name!r} afresh given its new parents), reparameterise it into a "
        "location-scale form (e.g. reparam={" + repr(name) + ": LocScaleReparam(0)}), or "
        "intervene on it directly."
    )
