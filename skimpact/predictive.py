"""The predictive engine: one jit-compiled, batched function behind every prediction.

For each posterior draw the model runs under ``seed``, ``substitute`` (the draw's latent
values) and ``do`` (site interventions), vmapped over draws and applied to fixed-size row
batches. The compiled function depends only on the model's cache key and the *names* of
what is requested (sites returned, sites intervened on, shift functions), never on values
or on the number of rows, so repeated calls reuse one compilation.

This module knows nothing of scikit-learn or of output formats: it takes arrays and returns
arrays (or hands each batch to a sink). A sink may declare a *device reduction* (see
:meth:`PredictiveEngine.run`): a pure JAX function, applied inside the compiled program to
each batch's outputs, whose small results are all that leave the device.
"""

from collections import OrderedDict
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ._compilation_cache import PROGRAMS
from ._sinks import MemorySink
from .interventions import apply_shift
from .propagation import Propagate

__all__ = ["Request", "PredictiveEngine", "memory_budget"]

_MAX_CACHED = 64
_COMPILED = OrderedDict()
PROGRAMS.register(_COMPILED.clear)
CPU_MEMORY_BUDGET = 4 * 2**20  # bytes of output per batch on a CPU
ACCELERATOR_MEMORY_FRACTION = 1 / 16  # of an accelerator's memory, per batch of output
_ACCELERATOR_MAX_BUDGET = 2 * 2**30
#: Prefix of the per-draw values of held sites among the draws the program receives.
HELD = "__held__"


@dataclass(frozen=True)
class Request:
    """The static part of a prediction: what changes the compiled program.

    Parameters
    ----------
    return_sites : tuple of str
        Sites whose values are returned.
    do_sites : tuple of str
        Sample sites set to given values with ``handlers.do``.
    fixed_sites : tuple of str
        Deterministic sites set to given values with ``handlers.substitute``.
    shifts : tuple of (str, callable)
        Sites intervened on with a value computed from their factual value.
    outcome_stat : {"sample", "mean", "probs", "log_prob"}
        What is returned for the outcome site: sampled values, the conditional mean of its
        distribution, its class probabilities, or the log-density of its value (observed
        when the outcome is passed among the inputs: the pointwise log-likelihood).
    local_from_posterior : bool
        Whether local latent sites take their fitted posterior values (in-sample rows) or are
        drawn from the model given the global parameters (new rows).
    propagate : tuple of str
        Latent sites downstream of the intervention, whose fitted values move under
        ``semantics`` (see :mod:`skimpact.propagation`); the program then also traces the
        draw's factual world.
    semantics : {"counterfactual", "interventional"}
        How the ``propagate`` sites move.
    held : tuple of str
        Sites set, per draw, to values given with the draws (a mediator held at its value
        under another scenario: a nested counterfactual).
    grounded : bool
        Lower the outcome by the engine's grounding bias times the change of the treatment
        from the factual rows (see :mod:`skimpact.grounding`).
    """

    return_sites: tuple
    do_sites: tuple = ()
    fixed_sites: tuple = ()
    shifts: tuple = ()
    outcome_stat: str = "sample"
    local_from_posterior: bool = False
    propagate: tuple = ()
    semantics: str = "counterfactual"
    held: tuple = ()
    grounded: bool = False


