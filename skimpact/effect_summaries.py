"""Summaries of effect draws: the statistics, their checks, and a sink that summarises in
one pass.

:func:`summary_stats` gives the mean, sd, interval and P(> 0) of draws per cell, for
:func:`skimpact.summarize_effect` (all draws in memory) and for :class:`EffectSummarySink`,
which keeps per-draw sums of the blocks of differences it receives (see
:mod:`skimpact.blockwise`), never the draws, so :func:`skimpact.streaming.effect_summary`
summarises any number of rows in bounded memory with the same numbers. The engine reduces
each block for the sink inside its compiled program (:class:`SummaryReduction`), so only
the sums leave the device.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from arviz_stats.base import array_stats

from ._sinks import draw_quantiles
from .arguments import check_prob
from .heterogeneity import spread_tolerance
from .schema import Labels

__all__ = [
    "EffectSummarySink", "SummaryReduction", "by_labels", "check_interval", "outcome_labels",
    "summary_stats",
]


INTERVALS = ("hdi", "quantile")


class EffectSummarySink:
    """Summaries of an effect from its blocks of per-draw differences, in one pass.

    Kept per draw: the sum of the differences over all rows (and over the rows of each
    group of ``by``) and the row counts, so the average effect of every draw is exact and
    the summaries over draws (mean, sd, interval, P(> 0)) are those of the full arrays.
    Per-row summaries (``per_row=True``) are computed from each row's draws as its block
    arrives. Memory: the draw count times the groups (and a group code per row with
    ``by``), plus the per-row table if asked.

    Parameters
    ----------
    var : str
        The site summarised; other outputs are ignored.
    prob : float, default=0.94
        Probability mass of the interval.
    interval : {"hdi", "quantile"}, default="hdi"
        ``"hdi"``: the highest-density interval of the draws (the narrowest interval
        holding ``prob`` of them, :func:`arviz_stats.base.array_stats.hdi`, as
        :func:`skimpact.summarize_effect`); ``"quantile"``: the equal-tailed interval
        between the ``(1 - prob) / 2`` and ``(1 + prob) / 2`` quantiles
        (:func:`numpy.quantile`, linear interpolation).
    by : array-like, optional
        A label per row of the rows this sink receives: summaries per label too.
    by_name : str, default="group"
        Index name of the per-label table.
    per_row : bool, default=False
        Also keep the summary of every row (its CATE).
    row_labels : array-like, optional
        Labels of the rows (index of the per-row table); default positions.
    labels : skimpact.schema.Labels, optional
        Names and labels of the site's dims beyond the row (e.g. ``class``); default
        ``<var>_dim_<i>`` with positions.
    subsets : skimpact.estimands.SubsetSums, optional
        Also sums per draw over these subsets of the rows (``ATE``, ``ATT``, ``ATC``): the
        average table has one row per subset instead of ``ATE`` alone.

    Attributes
    ----------
    reduction : SummaryReduction
        Set by :meth:`allocate`: how the engine reduces each block on the device, which
        it then hands to :meth:`add_reduced`; blocks given to :meth:`write` are reduced
        on the host alike.
    reduction_inputs : tuple of ndarray
        The per-row arrays the reduction reads (group codes, subset masks).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.effect_summaries import EffectSummarySink
    >>> draws = np.random.default_rng(0).normal(2.0, 0.1, size=(400, 6))
    >>> sink = EffectSummarySink("y", by=["a", "a", "b", "b", "b", "a"])
    >>> sink.allocate({"y": draws.shape}, {"y": draws.dtype}, row_axes={"y": -1})
    >>> sink.write("y", (slice(None), slice(0, 4)), draws[:, :4])
    >>> sink.write("y", (slice(None), slice(4, 6)), draws[:, 4:])
    >>> bool(np.isclose(sink.close().frame()["mean"].iloc[0], draws.mean()))
    True
    >>> sink.frame(by=True).index.tolist()
    ['a', 'b']
    """

    def __init__(self, var, *, prob=0.94, interval="hdi", by=None, by_name="group",
                 per_row=False, row_labels=None, labels=None, subsets=None):
        self.var = var
        self.subsets = subsets
        self.prob = check_prob(prob)
        self.interval = check_interval(interval)
        self.by = None if by is None else np.asarray(by)
        self.by_name = by_name
        self.per_row = per_row
        self.row_labels = None if row_labels is None else np.asarray(row_labels)
        self.labels = Labels("", []) if labels is None else labels

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        """Start the sums for ``var`` (draws, and the dims beyond the row), and say how the
        engine reduces each block on the device (:attr:`reduction`)."""
        if self.var not in shapes:
            raise KeyError(f"No output {self.var!r} to summarise; the outputs are {list(shapes)}.")
        shape = shapes[self.var]
        self.row_axis = (row_axes or {}).get(self.var)
        if self.row_axis is None:
            raise ValueError(f"{self.var!r} does not vary by row; there is no effect to average.")
        axis = len(shape) + self.row_axis
        self.n_draws, self.n_rows = shape[0], shape[axis]
        self.rest = tuple(s for i, s in enumerate(shape) if i not in (0, axis))
        names = [d for i, d in enumerate(self.labels.dims(self.var, shape[1:], self.row_axis))
                 if i != axis - 1]
        self.dims = [(d, self.labels.dim_coords.get(d, np.arange(size)))
                     for d, size in zip(names, self.rest)]
        if self.by is not None and self.by.shape != (self.n_rows,):
            raise ValueError(
                f"`by` needs one label per row ({self.n_rows}); got shape {self.by.shape}."
            )
        self.sums = np.zeros((self.n_draws,) + self.rest)
        self.lo = np.full((self.n_draws,) + self.rest, np.inf)
        self.hi = np.full((self.n_draws,) + self.rest, -np.inf)
        self.count = 0
        self.credible = np.zeros(self.rest)
        inputs, n_groups = [], 0
        if self.by is not None:
            codes, labels = pd.factorize(self.by, use_na_sentinel=False)
            self.codes, self.group_labels = codes.astype(np.int32), pd.Index(labels)
            self.group_rows = np.zeros(len(labels), np.int64)
            self.group_sums = np.zeros((len(labels), self.n_draws) + self.rest)
            self.group_credible = np.zeros((len(labels),) + self.rest)
            inputs.append(self.codes)
            n_groups = 1 << max(0, len(labels) - 1).bit_length()  # few shapes, few programs
        if self.subsets is not None:
            inputs.append(np.stack(list(self.subsets.masks.values()), 1))
        if self.per_row:
            self.rows = {c: np.full((self.n_rows,) + self.rest, np.nan) for c in self.columns}
        self.reduction = SummaryReduction(
            self.var, self.row_axis, n_groups,
            0 if self.subsets is None else len(self.subsets.masks),
            (self.interval, self.prob) if self.per_row else ())
        self.reduction_inputs = tuple(inputs)

    @property
    def columns(self):
        """Column names of the tables."""
        tag = "hdi" if self.interval == "hdi" else "eti"
        return ["mean", "sd", f"{tag}_lower", f"{tag}_upper", "prob_positive"]

    def write(self, name, index, array):
        """Add one block of differences (draw axis first) to the sums, reduced on the host
        as :class:`SummaryReduction` reduces it on the device."""
        if name != self.var:
            return
        arr = np.asarray(array)
        axis = arr.ndim + self.row_axis
        rows = index[axis]
        arr = np.moveaxis(arr, axis, 1)
        reduced = {"sum": arr.sum(1, dtype=np.float64), "lo": arr.min(1), "hi": arr.max(1),
                   "positive": (arr > 0).sum(0)}
        if self.by is not None:
            codes = self.codes[rows]
            present = np.unique(codes)
            reduced["groups"] = np.stack(
                [arr[:, codes == g].sum(1, dtype=np.float64) for g in present])
        if self.subsets is not None:
            reduced["subsets"] = self.subsets.block_sums(arr, rows)
        if self.per_row:
            values = np.asarray(arr, dtype=np.float64).reshape(arr.shape[0], -1)
            stats = summary_stats(values, self.prob, self.interval)[:4]
            reduced.update((f"row_{i}", v.reshape(arr.shape[1:])) for i, v in enumerate(stats))
        self._add(reduced, rows)

    def add_reduced(self, reduced, batch_rows, rows):
        """Add one block reduced on the device by :attr:`reduction`: its per-row results
        are at ``batch_rows`` of the block, for the sink's ``rows``."""
        reduced = {k: (v[batch_rows] if k == "positive" or k.startswith("row_") else v)
                   for k, v in reduced.items()}
        if self.by is not None:
            reduced["groups"] = reduced["groups"][np.unique(self.codes[rows])]
        self._add(reduced, rows)

    def _add(self, reduced, rows):
        """Add a block's reductions (as :class:`SummaryReduction` names them) for ``rows``."""
        self.sums += reduced["sum"]
        self.lo = np.minimum(self.lo, reduced["lo"])
        self.hi = np.maximum(self.hi, reduced["hi"])
        self.count += len(reduced["positive"])
        credible = reduced["positive"] / self.n_draws >= self.prob  # (rows,) + rest
        self.credible = self.credible + credible.sum(0)
        if self.subsets is not None:
            self.subsets.add(reduced["subsets"], rows, credible)
        if self.by is not None:
            codes = self.codes[rows]
            present = np.unique(codes)
            self.group_sums[present] += reduced["groups"]
            self.group_rows += np.bincount(codes, minlength=len(self.group_rows))
            np.add.at(self.group_credible, codes, credible)
        if self.per_row:
            values = [reduced[f"row_{i}"] for i in range(4)]
            values.append(reduced["positive"] / self.n_draws)
            for c, v in zip(self.columns, values):
                self.rows[c][rows] = v

    def merge(self, other):
        """Add the sums of ``other`` (the same site, other rows: another partition)."""
        self.sums = self.sums + other.sums
        self.lo, self.hi = np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi)
        self.count += other.count
        self.credible = self.credible + other.credible
        if self.by is not None:
            labels = self.group_labels.append(other.group_labels).unique()
            at = labels.get_indexer(other.group_labels)
            for name in ("group_rows", "group_sums", "group_credible"):
                mine = getattr(self, name)
                total = np.zeros((len(labels),) + mine.shape[1:], mine.dtype)
                total[:len(mine)] = mine
                total[at] += getattr(other, name)
                setattr(self, name, total)
            self.group_labels = labels
        return self

    def close(self):
        """Return the sink itself: its tables are :meth:`frame` and :meth:`row_frame`."""
        return self

    @property
    def varies_by_row(self):
        """Whether the effect differs between the rows received in at least one draw, as
        :func:`skimpact.heterogeneity.effect_varies_by_row` of the full draws (from each draw's
        smallest and largest row effect)."""
        if self.count < 2:
            return False
        return not bool(np.all(self.hi - self.lo <= spread_tolerance(self.lo, self.hi)))

    def frame(self, by=False):
        """The average effect (``by=False``) or the average per label of ``by``.

        Returns
        -------
        pandas.DataFrame
            Columns ``mean``, ``sd``, the interval bounds (``hdi_lower`` and ``hdi_upper``,
            or ``eti_lower`` and ``eti_upper``), ``prob_positive`` and
            ``credibly_positive`` (the share of the rows whose own P(effect > 0) is at
            least ``prob``, as :func:`skimpact.summarize_effect`); indexed by ``"ATE"``
            (level ``effect``) or the labels, with a level per dim in ``dims``.
        """
        draws, share, levels = self.averages(by)
        table = self._table(draws.reshape(draws.shape[0], -1), levels)
        table["credibly_positive"] = share.reshape(-1)
        return table

    def averages(self, by=False):
        """Each table row's average per draw, as :meth:`frame` summarises them.

        Returns
        -------
        draws : ndarray of shape (n_draws, n_table_rows, ...)
        share : ndarray
            Each table row's share of credibly positive rows.
        levels : list of (str, ndarray)
            The name and labels of the table's first index level.
        """
        if not by and self.subsets is not None:
            averages, shares = self.subsets.averages(), self.subsets.credible_shares()
            return (np.stack(list(averages.values()), 1), np.stack(list(shares.values())),
                    [("effect", np.array(list(averages)))])
        if not by:
            return ((self.sums / self.count)[:, None], (self.credible / self.count)[None],
                    [("effect", np.array(["ATE"]))])
        rows = self.group_rows.reshape((-1,) + (1,) * len(self.rest))
        return (np.moveaxis(self.group_sums / rows[:, None], 0, 1), self.group_credible / rows,
                [(self.by_name, self.group_labels.to_numpy())])

    def lift(self, baseline, by=False):
        """Columns ``lift_mean``, ``lift_sd`` and the lift's interval bounds: each table
        row's average effect over its average ``baseline`` outcome, per draw.

        Parameters
        ----------
        baseline : EffectSummarySink
            The same rows' baseline outcome (not a difference), summed alike.
        by : bool
            As in :meth:`frame`.
        """
        num, den = self.averages(by)[0], baseline.averages(by)[0]
        if (den == 0).any():
            raise ValueError(
                "The baseline outcome averages to exactly 0 in some draws, so the lift "
                "(effect / baseline) is undefined there; report the effect itself."
            )
        ratio = (num / den).reshape(num.shape[0], -1)
        stats = summary_stats(ratio, self.prob, self.interval)
        return {f"lift_{c}": v for c, v in zip(self.columns[:4], stats[:4])}

    def row_frame(self):
        """Summary of each row's effect (its CATE), indexed by the row labels."""
        labels = np.arange(self.n_rows) if self.row_labels is None else self.row_labels
        values = {c: self.rows[c].reshape(-1) for c in self.columns}
        return self._with_attrs(pd.DataFrame(
            values, index=self._index([(self.labels.row_dim or None, labels)])))

    def _table(self, draws, levels):
        stats = summary_stats(draws, self.prob, self.interval)
        return self._with_attrs(
            pd.DataFrame(dict(zip(self.columns, stats)), index=self._index(levels)))

    def _with_attrs(self, table):
        table.attrs["effect_varies_by_row"] = self.varies_by_row
        return table

    def _index(self, levels):
        levels = levels + [(name, np.asarray(values)) for name, values in self.dims]
        if len(levels) == 1:
            return pd.Index(levels[0][1], name=levels[0][0])
        return pd.MultiIndex.from_product([v for _, v in levels], names=[n for n, _ in levels])


