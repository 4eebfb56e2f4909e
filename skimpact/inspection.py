"""What a model is, found by tracing it: its sites, outcome, row plate and per-row inputs,
and its log-density at points.

:func:`inspect_model` traces a model once on the training data (as one compiled program,
:func:`trace_model`) and returns a :class:`ModelInfo`. :class:`ModelRef` makes a model a
static argument of compiled functions, shared by fits of one program;
:func:`start_point`, :func:`potential_grads` and :func:`potential_hessian` evaluate its
log-density (for the choice of inference and the Laplace check).
"""

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.util import potential_energy, unconstrain_fn

__all__ = [
    "ModelInfo", "ModelRef", "TRACER_ERRORS", "inspect_model", "potential_grads",
    "potential_hessian", "start_point", "trace_model", "traced_value_error",
    "unconstrained_point",
]


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
    row_inputs: tuple = ()  # keyword inputs with one entry per row

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
    for name, site_type, observed, frames, observes in layout.sites:
        tr[name] = {"type": site_type, "name": name, "is_observed": observed,
                    "cond_indep_stack": list(frames), "observes": observes}
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
        (k, s["type"], bool(s.get("is_observed", False)), tuple(s.get("cond_indep_stack", ())),
         s["observes"])
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
    for site in tr.values():
        # the keyword inputs a site observes as they were passed (``obs=y``): by identity
        site["observes"] = tuple(
            k for k, v in kwargs.items()
            if site.get("is_observed") and v is not None and site["value"] is v)
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
def potential_grads(model, z, args, kwargs, n):
    """``n`` gradients of the potential energy (negative log-density) in one compiled
    loop, from unconstrained ``z``, each at the last point moved by a negligible multiple
    of its gradient (so that none can be hoisted out of the loop); the last point."""
    def step(_, z):
        grad = jax.grad(lambda z: potential_energy(model, args, kwargs, z))(z)
        return jax.tree.map(lambda v, g: v + 1e-30 * g, z, grad)

    return jax.lax.fori_loop(0, n, step, z)


@partial(jax.jit, static_argnums=0)
def potential_hessian(model, args, kwargs, values):
    """The point ``z`` (:func:`unconstrained_point` of ``values``) and the Hessian of the
    potential energy there, flattened in the order of :func:`jax.flatten_util.ravel_pytree`
    (sites sorted by name)."""
    z = unconstrained_point(model, args, kwargs, values)
    flat, unravel = ravel_pytree(z)
    return z, jax.hessian(lambda f: potential_energy(model, args, kwargs, unravel(f)))(flat)


def inspect_model(model, X, outcome, y, inputs, row_inputs=(), row_plate=None):
    """Trace ``model(X, outcome=y, **inputs)``: its outcome site, row plate, per-row inputs
    and sites.

    Nothing is guessed from sizes. The outcome site is the observed sample site whose
    ``obs`` is the outcome argument itself (``numpyro.sample("y", ..., obs=y)``). The row
    plate is the plate named ``row_plate``, by default the outcome site's plate over its
    first batch axis, which holds the rows of y (none: the rows' dim is named ``"obs"``);
    sample sites inside it are local latents (one value per row). Of ``row_inputs``, the
    keyword inputs with one entry per row of X, those the model uses per row are found by
    tracing it on the first rows (:func:`_per_row_inputs`): an input of one value per group
    that happens to have as many groups as rows stays whole. Dims of every site come from
    its plates (and, for sample sites, its event dims), as ArviZ's NumPyro converter names
    them. A site outside the row plate whose value grows with the rows
    (``numpyro.deterministic("mu", X @ b)``) has its row axis found by tracing the model on
    one row and on two: the axis that grows holds rows.
    """
    n = X.shape[0]
    tr = trace_model(model, (X,), {outcome: y, **inputs})
    samples = {k: s for k, s in tr.items() if s["type"] == "sample"}
    observed = [k for k, s in samples.items() if s["is_observed"]]
    outcome_site = _outcome_site(tr, outcome)
    row_dim, row_plate = _row_plate(tr[outcome_site], row_plate)
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
    global_latent = [k for k in latent if row_axis[k] is None]
    row_inputs = _per_row_inputs(model, X, outcome, y, inputs, row_inputs,
                                 {k: shapes[k] for k in global_latent})
    outside = [k for k in row_axis if row_axis[k] is None and tr[k]["type"] == "deterministic"]
    # latents outside the row plate: do they follow the rows?
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
        row_inputs=row_inputs,
    )