class PredictiveEngine:
    """Batched, compiled predictions of a NumPyro model under posterior draws.

    Parameters
    ----------
    model : callable
        The NumPyro model (reparameterised as fitted).
    cache_key : hashable
        Equal for models that build the same program; compiled functions are shared
        between engines (and estimator clones) with equal keys.
    info : skimpact.inspection.ModelInfo
        Sites of the model found when it was fitted.
    grounding : skimpact.grounding.Grounding, optional
        The bias term of a fit grounded on experiments, for requests that are ``grounded``.
    """

    def __init__(self, model, cache_key, info, grounding=None):
        self.model = model
        self.cache_key = cache_key
        self.info = info
        self.grounding = grounding

    # ------------------------------------------------------------------ compiled core
    def compiled(self, *requests, reduction=None):
        """The jitted program ``(key, batch, latent, Xs, inputs, values, factuals, reduce,
        n_draws=, sharding=) -> outputs`` running one scenario per request.

        Each draw's key is split from ``fold_in(key, batch)`` inside the program, and every
        scenario uses the same keys (common random numbers); with two requests the program
        returns the first scenario minus the second. ``Xs``, ``inputs``, ``values`` and
        ``factuals`` (``(X, inputs)`` before the scenario changed them, or ``None``) hold
        one entry per request. With a ``reduction`` (hashable: it is part of the cache key)
        the program returns ``reduction(outputs, *reduce)`` instead of the outputs;
        ``reduce`` is ``()`` without one.
        """
        key = (self.cache_key, requests, reduction)
        fn = _COMPILED.get(key)
        if fn is None:
            draws = jax.vmap(self._scenarios(requests), in_axes=(0, 0, None, None, None, None))

            def program(key, batch, latent, Xs, inputs, values, factuals, reduce, n_draws,
                        sharding):
                keys = jax.random.split(jax.random.fold_in(key, batch), n_draws)
                if sharding is not None:
                    keys = jax.lax.with_sharding_constraint(keys, sharding)
                out = draws(keys, latent, Xs, inputs, values, factuals)
                return out if reduction is None else reduction(out, *reduce)

            fn = jax.jit(program, static_argnames=("n_draws", "sharding"))
            _COMPILED[key] = fn
            if len(_COMPILED) > _MAX_CACHED:
                _COMPILED.popitem(last=False)
        else:
            _COMPILED.move_to_end(key)
        return fn

    def _scenarios(self, requests):
        ones = [self._one_draw(r) for r in requests]

        def scenarios(key, latent, Xs, inputs, values, factuals):
            outs = [one(key, latent, X, i, v, f)
                    for one, X, i, v, f in zip(ones, Xs, inputs, values, factuals)]
            if len(outs) == 1:
                return outs[0]
            first, second = outs
            return {k: first[k] - second[k] for k in first}

        return scenarios

    def _one_draw(self, request):
        model, outcome = self.model, self.info.outcome_site

        def one(key, latent, X, inputs, values, factual):
            values = dict(values)
            world = None  # the draw's factual world
            if request.shifts:
                world = _trace(handlers.substitute(model, data=latent), key, X, inputs)
                for name, fn in request.shifts:
                    values[name] = apply_shift(name, fn, world[name]["value"])
            if request.propagate and (world is None or factual is not None):
                fX, f_inputs = (X, inputs) if factual is None else factual
                world = _trace(handlers.substitute(model, data=latent), key, fX, f_inputs)
            for name in request.held:
                values[name] = latent[HELD + name]
            deterministic = self.info.deterministic_sites
            do_vals = {k: values[k] for k in request.do_sites
                       + _shift_names(request, "sample", self.info)
                       + tuple(k for k in request.held if k not in deterministic)}
            fixed = {k: v for k, v in values.items() if k not in do_vals}
            m = handlers.substitute(model, data=fixed) if fixed else model
            m = handlers.do(m, data=do_vals) if do_vals else m
            if request.propagate:
                m = Propagate(m, latent, world, request.propagate, request.semantics, key)
            else:
                m = handlers.substitute(m, data=latent)
            tr = _trace(m, key, X, inputs)
            out = {}
            for name in request.return_sites:
                if name in do_vals:
                    out[name] = jnp.broadcast_to(do_vals[name], jnp.shape(tr[name]["value"]))
                elif name == outcome and request.outcome_stat != "sample":
                    out[name] = _outcome_stat(tr[name]["fn"], request.outcome_stat, tr[name]["value"])
                else:
                    out[name] = tr[name]["value"]
            if request.grounded and outcome in out:
                fX, f_inputs = (X, inputs) if factual is None else factual
                out[outcome] = out[outcome] - self.grounding.shift(latent, X, inputs, fX, f_inputs)
            return out

        return one

    # ------------------------------------------------------------------- public entry
    def run(self, draws, X, inputs, values, request, key, *, factual=None, batch_size=None,
            sink=None, row_inputs=(), rows_of=None):
        """Predict for every draw and row.

        Parameters
        ----------
        draws : dict of str to ndarray
            Latent sample sites, leading axis = draw (chains flattened).
        X : ndarray of shape (n_rows, ...)
            The model's first argument.
        inputs : dict
            Keyword inputs of the model; those named in ``row_inputs`` are split into row
            batches, the others are passed whole.
        values : dict
            Intervention values for ``request.do_sites`` and ``request.fixed_sites``; per-row
            values are given with their row axis at the site's row-plate position.
        request : Request
        key : jax.random key
            The same key gives the same random numbers per draw and row (common random
            numbers between scenarios).
        factual : tuple of (ndarray, dict), optional
            ``(X, inputs)`` of the same rows before the intervention changed them: the
            factual world from which ``request.propagate`` sites move (default ``X`` and
            ``inputs``).
        batch_size : int, optional
            Rows per batch; chosen from :func:`memory_budget` when omitted.
        sink : object, optional
            Receives ``sink.allocate(shapes, dtypes, row_axes=..., batch_size=...)``,
            ``sink.write(name, index, array)`` per batch and ``sink.close()``, or
            ``sink.abort()`` (when it has one) if the run fails. Defaults to in-memory NumPy
            arrays; see :mod:`skimpact._sinks`. Row counts below ``batch_size`` are padded
            to the next power of two, so they share a bounded number of compilations; with
            several devices and a draw count they divide, draws are sharded across them.
            A sink whose ``reduction`` attribute (read after ``allocate``) is not ``None``
            is handed each batch reduced on the device instead: ``reduction(outputs, mask,
            *inputs)`` (a hashable, pure JAX function; ``outputs`` are the batch's, draw
            axis first; ``mask`` is true for the batch's rows that are the sink's, false
            for padding; ``inputs`` are the batch's rows of the arrays in the sink's
            ``reduction_inputs``, one entry per row of ``X``, padded like ``X``) runs
            inside the compiled program, and the sink receives ``add_reduced(reduced,
            batch_rows, rows)`` per batch: the results as NumPy arrays, the slice of the
            batch that holds its rows and the slice of its rows they are.
        row_inputs : tuple of str
            The inputs with one entry per row (decided once, at fit).
        rows_of : tuple of (int, int), optional
            ``(offset, total)``: the rows are rows ``offset .. offset + n_rows`` of a table
            of ``total`` rows (a partition). The batch size, the batch boundaries and each
            batch's key are then those of the whole table, so every row gets the random
            numbers it gets when the table is predicted in one call; the sink still
            receives this part's rows only, indexed from 0.

        Returns
        -------
        outputs : dict of str to ndarray or whatever ``sink.close()`` returns
        row_axes : dict of str to int or None
            Axis of each output holding rows (negative, counted from the end), ``None``
            for outputs that do not vary by row.
        """
        return self._run(draws, ((X, inputs, values, request, factual),), key,
                         batch_size=batch_size, sink=sink, row_inputs=row_inputs,
                         rows_of=rows_of)

    def run_contrast(self, draws, intervention, baseline, key, *, batch_size=None, sink=None,
                     row_inputs=(), rows_of=None, held=None):
        """Predict two scenarios of the same rows in one pass; return the first minus the
        second.

        Both scenarios run in one compiled program on each batch with the same random keys
        per draw and row (common random numbers), so the result equals the difference of
        two :meth:`run` calls with the same ``key`` and ``batch_size``, at the cost of one
        pass over the rows and one output.

        Parameters
        ----------
        draws : dict of str to ndarray
        intervention, baseline : tuple
            ``(X, inputs, values, request, factual)`` of each scenario, as :meth:`run`
            takes them; both have the same number of rows and return the same sites.
        key : jax.random key
        batch_size, sink, row_inputs, rows_of
            As in :meth:`run`.
        held : dict of str to ndarray, optional
            Per-draw values (leading axis = draw, a site's row axis where it has one) of
            the sites the intervention's request holds (``Request.held``).

        Returns
        -------
        outputs, row_axes
            As in :meth:`run`, each output the intervention minus the baseline.
        """
        n_i, n_b = intervention[0].shape[0], baseline[0].shape[0]
        if n_i != n_b:
            raise ValueError(f"Both scenarios need the same rows; got {n_i} and {n_b}.")
        return self._run(draws, (intervention, baseline), key, batch_size=batch_size,
                         sink=sink, row_inputs=row_inputs, rows_of=rows_of, held=held)

    def _run(self, draws, scenarios, key, *, batch_size, sink, row_inputs, rows_of, held=None):
        X, inputs, values, request, _ = scenarios[0]
        requests = tuple(s[3] for s in scenarios)
        n = X.shape[0]
        offset, total = (0, n) if rows_of is None else (int(rows_of[0]), int(rows_of[1]))
        if not 0 <= offset <= offset + n <= total:
            raise ValueError(
                f"rows_of={rows_of!r} does not hold {n} rows: give (offset, total) with "
                "0 <= offset and offset + n_rows <= total."
            )
        n_draws = next(iter(draws.values())).shape[0] if draws else 1
        local = dict(self.info.local_sites)
        latent = {
            k: np.asarray(v)
            for k, v in draws.items()
            if request.local_from_posterior or k not in local
        }
        for k, v in (held or {}).items():
            latent[HELD + k] = np.asarray(v)
            if self.info.site_row_axis.get(k) is not None:
                local[HELD + k] = self.info.site_row_axis[k]
        row_axes = self._row_axes(latent, local, scenarios[0], key, n_draws, row_inputs)
        if batch_size is None:
            batch_size = _batch_size_for_budget(row_axes, self._shapes, n_draws, total)
        elif batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
        batch_size = max(1, min(int(batch_size), _bucket(total)))
        PROGRAMS.release_if_over()
        sink = sink if sink is not None else MemorySink()
        sink.allocate(
            {k: _full_shape(s, row_axes[k], n) for k, s in self._shapes.items()},
            self._dtypes,
            row_axes=row_axes,
            batch_size=batch_size,
        )
        reduction = getattr(sink, "reduction", None)
        reduce_rows = () if reduction is None else tuple(
            np.asarray(v) for v in getattr(sink, "reduction_inputs", ()))
        fn = self.compiled(*requests, reduction=reduction)
        host = [self._host_scenario(X, inputs, values, row_inputs, n, factual)
                for X, inputs, values, _, factual in scenarios]
        shard = _draw_sharding(n_draws)
        glob = {k: _put(v, shard) for k, v in latent.items() if k not in local}
        at = np.arange(batch_size)

        def dispatch(b, pos, start, stop):
            rows = _padded_rows(start, stop, batch_size, pos)
            b_latent = dict(glob)
            for k, v in latent.items():
                if k in local:
                    b_latent[k] = _put(_take(v, rows, local[k]), shard)
            batch = [_batch_of(h, rows) for h in host]
            reduce = ()
            if reduction is not None:
                reduce = ((at >= pos) & (at < pos + stop - start),) + tuple(
                    _take(v, rows, 0) for v in reduce_rows)
            return fn(key, b, b_latent, *(tuple(part) for part in zip(*batch)), reduce,
                      n_draws=n_draws, sharding=shard)

        try:
            self._stream(dispatch, sink, row_axes, _batches(offset, n, batch_size), batch_size,
                         reduced=reduction is not None)
        except BaseException:
            getattr(sink, "abort", lambda: None)()
            raise
        return sink.close(), row_axes

    def _host_scenario(self, X, inputs, values, row_inputs, n, factual):
        """One scenario's arrays on the host, with the row axis of each per-row value."""
        per_row = _per_row(values, self._value_axes(values), n)
        values = {k: (np.asarray(v) if per_row[k] is not None else v) for k, v in values.items()}
        rows = {k: np.asarray(inputs[k]) for k in row_inputs}
        if factual is not None:
            fX, f_inputs = factual
            factual = (np.asarray(fX), f_inputs, {k: np.asarray(f_inputs[k]) for k in row_inputs})
        return np.asarray(X), inputs, rows, values, per_row, factual

    @staticmethod
    def _stream(dispatch, sink, row_axes, bounds, batch_size, reduced=False):
        """Compute batch after batch, handing each to ``sink`` (``reduced``: its reduction
        of the batch)."""
        pending = dispatch(*bounds[0]) if bounds else None
        for i, (_, pos, start, stop) in enumerate(bounds):
            out = pending
            # Dispatch the next batch before copying this one out: XLA computes it meanwhile.
            pending = dispatch(*bounds[i + 1]) if i + 1 < len(bounds) else None
            keep = stop - start
            if reduced:
                sink.add_reduced({k: np.asarray(v) for k, v in out.items()},
                                 slice(pos, pos + keep), slice(start, stop))
                continue
            for name, arr in out.items():
                ax = row_axes[name]
                if ax is None:
                    if i == 0:
                        sink.write(name, ..., np.asarray(arr))
                    continue
                arr = np.asarray(arr)
                index = [slice(None)] * arr.ndim
                if keep < batch_size:
                    index[arr.ndim + ax] = slice(pos, pos + keep)
                    arr = arr[tuple(index)]
                index[arr.ndim + ax] = slice(start, stop)
                sink.write(name, tuple(index), arr)
            del out

    def _row_axes(self, latent, local, scenario, key, n_draws, row_inputs):
        """Trace one draw on one row and on that row twice: the axes that grow hold rows."""
        X, inputs, values, request, factual = scenario
        fn = self._one_draw(request)
        value_axes = self._value_axes(values)
        shapes = []
        for rows in (np.zeros(1, int), np.zeros(2, int)):
            lat = {k: (np.take(v[0], rows, axis=local[k]) if k in local else v[0])
                   for k, v in latent.items()}
            vals = {k: _slice_value(v, rows, value_axes[k]) for k, v in values.items()}
            inp = {
                k: (np.asarray(v)[rows] if k in row_inputs else v)
                for k, v in inputs.items()
            }
            fact = None if factual is None else (
                np.asarray(factual[0])[rows],
                {k: (np.asarray(v)[rows] if k in row_inputs else v) for k, v in factual[1].items()})
            shapes.append(jax.eval_shape(fn, key, lat, np.asarray(X)[rows], inp, vals, fact))
        one, two = shapes
        self._shapes = {k: (n_draws,) + tuple(s.shape) for k, s in one.items()}
        self._dtypes = {k: s.dtype for k, s in one.items()}
        axes = {}
        for name, s1 in one.items():
            diff = [i for i, (a, b) in enumerate(zip(s1.shape, two[name].shape)) if a != b]
            axes[name] = (diff[0] - len(s1.shape)) if diff else None
        return axes

    def _value_axes(self, values):
        """Row axis of each intervention value (counted from the end), or None."""
        axes = {}
        for k, v in values.items():
            ax = self.info.site_row_axis.get(k)
            axes[k] = ax if ax is not None and jnp.ndim(v) >= -ax else None
        return axes