@dataclass(frozen=True)
class SummaryReduction:
    """What :class:`EffectSummarySink` keeps of a block, computed on the device.

    The engine applies it inside its compiled program (see
    :meth:`skimpact.predictive.PredictiveEngine.run`), so a block's draws never leave the
    device; being hashable, it is part of the compiled program's cache key. Called with a
    block's outputs, the mask of its rows and the block's rows of the sink's
    ``reduction_inputs``, it returns a dict: ``sum``, ``lo`` and ``hi``, each draw's sum,
    least and largest value over the rows (``(draws,) + rest``); ``positive``, each row's
    count of positive draws (``(rows,) + rest``); ``groups`` and ``subsets``, each
    group's and subset's sums per draw (``(n, draws) + rest``); ``row_0`` to ``row_3``,
    each row's mean, sd (ddof 1), lower and upper bound. They are what the sink computes
    on the host from the whole block (:meth:`EffectSummarySink.write`), up to float32
    round-off: sums over a block's rows are float32.

    Parameters
    ----------
    var : str
        The output summarised.
    row_axis : int
        Its row axis (negative).
    n_groups : int, default=0
        Groups of ``by`` summed (a power of two at least their number, so few programs
        serve any number of groups); the first input then holds each row's group code.
    n_subsets : int, default=0
        Subsets of the rows summed (ATE, ATT, ATC); the next input then holds one bool
        per row and subset.
    per_row : tuple, default=()
        ``(interval, prob)``: also each row's mean, sd, and interval over the draws.
    """

    var: str
    row_axis: int
    n_groups: int = 0
    n_subsets: int = 0
    per_row: tuple = ()

    def __call__(self, outputs, mask, *inputs):
        arr = outputs[self.var]
        arr = jnp.moveaxis(arr, arr.ndim + self.row_axis, 1)  # (draws, rows) + rest
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            arr = arr.astype(jnp.float32)
        rows = mask.reshape(mask.shape + (1,) * (arr.ndim - 2))

        def masked(arr):
            return (jnp.where(rows, arr, 0).sum(1), jnp.where(rows, arr, jnp.inf).min(1),
                    jnp.where(rows, arr, -jnp.inf).max(1))

        # every batch but a table's first and last is full: it reads the draws once, where
        # the masks would make three passes
        per_draw = jax.lax.cond(mask.all(), lambda a: (a.sum(1), a.min(1), a.max(1)),
                                masked, arr)
        out = dict(zip(("sum", "lo", "hi"), per_draw))
        out["positive"] = (arr > 0).sum(0, dtype=jnp.int32)
        inputs = list(inputs)
        if self.n_groups:
            codes = jnp.where(mask, inputs.pop(0), self.n_groups)  # padding: dropped
            out["groups"] = jax.ops.segment_sum(jnp.moveaxis(arr, 1, 0), codes, self.n_groups)
        if self.n_subsets:
            subsets = inputs.pop(0) & mask[:, None]
            out["subsets"] = jnp.stack([
                jnp.where(subsets[:, i].reshape(rows.shape), arr, 0).sum(1)
                for i in range(self.n_subsets)])
        if self.per_row:
            out.update((f"row_{i}", v) for i, v in enumerate(_row_stats(arr, *self.per_row)))
        return out


