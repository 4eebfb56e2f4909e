"""Dask collections as input: predictions, counterfactuals and effects partition by partition.

Given a ``dask.dataframe.DataFrame`` or a ``dask.array.Array`` X, the estimators'
``predict``, ``predict_proba``, ``predict_quantiles`` and ``predict_interval``,
:func:`skimpact.counterfactual_predict` (and ``sample_posterior_predictive``),
:func:`skimpact.effect` and :func:`skimpact.streaming.effect_summary` come here. Every
partition is predicted by one task with the compiled engine of :mod:`skimpact.predictive`,
on whatever Dask scheduler is active (a ``distributed.Client`` when one exists):

* the fitted estimator (or Pipeline) enters the task graph once, so each worker receives
  it once, and the engine compiles once per worker process (JAX's persistent compilation
  cache, when configured on the workers, is shared between them);
* each partition is predicted as rows ``offset .. offset + n`` of the whole table, with the
  table's batches and random keys (``rows_of``), so the numbers equal those of the
  in-process call for the same integer ``random_state``, whatever the partitioning;
* point predictions come back as Dask collections, one chunk (partition) per partition;
* draws are written to one Zarr store (``store=`` is required), each partition into its
  own rows. The store is made under a temporary name beside the target and renamed when
  every partition is written; if a partition fails, or its worker dies, the temporary
  store is removed and nothing appears at the target.

Transformers of a Pipeline run on each partition (they must work row by row), raw-column
interventions before them. Intervention values must be scalars (or broadcast without a row
axis) or callables of the factual value, which run per partition; per-row keyword inputs
must be columns of the Dask DataFrame (``inputs=`` of the estimator). Row labels come from
the Dask index; the partitions' lengths are computed once per call.
"""

import math
import os
import uuid

import dask
import numpy as np
import pandas as pd

from ._sinks import ZarrSink, check_target, draw_quantiles
from .arguments import (
    check_coverage, check_flag, check_prob, check_quantiles, check_site_names,
)
from .blockwise import plan_prediction, stream_effect
from .heterogeneity import warn_constant_effect
from .interventions import describe
from .propagation import check_semantics
from .scenarios import effect_request, final_estimator, fitted_scenario
from .schema import Labels, effect_tree, predictive_tree
from .effect_summaries import EffectSummarySink, by_labels, check_interval, outcome_labels

__all__ = [
    "counterfactual_predict",
    "effect",
    "effect_summary",
    "predict",
    "predict_interval",
    "predict_proba",
    "predict_quantiles",
]


# ------------------------------------------------------------------ partitions
class _Table:
    """The partitions of a Dask collection: delayed pandas / NumPy blocks, their lengths
    and global offsets."""

    def __init__(self, X):
        import dask.array as da

        self.frame = not isinstance(X, da.Array)
        if self.frame:
            self.parts = list(X.to_delayed())
            self.lengths = [int(v) for v in X.map_partitions(len).compute()]
            self.divisions = X.divisions if X.known_divisions else None
        else:
            X = X.rechunk({i: -1 for i in range(1, X.ndim)})
            if any(math.isnan(c) for c in X.chunks[0]):
                X = X.compute_chunk_sizes()
            self.parts = list(X.to_delayed().reshape(-1))
            self.lengths = [int(c) for c in X.chunks[0]]
            self.divisions = None
        self.X = X
        if 0 in self.lengths:  # empty partitions (after a filter, say) predict nothing
            self.parts = [p for p, n in zip(self.parts, self.lengths) if n]
            self.lengths = [n for n in self.lengths if n]
            self.divisions = None
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(int).tolist()
        self.total = self.offsets[-1]

    def spans(self):
        """``(partition, (offset, total))`` for every partition."""
        return [(p, (o, self.total)) for p, o in zip(self.parts, self.offsets)]

    def labels(self):
        """Every row label: the Dask index, else positions."""
        if self.frame:
            return self.X.index.compute().to_numpy()
        return np.arange(self.total)

    def head(self):
        """The first row, in memory (from the first partition that has rows)."""
        return self.parts[0].compute()[:1]