def _outcome_site(tr, outcome):
    """The observed sample site whose ``obs`` is the outcome argument ``outcome``."""
    found = [k for k, s in tr.items() if s["type"] == "sample" and outcome in s["observes"]]
    if len(found) == 1:
        return found[0]
    listing = ", ".join(
        f"{k} ({s['type']}{', observed' if s.get('is_observed') else ''})"
        for k, s in tr.items()
        if s["type"] in ("sample", "deterministic")
    )
    if found:
        raise ValueError(
            f"Sample sites {found} all observe the outcome argument `{outcome}=`; one site "
            "must be the outcome. Observe y at one site and pass any other copy of it as "
            "another keyword input."
        )
    raise ValueError(
        f"No sample site of the model observes the outcome passed as `{outcome}=`. "
        f"The model's sites are: {listing or 'none'}. Give the outcome site "
        f"`obs={outcome}` (the argument itself, not a value computed from it), or set the "
        "estimator's `outcome=` to the name of the model argument that receives y."
    )


def _row_plate(site, name):
    """``(row dim, plate frame or None)`` of the outcome ``site``: the plate named ``name``,
    else its plate over the first batch axis (the axis of y's rows)."""
    frames = site.get("cond_indep_stack", ())
    if name is not None:
        for frame in frames:
            if frame.name == name:
                return frame.name, frame
        raise ValueError(
            f"row_plate={name!r}, but the outcome site {site['name']!r} is not inside a "
            f"plate of that name; its plates are {[f.name for f in frames]}. Name the plate "
            "over the rows of X, or leave row_plate=None to take the outcome's plate over "
            "its rows."
        )
    batch_ndim = jnp.ndim(site["value"]) - len(site["fn"].event_shape)
    for frame in frames:
        if batch_ndim >= 1 and frame.dim == -batch_ndim:
            return frame.name, frame
    return "obs", None


def _per_row_inputs(model, X, outcome, y, inputs, candidates, global_shapes):
    """Of ``candidates`` (keyword inputs with one entry per row of X), those the model uses
    one entry per row.

    Traced (shapes only) on the first two rows of X with every candidate cut to them, the
    model's latent sites outside the row plate keep their shapes when every candidate is
    per row. An input that counts groups, levels or features (a plate's size is read from
    it) changes them when cut; it is the one that, kept whole while the others are cut,
    gives the fitted shapes back, and it stays whole. With fewer than three rows nothing
    tells them apart and every candidate is taken per row.
    """
    n = X.shape[0]
    if n < 3 or not candidates:
        return tuple(candidates)
    rows = np.arange(2)

    def shapes_with(whole):
        kwargs = {k: (np.asarray(v)[rows] if k in candidates and k not in whole else v)
                  for k, v in inputs.items()}
        kwargs[outcome] = np.asarray(y)[rows]

        def run():
            tr = trace_model(model, (np.asarray(X)[rows],), kwargs)
            return {k: tr[k]["value"] for k in global_shapes}

        try:
            return {k: tuple(v.shape) for k, v in jax.eval_shape(run).items()}
        except (ValueError, TypeError, IndexError):  # these shapes do not fit together
            return None

    if shapes_with(()) == global_shapes:
        return tuple(candidates)
    whole = [k for k in candidates if shapes_with((k,)) == global_shapes]
    if not whole or shapes_with(whole) != global_shapes:
        raise ValueError(
            f"The keyword inputs {list(candidates)} each hold one entry per row of X, but "
            "cut to the first rows with X they change the shapes of the model's latent "
            f"sites outside the row plate ({global_shapes}), and no choice of inputs to keep "
            "whole gives them back. skimpact predicts rows in batches, cutting per-row "
            "inputs with X: make per-row inputs columns of X (the estimator's `inputs=`), "
            "and pass counts of groups or levels as ints or arrays of another length."
        )
    return tuple(k for k in candidates if k not in whole)


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
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"The model fails on one row of X ({exc}), so the row axis of its sites "
            f"{list(names)} outside the row plate cannot be found. skimpact predicts rows in "
            "batches of any size: the model must run on any number of rows."
        ) from exc
    axes = {}
    for k in names:
        diff = [i for i, (a, b) in enumerate(zip(one[k].shape, two[k].shape)) if a != b]
        axes[k] = diff[0] - len(one[k].shape) if diff else None
    return axes