def _batch_of(host, rows):
    """``(X, inputs, values, factual)`` of one scenario for the batch ``rows``."""
    X, inputs, row_inputs, values, per_row, factual = host
    b_values = {k: (_take(v, rows, per_row[k]) if per_row[k] is not None else v)
                for k, v in values.items()}
    if factual is not None:
        fX, f_inputs, f_rows = factual
        factual = (_take(fX, rows, 0), _batch_inputs(f_inputs, f_rows, rows))
    return _take(X, rows, 0), _batch_inputs(inputs, row_inputs, rows), b_values, factual


def _batch_inputs(inputs, row_inputs, rows):
    return {k: (_take(row_inputs[k], rows, 0) if k in row_inputs else v)
            for k, v in inputs.items()}


def _shift_names(request, kind, info):
    names = tuple(n for n, _ in request.shifts)
    if kind == "sample":
        return tuple(n for n in names if n not in info.deterministic_sites)
    return tuple(n for n in names if n in info.deterministic_sites)


def _trace(model, key, X, inputs):
    return handlers.trace(handlers.seed(model, key)).get_trace(X, **inputs)


def _outcome_stat(fn, stat, value):
    if stat == "log_prob":
        return fn.log_prob(value)
    if stat == "probs":
        probs = fn.probs
        return jnp.stack([1 - probs, probs], -1) if probs.shape == fn.batch_shape else probs
    return fn.mean