def _shipped(estimator):
    """The estimator as one node of the task graph, sent once to each worker."""
    return dask.delayed(estimator, name=f"skimpact-estimator-{uuid.uuid4().hex}")


def _key(estimator):
    """One prediction key for every partition (drawn afresh for a non-int random_state)."""
    return np.asarray(_fitted(estimator).key())


def _fitted(estimator):
    """The fitted posterior of ``estimator`` (a Pipeline's last step), or NotFittedError."""
    from sklearn.utils.validation import check_is_fitted

    est = final_estimator(estimator)
    check_is_fitted(est, "predictor_")
    return est.predictor_


def _check_out_of_sample(in_sample):
    """The training rows were fitted in memory: ``in_sample=True`` is refused."""
    if check_flag(in_sample, "in_sample"):
        raise ValueError(
            "in_sample=True is not available for a Dask X: the training rows were fitted in "
            "memory, so predict them in memory (pass X as a NumPy array or pandas DataFrame)."
        )


def _check_call(estimator, table, intervention, baseline, inputs):
    """Refuse what cannot be split by partition, before anything runs."""
    pred = _fitted(estimator)
    layout, row_axis = pred.layout, pred.info.site_row_axis
    n = table.total
    for side, scenario in (("intervention", intervention), ("baseline", baseline)):
        for name, value in (scenario or {}).items() if isinstance(scenario, dict) else ():
            if callable(value):
                continue
            # a column or input takes a scalar here: an array as long as a partition was
            # given whole to every partition (or refused as "expected ... shape (45,)");
            # a site's value varies by row if it has entries along the site's row axis
            of_rows = name in layout.columns_ or name in layout.input_names_
            ax = row_axis.get(name)
            by_row = ax is not None and np.ndim(value) >= -ax and np.shape(value)[ax] > 1
            if dask.is_dask_collection(value) or isinstance(value, (pd.Series, pd.DataFrame)) \
                    or by_row or (of_rows and np.size(value) > 1):
                raise ValueError(
                    f"The {side} value of {name!r} has shape {np.shape(value)}, not a scalar: "
                    "with a Dask X, values with one entry per row (of X or of a partition) "
                    "cannot be split by partition. Give a scalar, or a "
                    "callable of the factual value (it runs on each partition), e.g. "
                    f"{{{name!r}: lambda v: v + 1.0}}; other per-row values need X in memory "
                    "(X.compute())."
                )
    per_row = [k for k in inputs if k in layout.row_inputs_]
    if per_row:
        raise ValueError(
            f"Per-row input(s) {per_row} cannot be passed as keyword arguments with a Dask "
            "X (one array for all rows, or one partition's, is not split by partition): make "
            "them columns of the Dask DataFrame and name them in the estimator's `inputs=` "
            "before fitting, so each partition carries its own."
        )
    layout.check_input_shapes(inputs)
    if n == 0:
        raise ValueError("X has no rows; a Dask X needs at least one row.")


def _run(tasks):
    """Compute ``tasks`` to the end, every one of them, even when some fail; return their
    results or raise the first failure (a worker's death counts as one)."""
    try:
        from distributed import default_client, wait

        client = default_client()
    except (ImportError, ValueError):
        client = None
    if client is None:
        results = list(dask.compute(*tasks))
    else:
        futures = client.compute(list(tasks))
        wait(futures)
        if any(f.status != "finished" for f in futures):
            errors = [_error_of(f) for f in futures if f.status == "error"]
            client.cancel(futures)
            raise next((e for e in errors if isinstance(e, BaseException)), RuntimeError(
                "the computation stopped before every partition was written (a worker died "
                "or the run was cancelled)"))
        results = client.gather(futures)
    errors = [r.error for r in results if isinstance(r, _Failure)]
    if errors:
        raise errors[0]
    return results