def _row_stats(arr, interval, prob):
    """Each row's mean, sd (ddof 1) and interval over the draws (axis 0) of ``arr``, as
    :func:`summary_stats` computes them."""
    x = arr.astype(jnp.float32)
    n = x.shape[0]
    mean = x.mean(0)
    sd = jnp.sqrt(jnp.square(x - mean).sum(0) / (n - 1))
    x = jnp.sort(x, axis=0)
    if interval == "quantile":
        return (mean, sd, *(_quantile(x, q) for q in ((1 - prob) / 2, (1 + prob) / 2)))
    # the narrowest window of k + 1 sorted draws (arviz's nearest HDI), compared exactly:
    # each float32 width plus its round-off (Knuth's two-sum), the first of equal ones
    k = min(int(np.floor(prob * n)), n - 1)
    upper, lower = x[k:], x[:n - k]
    width = upper - lower
    back = width - upper
    error = (upper - (width - back)) + (-lower - back)
    narrowest = width == width.min(0)
    error = jnp.where(narrowest, error, jnp.inf)
    first = jnp.argmax(narrowest & (error == error.min(0)), axis=0)[None]
    return (mean, sd, jnp.take_along_axis(x, first, 0)[0],
            jnp.take_along_axis(x, first + k, 0)[0])


def _quantile(x, q):
    """The ``q`` quantile of the sorted ``x`` along axis 0, as :func:`numpy.quantile`
    interpolates it (linear)."""
    at = q * (x.shape[0] - 1)
    i = int(np.floor(at))
    t = at - i
    a, b = x[i], x[min(i + 1, x.shape[0] - 1)]
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def summary_stats(draws, prob, interval="hdi"):
    """Mean, sd (ddof 1), interval bounds and P(> 0) of ``(draw, cell)`` draws, per cell.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.effect_summaries import summary_stats
    >>> mean, sd, lo, hi, pos = summary_stats(np.arange(100.0)[:, None], 0.9, "quantile")
    >>> [round(float(v[0]), 2) for v in (mean, lo, hi, pos)]
    [49.5, 4.95, 94.05, 0.99]
    """
    if interval == "hdi":
        bounds = array_stats.hdi(draws, prob, axis=0)
        lower, upper = bounds[..., 0], bounds[..., 1]
    else:
        lower, upper = draw_quantiles(draws, [(1 - prob) / 2, (1 + prob) / 2])
    return draws.mean(0), draws.std(0, ddof=1), lower, upper, (draws > 0).mean(0)