def _per_row(values, axes, n):
    return {
        k: (axes[k] if axes[k] is not None and jnp.shape(v)[axes[k]] == n else None)
        for k, v in values.items()
    }


def _slice_value(v, rows, axis):
    if axis is None or jnp.shape(v)[axis] == 1:
        return v
    return np.take(np.asarray(v), rows, axis=axis)


def _batches(offset, n, batch_size):
    """``(batch, position, start, stop)`` for the rows ``0 .. n`` of a part starting at row
    ``offset`` of a larger table: the table's batch number, where the part's rows
    ``start:stop`` begin inside that batch."""
    first, bounds = offset // batch_size, []
    for b in range(first, (offset + n - 1) // batch_size + 1 if n else first):
        lo, hi = max(offset, b * batch_size), min(offset + n, (b + 1) * batch_size)
        bounds.append((b, lo - b * batch_size, lo - offset, hi - offset))
    return bounds


def _padded_rows(start, stop, batch_size, pos=0):
    """Rows ``start:stop`` placed at ``pos`` in a batch, as a slice, or as indices padded by
    repeating the first and last rows."""
    if pos == 0 and stop - start == batch_size:
        return slice(start, stop)
    rows = np.arange(batch_size) - pos + start
    return np.clip(rows, start, stop - 1)


def _take(v, rows, axis):
    """Rows of a host array along ``axis`` (negative axes count from the end)."""
    if isinstance(rows, slice):
        index = [slice(None)] * np.ndim(v)
        index[axis] = rows
        return v[tuple(index)]
    return np.take(v, rows, axis=axis)


#: Fewest rows a batch is padded to: row counts up to it share one program shape, so a
#: row's prediction does not change (by float32 round-off) with how many rows come along.
MIN_BATCH_ROWS = 64


def _bucket(n):
    """The smallest power of two >= ``n`` (at least :data:`MIN_BATCH_ROWS`): inputs smaller
    than one batch are padded to it, so row counts below the batch size share a bounded
    number of compilations."""
    return max(MIN_BATCH_ROWS, 1 << max(0, int(n) - 1).bit_length())


def _draw_sharding(n_draws):
    """A sharding of the leading (draw) axis across all devices, or None with one device or
    a draw count that the devices do not divide."""
    devices = jax.devices()
    if len(devices) < 2 or n_draws % len(devices):
        return None
    mesh = jax.sharding.Mesh(np.array(devices), ("draw",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("draw"))


def _put(v, sharding):
    return v if sharding is None else jax.device_put(v, sharding)


def _full_shape(shape, axis, n):
    if axis is None:
        return shape
    shape = list(shape)
    shape[len(shape) + axis] = n
    return tuple(shape)


def _batch_size_for_budget(row_axes, shapes, n_draws, n):
    per_row = 0
    for name, shape in shapes.items():
        if row_axes[name] is not None:
            per_row += int(np.prod(shape)) * 4  # shapes were traced on one row
    if per_row == 0:
        return n
    return max(1, memory_budget() // per_row)


def memory_budget(device=None):
    """Bytes of output per batch that suit ``device`` (default: the first of
    ``jax.devices()``).

    On a CPU, :data:`CPU_MEMORY_BUDGET`: a batch's intermediates then stay in the caches
    (4 MiB: 1024 rows of 1000 draws; on a 2-core VM 512 to 1024-row batches ran 2 to 4x
    faster per row than 4096 to 8192-row ones). On an accelerator, :data:`ACCELERATOR_MEMORY_FRACTION` of its memory (at most
    2 GiB), so each batch keeps it busy for long enough to hide the copy to the host.

    Parameters
    ----------
    device : jax.Device, optional

    Returns
    -------
    int

    Examples
    --------
    >>> import jax
    >>> from skimpact.predictive import memory_budget
    >>> memory_budget(jax.devices("cpu")[0]) // 2**20
    4
    """
    device = jax.devices()[0] if device is None else device
    if device.platform == "cpu":
        return CPU_MEMORY_BUDGET
    stats = device.memory_stats() or {}
    total = stats.get("bytes_limit")
    if not total:
        return CPU_MEMORY_BUDGET
    return int(min(total * ACCELERATOR_MEMORY_FRACTION, _ACCELERATOR_MAX_BUDGET))