def _error_of(future):
    """The exception of a failed future (what it raised, or KilledWorker), or None when the
    scheduler no longer has it."""
    try:
        error = future.exception(timeout=30)
    except Exception:  # lost or cancelled meanwhile
        return None
    return error if isinstance(error, BaseException) else None


class _Failure:
    """An exception a task caught, handed to the client."""

    def __init__(self, error):
        self.error = error


# --------------------------------------------------------------- point predictions
class _ReduceSink:
    """Reduces each batch of ``name`` over its draws (``reduce(draws_first) -> rows
    first``), keeping only the result per row."""

    def __init__(self, name, reduce):
        self.name = name
        self.reduce = reduce

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        self.row_axis = row_axes[self.name]
        self.blocks = []

    def write(self, name, index, array):
        if name != self.name:
            return
        array = np.moveaxis(np.asarray(array), np.ndim(array) + self.row_axis, 1)
        self.blocks.append(self.reduce(array))

    def close(self):
        return np.concatenate(self.blocks, 0)


def _reduce_part(estimator, part, rows_of, key, intervention, inputs, stat, reduce):
    site = _fitted(estimator).info.outcome_site
    pred, scenario = fitted_scenario(estimator, part, intervention, inputs,
                                     return_sites=(site,), outcome_stat=stat)
    out, _ = pred.predict(scenario, np.asarray(key), sink=_ReduceSink(site, reduce),
                          rows_of=rows_of)
    return out


def _point(estimator, X, intervention, inputs, stat, reduce, finish, dtype, *, width=None,
           columns=None):
    table = _Table(X)
    _check_call(estimator, table, intervention, None, inputs)
    est, key = _shipped(estimator), _key(estimator)
    blocks = [dask.delayed(finish)(dask.delayed(_reduce_part)(
        est, part, rows_of, key, intervention, inputs, stat, reduce))
        for part, rows_of in table.spans()]
    if columns is None or not table.frame:
        import dask.array as da

        shape = () if width is None else (width,)
        return da.concatenate([da.from_delayed(b, shape=(n,) + shape, dtype=dtype)
                               for b, n in zip(blocks, table.lengths)])
    import dask.dataframe as dd

    frames = [dask.delayed(_frame)(b, part, columns) for b, part in zip(blocks, table.parts)]
    meta = pd.DataFrame({c: np.array([], dtype=dtype) for c in columns})
    return dd.from_delayed(frames, meta=meta, divisions=table.divisions, verify_meta=False)


def _frame(values, part, columns):
    return pd.DataFrame(values, index=part.index, columns=columns)


def _identity(values):
    return values


def _mean(draws):
    """The mean over draws, added draw after draw as NumPy adds the rows of a wide array
    (it sums a narrow one pairwise), so a partition's means equal the in-memory ones."""
    total = np.array(draws[0], copy=True)
    for values in draws[1:]:
        total += values
    return total / draws.dtype.type(draws.shape[0])


def _mean64(draws):
    return _mean(np.asarray(draws, dtype=np.float64))


class _Quantiles:
    def __init__(self, q):
        self.q = q

    def __call__(self, draws):
        return np.moveaxis(draw_quantiles(draws, self.q), 0, -1)


class _ClassCounts:
    def __init__(self, n_classes):
        self.n_classes = n_classes

    def __call__(self, draws):
        draws = draws.astype(int)
        return np.stack([(draws == k).mean(0) for k in range(self.n_classes)], -1)


class _Labels:
    def __init__(self, classes):
        self.classes = classes

    def __call__(self, probs):
        return self.classes[np.argmax(probs, axis=1)]