def check_interval(interval):
    """``interval`` if it is ``"hdi"`` or ``"quantile"``, else a ValueError that says so."""
    if interval not in INTERVALS:
        raise ValueError(
            f"`interval` must be 'hdi' (highest-density) or 'quantile' (equal-tailed); got "
            f"{interval!r}."
        )
    return interval


def by_labels(X, by, estimator):
    """Split ``by`` (a column label of a DataFrame X, or one label per row) into the labels,
    their name, and X without that column when the model does not take it.

    Examples
    --------
    >>> import pandas as pd
    >>> from skimpact.effect_summaries import by_labels
    >>> X = pd.DataFrame({"x": [1.0, 2.0], "g": ["a", "b"]})
    >>> labels, name, rest = by_labels(X, "g", None)
    >>> labels.tolist(), name, list(rest.columns)
    (['a', 'b'], 'g', ['x'])
    """
    if by is None:
        return None, "group", X
    if isinstance(X, pd.DataFrame) and isinstance(by, str):
        if by not in X.columns:
            raise KeyError(
                f"`by={by!r}` is neither a column of X nor one label per row; X has columns "
                f"{list(X.columns)}."
            )
        labels = X[by].to_numpy()
        if by not in model_columns(estimator):
            X = X.drop(columns=[by])
        return labels, by, X
    name = by.name if isinstance(by, pd.Series) and by.name is not None else "group"
    return np.asarray(by), name, X


def model_columns(estimator):
    """Columns of X that ``estimator`` takes (features and ``inputs=`` columns), or every
    column when it was fitted without names."""
    if estimator is None:
        return ()
    names = list(getattr(estimator, "feature_names_in_", []))
    last = estimator[-1] if hasattr(estimator, "steps") else estimator
    return names + list(getattr(last, "input_names_", ()))


def outcome_labels(pred, kind):
    """How to name the outcome's dims in an effect of ``kind``: the classes for
    ``kind="probs"`` of a classifier, else as the output schema names them.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.effect_summaries import outcome_labels
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=100, num_samples=10, random_state=0).fit(X, y)
    >>> outcome_labels(est.predictor_, "mean").row_dim
    'obs'
    """
    site = pred.info.outcome_site
    probs = kind == "probs" and pred.classes is not None
    return Labels(pred.info.row_dim, [], site_plates=pred.info.site_plates,
                  trailing={site: ("class",)} if probs else None,
                  dim_coords={"class": pred.classes} if probs else None)