def predict(estimator, X, intervention=None, **inputs):
    """``estimator.predict`` for a Dask X: a Dask array, one chunk per partition.

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
    X : dask.dataframe.DataFrame or dask.array.Array
    intervention : dict, optional
        Scalars or callables of the factual value.
    **inputs
        Keyword inputs that do not vary by row.

    Returns
    -------
    dask.array.Array of shape (n_samples,)
        The posterior mean of the outcome's expected value (regressor) or the most probable
        class (classifier), as ``predict`` gives in memory.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from skimpact import ImpactRegressor
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=300, num_samples=20, random_state=0).fit(X, y)
    >>> out = est.predict(da.from_array(X, chunks=10))
    >>> out.chunks, bool(np.allclose(out.compute(), est.predict(X)))
    (((10, 10, 10, 10),), True)
    """
    pred = _fitted(estimator)
    if pred.classes is not None:
        return _proba(estimator, X, intervention, inputs, _Labels(pred.classes))
    return _point(estimator, X, intervention, inputs, pred.mean_stat(), _mean, _identity,
                  np.float32)


def predict_proba(estimator, X, intervention=None, **inputs):
    """``ImpactClassifier.predict_proba`` for a Dask X: a Dask array of shape
    ``(n_samples, n_classes)``, one chunk per partition.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from skimpact import ImpactClassifier
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = X[:, 0] > 0
    >>> clf = ImpactClassifier(num_steps=300, num_samples=20, random_state=0).fit(X, y)
    >>> bool(np.allclose(clf.predict_proba(da.from_array(X, chunks=10)).compute(),
    ...                  clf.predict_proba(X)))
    True
    """
    if _fitted(estimator).classes is None:
        raise AttributeError("predict_proba needs a classifier; this estimator is a regressor.")
    return _proba(estimator, X, intervention, inputs, None)


def _proba(estimator, X, intervention, inputs, labels):
    """Mean class probabilities per row, or with ``labels`` the most probable class."""
    pred = final_estimator(estimator).predictor_
    if "probs" in pred.info.outcome_stats:
        stat, reduce = "probs", _mean64
    else:
        stat, reduce = "sample", _ClassCounts(len(pred.classes))
    if labels is not None:
        return _point(estimator, X, intervention, inputs, stat, reduce, labels,
                      pred.classes.dtype)
    return _point(estimator, X, intervention, inputs, stat, reduce, _identity, np.float64,
                  width=len(pred.classes))


def predict_quantiles(estimator, X, q, intervention=None, **inputs):
    """``predict_quantiles`` for a Dask X: quantiles of the posterior predictive draws of
    each row, the same numbers as in memory.

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
    X : dask.dataframe.DataFrame or dask.array.Array
    q : float or array-like of float in [0, 1]
    intervention : dict, optional
    **inputs

    Returns
    -------
    dask.array.Array of shape (n_samples, n_quantiles), or a Dask DataFrame indexed like X
    with one column per quantile

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from skimpact import ImpactRegressor, predict_quantiles
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=300, num_samples=20, random_state=0).fit(X, y)
    >>> out = predict_quantiles(est, da.from_array(X, chunks=16), [0.1, 0.9])
    >>> bool(np.array_equal(out.compute(), predict_quantiles(est, X, [0.1, 0.9])))
    True
    """
    q = check_quantiles(q)
    return _quantiles(estimator, X, q, intervention, inputs, list(q))


def predict_interval(estimator, X, coverage=0.9, intervention=None, **inputs):
    """``predict_interval`` for a Dask X: the central interval of the posterior predictive
    draws of each row, columns ``lower`` and ``upper`` for a Dask DataFrame.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from skimpact import ImpactRegressor
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=300, num_samples=20, random_state=0).fit(X, y)
    >>> out = est.predict_interval(da.from_array(X, chunks=16), coverage=0.8)
    >>> bool(np.array_equal(out.compute(), est.predict_interval(X, coverage=0.8)))
    True
    """
    return _quantiles(estimator, X, check_coverage(coverage), intervention, inputs,
                      ["lower", "upper"])


def _quantiles(estimator, X, q, intervention, inputs, columns):
    dtype = np.quantile(np.zeros((2, 1), np.float32), q, axis=0).dtype
    return _point(estimator, X, intervention, inputs, "sample", _Quantiles(q), _identity,
                  dtype, width=len(q), columns=columns)


# --------------------------------------------------------------------- trees
class _RegionSink:
    """Writes one partition's batches into its rows of the shared Zarr arrays.

    Zarr chunks that the partition fills alone are written directly; its rows in chunks it
    shares with a neighbour are returned (``close()``), for one task per shared chunk to
    write, so no two tasks ever write the same chunk."""

    def __init__(self, arrays, n_chain, rows_of):
        self.arrays = arrays
        self.n_chain = n_chain
        self.offset, self.total = rows_of
        root = getattr(next(iter(arrays.values())).store, "root", None) if arrays else None
        self.root = None if root is None else os.fspath(root)

    def _check_alive(self):
        """A task still running after the run failed must not recreate the removed store."""
        if self.root is not None and not os.path.isdir(self.root):
            raise RuntimeError(f"the store {self.root} was removed: the run failed elsewhere")

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        self.row_axes = row_axes or {}
        self.n = next((s[len(s) + a] for k, s in shapes.items()
                       if (a := self.row_axes.get(k)) is not None), 0)
        self.pieces = {k: [] for k in shapes}

    def write(self, name, index, array):
        self._check_alive()
        array = np.asarray(array)
        array = array.reshape((self.n_chain, -1) + array.shape[1:])
        target = self.arrays[name]
        ax = self.row_axes.get(name)
        if index is Ellipsis or ax is None:
            if self.offset == 0:
                target[...] = array
            return
        axis = array.ndim + ax
        rows = index[axis - 1]
        start, stop = rows.start + self.offset, rows.stop + self.offset
        lo, hi = _own_rows(self.offset, self.n, self.total, target.chunks[axis])
        a, b = max(start, lo), min(stop, hi)
        if a < b:
            region = [slice(None)] * array.ndim
            region[axis] = slice(a, b)
            part = [slice(None)] * array.ndim
            part[axis] = slice(a - start, b - start)
            target[tuple(region)] = array[tuple(part)]
        for p, q in ((start, min(stop, lo)), (max(start, hi, lo), stop)):
            if p < q:
                part = [slice(None)] * array.ndim
                part[axis] = slice(p - start, q - start)
                # a copy: the caller may reuse ``array`` for the next batch
                self.pieces[name].append((p, array[tuple(part)].copy()))

    def close(self):
        return _Pieces(self.pieces)

    def abort(self):
        self.pieces = None


class _Pieces:
    """The rows a partition leaves to the tasks that write shared chunks: ``{name: [(first
    row, values), ...]}``."""

    def __init__(self, pieces):
        self.pieces = pieces


def _own_rows(offset, n, total, chunk):
    """The rows of a partition in Zarr chunks that no other partition touches."""
    lo = -(-offset // chunk) * chunk
    hi = total if offset + n == total else (offset + n) // chunk * chunk
    return lo, max(lo, hi)


def _shared_chunks(table, arrays, row_axes):
    """``(name, chunk start, chunk stop, partitions)`` for every chunk that holds rows of
    several partitions."""
    out = []
    for name, arr in arrays.items():
        ax = row_axes.get(name)
        if ax is None:
            continue
        size = arr.chunks[arr.ndim + ax]
        starts = sorted({b // size * size for b in table.offsets[1:-1] if b % size})
        for c0 in starts:
            c1 = min(c0 + size, table.total)
            parts = [i for i in range(len(table.lengths))
                     if table.offsets[i] < c1 and table.offsets[i + 1] > c0]
            out.append((name, c0, c1, parts))
    return out


def _stitch(array, name, axis, c0, c1, *pieces):
    """Write one shared chunk from the pieces of the partitions that hold its rows."""
    found = sorted((p for part in pieces for p in part.pieces[name] if c0 <= p[0] < c1),
                   key=lambda p: p[0])
    block = np.concatenate([values for _, values in found], axis=axis)
    if block.shape[axis] != c1 - c0:
        raise RuntimeError(f"rows {c0}:{c1} of {name!r} are not all written")
    region = [slice(None)] * block.ndim
    region[axis] = slice(c0, c1)
    array[tuple(region)] = block


def _tree_part(estimator, part, rows_of, key, job, arrays, n_chain):
    sink = _RegionSink(arrays, n_chain, rows_of)
    key = np.asarray(key)
    if not job["contrast"]:
        pred, scenario = fitted_scenario(estimator, part, job["intervention"], job["inputs"],
                                         return_sites=job["sites"],
                                         semantics=job["semantics"])
        return pred.predict(scenario, key, sink=sink, rows_of=rows_of)[0]
    return stream_effect(estimator, part, job["intervention"], job["baseline"], sink=sink,
                         kind=job["kind"], return_sites=job["sites"], key=key,
                         rows_of=rows_of, semantics=job["semantics"], **job["inputs"])[0]


def _write_tree(estimator, X, job, store, build_tree, group):
    """Plan on the first row, write the skeleton, fill it partition by partition."""
    if store is None:
        raise ValueError(
            "Draws for a Dask X are written to a Zarr store: pass store='out.zarr' (a path "
            "that does not exist yet). For a summary without storing draws use "
            "skimpact.streaming.effect_summary."
        )
    check_target(store)
    table = _Table(X)
    _check_call(estimator, table, job["intervention"], job.get("baseline"), job["inputs"])
    pred = final_estimator(estimator).predictor_
    key = _key(estimator)
    head_pred, head = fitted_scenario(estimator, table.head(), job["intervention"],
                                      job["inputs"], return_sites=job["sites"],
                                      outcome_stat=job["stat"], semantics=job["semantics"])
    plan = plan_prediction(head_pred, head, key, rows_of=(0, table.total))
    shapes = {}
    for k, s in plan.shapes.items():
        ax = plan.row_axes.get(k)
        shapes[k] = s if ax is None else s[:len(s) + ax] + (table.total,) + s[len(s) + ax + 1:]
    sink = ZarrSink(store, lambda arrays, axes: build_tree(arrays, axes, table.labels()),
                    group=group, n_chain=pred.n_chain)
    sink.allocate(shapes, plan.dtypes, row_axes=plan.row_axes, batch_size=plan.batch_size)
    try:
        est = _shipped(estimator)
        parts = [dask.delayed(_guarded)(_tree_part, est, part, rows_of, key, job, sink.arrays,
                                        pred.n_chain)
                 for part, rows_of in table.spans()]
        stitches = [
            dask.delayed(_guarded)(_stitch, sink.arrays[name], name,
                                   sink.arrays[name].ndim + plan.row_axes[name], c0, c1,
                                   *[parts[i] for i in which])
            for name, c0, c1, which in _shared_chunks(table, sink.arrays, plan.row_axes)
        ]
        _run(parts + stitches)
    except BaseException:
        sink.abort()
        raise
    return sink.close()


def _guarded(fn, *args):
    """Run ``fn``; a failure is returned (then raised by the caller once every task has
    stopped), so no task writes after the store is removed."""
    if any(isinstance(a, _Failure) for a in args):
        return next(a for a in args if isinstance(a, _Failure))
    try:
        return fn(*args)
    except Exception as exc:  # handed to the client, which raises it
        return _Failure(exc)


def counterfactual_predict(estimator, X, intervention, *, in_sample=False, return_sites=None,
                           store=None, semantics="counterfactual", **inputs):
    """:func:`skimpact.counterfactual_predict` for a Dask X, written to ``store``.

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
    X : dask.dataframe.DataFrame or dask.array.Array
    intervention : dict or None
        Scalars or callables of the factual value.
    return_sites : list of str, optional
    store : str, os.PathLike or zarr store
        Required: every partition writes its rows of the draws there (see the module
        notes on atomicity).
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        As in :func:`skimpact.counterfactual_predict`.
    **inputs
        Keyword inputs that do not vary by row.

    Returns
    -------
    xarray.DataTree
        Read lazily from ``store``; group ``predictions`` with the Dask index as row labels.

    Examples
    --------
    >>> import os, tempfile, dask.array as da, numpy as np
    >>> from skimpact import ImpactRegressor, counterfactual_predict
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=300, num_samples=20, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "cf.zarr")
    >>> tree = counterfactual_predict(est, da.from_array(X, chunks=15), {0: 0.0}, store=path)
    >>> in_memory = counterfactual_predict(est, X, {0: 0.0})
    >>> bool((tree["predictions"]["y"] == in_memory["predictions"]["y"]).all())
    True
    """
    _check_out_of_sample(in_sample)
    return_sites = check_site_names(return_sites, "return_sites")
    pred = _fitted(estimator)
    est = final_estimator(estimator)
    job = {"contrast": False, "stat": "sample", "intervention": intervention, "inputs": inputs,
           "sites": pred.return_sites(return_sites), "semantics": check_semantics(semantics)}
    posterior = est.posterior_["posterior"].to_dataset()
    info = pred.info

    def build(arrays, row_axes, labels):
        attrs = {**pred.attrs, "intervention": describe(intervention), "semantics": semantics}
        return predictive_tree(
            posterior, arrays,
            Labels(info.row_dim, labels, site_plates=info.site_plates,
                   feature_names=getattr(pred.layout, "feature_names_in_", None)),
            row_axes, in_sample=False, attrs=attrs)

    return _write_tree(estimator, X, job, store, build, "predictions")


def effect(estimator, X, intervention, baseline=None, *, kind=None, in_sample=False,
           return_sites=None, store=None, semantics="counterfactual", **inputs):
    """:func:`skimpact.effect` for a Dask X, written to ``store``.

    Each partition predicts both scenarios one batch at a time with the same keys and
    writes their difference (:func:`skimpact.blockwise.stream_effect`): neither scenario is
    stored.

    Returns
    -------
    xarray.DataTree
        Read lazily from ``store``, as :func:`skimpact.effect` with ``store=`` returns it.

    Examples
    --------
    >>> import os, tempfile, dask.array as da, numpy as np
    >>> from skimpact import ImpactRegressor, effect
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=300, num_samples=20, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "effect.zarr")
    >>> tree = effect(est, da.from_array(X, chunks=15), {0: 1.0}, {0: 0.0}, store=path)
    >>> bool((tree["predictions"]["y"] == effect(est, X, {0: 1.0}, {0: 0.0})["predictions"]
    ...       ["y"]).all())
    True
    """
    _check_out_of_sample(in_sample)
    return_sites = check_site_names(return_sites, "return_sites")
    pred, kind, stat, sites = effect_request(estimator, intervention, baseline, kind,
                                             return_sites)
    site = pred.info.outcome_site
    job = {"contrast": True, "kind": kind, "stat": stat, "intervention": intervention,
           "baseline": baseline, "inputs": inputs, "sites": pred.return_sites(sites),
           "semantics": check_semantics(semantics)}
    posterior = final_estimator(estimator).posterior_["posterior"].to_dataset()
    info = pred.info
    probs = kind == "probs" and pred.classes is not None

    def build(arrays, row_axes, labels):
        attrs = {**pred.attrs, "intervention": describe(intervention),
                 "baseline": describe(baseline), "kind": kind, "outcome": site,
                 "row_dim": info.row_dim, "semantics": semantics}
        return effect_tree(
            posterior, arrays,
            Labels(info.row_dim, labels, site_plates=info.site_plates,
                   feature_names=getattr(pred.layout, "feature_names_in_", None),
                   trailing={site: ("class",)} if probs else None,
                   dim_coords={"class": pred.classes} if probs else None),
            row_axes, in_sample=False, attrs=attrs)

    return _write_tree(estimator, X, job, store, build, "predictions")


# ------------------------------------------------------------------ summaries
def _summary_part(estimator, part, rows_of, key, job):
    labels, name, part = by_labels(part, job["by"], estimator)
    pred = final_estimator(estimator).predictor_
    sink = EffectSummarySink(
        pred.info.outcome_site, prob=job["prob"], interval=job["interval"], by=labels,
        by_name=name, per_row=job["per_row"],
        row_labels=part.index.to_numpy() if isinstance(part, pd.DataFrame) else
        np.arange(rows_of[0], rows_of[0] + len(part)),
        labels=outcome_labels(pred, job["kind"]))
    stream_effect(estimator, part, job["intervention"], job["baseline"], sink=sink,
                  kind=job["kind"], return_sites=(pred.info.outcome_site,),
                  key=np.asarray(key), rows_of=rows_of, semantics=job["semantics"],
                  **job["inputs"])
    return sink.row_frame() if job["per_row"] else sink


def effect_summary(estimator, X, intervention, baseline=None, *, kind=None, prob=0.94,
                   interval="hdi", by=None, per_row=False, semantics="counterfactual",
                   treated=None, lift=False, **inputs):
    """:func:`skimpact.streaming.effect_summary` for a Dask X.

    Every partition sums its rows' differences per draw (and per group of ``by``, a column
    of the Dask DataFrame) on a worker, one batch at a time; the client adds the partitions'
    sums and summarises the per-draw averages. Nothing is written. With ``per_row=True`` the
    result is a Dask DataFrame of per-row summaries, indexed like X.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.streaming import effect_summary
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=300, num_samples=20, random_state=0).fit(X, y)
    >>> on_dask = effect_summary(est, da.from_array(X, chunks=15), {0: 1.0}, {0: 0.0})
    >>> bool(np.allclose(on_dask, effect_summary(est, X, {0: 1.0}, {0: 0.0})))
    True
    """
    check_prob(prob)
    check_interval(interval)
    per_row = check_flag(per_row, "per_row")
    if check_flag(lift, "lift"):
        raise ValueError(
            "`lift` needs X in memory: with a Dask X, summarise the effect and the baseline "
            "outcome (skimpact.predict_quantiles or the estimator's predict under the "
            "baseline) and divide them."
        )
    if treated is not None:
        raise ValueError(
            "`treated` (the ATT and ATC rows) needs X in memory. With a Dask X, summarise by "
            "the treatment column instead: by='<treatment column>' gives the average effect "
            "among the treated (its row 1, the ATT) and among the controls (row 0, the ATC)."
        )
    table = _Table(X)
    _check_call(estimator, table, intervention, baseline, inputs)
    pred, kind, _, _ = effect_request(estimator, intervention, baseline, kind)
    if by is not None:
        if not table.frame or not isinstance(by, str) or by not in table.X.columns:
            raise ValueError(
                "With a Dask X, `by` must name a column of the Dask DataFrame (its labels "
                f"are read on each partition); got {by!r}"
                + (f"; the columns are {list(table.X.columns)}." if table.frame else
                   " with a Dask array X.")
            )
    job = {"intervention": intervention, "baseline": baseline, "inputs": inputs,
           "kind": kind, "prob": prob, "interval": interval, "by": by, "per_row": per_row,
           "semantics": check_semantics(semantics)}
    est, key = _shipped(estimator), _key(estimator)
    tasks = [dask.delayed(_guarded)(_summary_part, est, part, rows_of, key, job)
             for part, rows_of in table.spans()]
    if per_row:
        import dask.dataframe as dd

        columns = EffectSummarySink("", interval=interval).columns
        return dd.from_delayed([dask.delayed(_raised)(t) for t in tasks],
                               meta=pd.DataFrame({c: [] for c in columns}, dtype=float),
                               divisions=table.divisions, verify_meta=False)
    sinks = _run(tasks)
    total = sinks[0]
    for other in sinks[1:]:
        total.merge(other)
    if by is not None and not total.varies_by_row:
        warn_constant_effect()
    return total.frame(by=by is not None)


def _raised(result):
    if isinstance(result, _Failure):
        raise result.error
    return result


