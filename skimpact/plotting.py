"""Plots of effects, predictive checks and inference diagnostics (matplotlib).

Every function draws on the axes given as ``ax=`` (or ``axes=``), creating a figure when
none is given, and returns what it drew on, so plots compose into larger figures. The
functions need the ``plot`` extra (``pip install skimpact[plot]``).

:func:`render_model` draws the model's graph and needs the ``graph`` extra.
"""

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats

from .convergence import draws_by_chain, loss_window
from .posterior import NUMPYRO_LOCK
from .schema import PREDICTIVE_GROUPS
from .posterior_summary import row_dims
from .uplift import qini_curve, uplift_curve

__all__ = [
    "plot_effect",
    "plot_effect_by_feature",
    "plot_loss",
    "plot_ppc",
    "plot_qini",
    "plot_ranks",
    "plot_sensitivity",
    "plot_trace",
    "plot_uplift",
    "render_model",
]


def plot_effect(effects, *, var=None, kind="forest", prob=0.94, ax=None):
    """Average effect across scenarios: a forest of HDIs or overlaid distributions.

    Parameters
    ----------
    effects : xarray.DataTree or dict of str to xarray.DataTree
        Output of :func:`skimpact.effect` / :func:`skimpact.estimate_effect`; a dict
        labels several scenarios.
    var : str, optional
        Variable to plot; default the first of each tree's effect group.
    kind : {"forest", "dist"}, default="forest"
        ``"forest"``: posterior mean and ``prob`` HDI of the average effect per scenario;
        ``"dist"``: its density per scenario.
    prob : float, default=0.94
        Probability mass of the HDI.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if kind not in ("forest", "dist"):
        raise ValueError(f"`kind` must be 'forest' or 'dist'; got {kind!r}.")
    if not isinstance(effects, dict):
        effects = {"effect": effects}
    ax = _axes(ax)
    names = list(effects)
    for i, name in enumerate(names):
        draws = _effect_draws(effects[name], var).mean(axis=1)
        if kind == "forest":
            lo, hi = array_stats.hdi(draws, prob)
            y = len(names) - 1 - i
            ax.hlines(y, lo, hi, color=f"C{i}", linewidth=2.5)
            ax.plot(draws.mean(), y, "o", color=f"C{i}")
        else:
            grid, density = _density(draws)
            ax.plot(grid, density, color=f"C{i}", label=name)
            ax.fill_between(grid, density, color=f"C{i}", alpha=0.2)
    if kind == "forest":
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names[::-1])
        ax.set_xlabel(f"average effect (mean and {prob:.0%} HDI)")
    else:
        ax.set_xlabel("average effect")
        ax.set_ylabel("density")
        ax.legend()
    ax.axvline(0.0, color="0.5", linestyle=":", linewidth=1)
    return ax


def plot_effect_by_feature(effect, x, *, var=None, prob=0.94, bins=10, kind="auto",
                           label=None, ax=None):
    """Each row's effect against a feature, with binned (or per-category) average effects.

    Every row is a point at its posterior mean effect. For a numeric feature the rows are
    cut into ``bins`` bins of about equal counts (quantiles of ``x``); the line joins each
    bin's average effect (posterior mean) at the bin's average ``x``, and the band is the
    ``prob`` HDI of that average. For a categorical feature each category gets a strip of
    its rows' points (jittered) and its average effect with the HDI as an error bar.

    Parameters
    ----------
    effect : xarray.DataTree
        Output of :func:`skimpact.effect` with a row dim.
    x : array-like of shape (n_rows,)
        The feature's value per row, in the tree's row order (e.g. ``X["age"]``).
    var : str, optional
        Variable to plot; default the first of the effect group.
    prob : float, default=0.94
        Probability mass of the HDIs of the bin and category averages.
    bins : int, default=10
        Number of bins of a numeric feature (fewer when ``x`` has fewer distinct
        quantiles).
    kind : {"auto", "numeric", "categorical"}, default="auto"
        ``"auto"``: categorical for strings, booleans and pandas categoricals, numeric
        otherwise. Pass ``"categorical"`` for a numeric code with a few values.
    label : str, optional
        Axis label of the feature; default the name of a pandas Series ``x``.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, xarray as xr
    >>> from skimpact.plotting import plot_effect_by_feature
    >>> x = np.linspace(0, 1, 200)
    >>> draws = 2 * x + np.random.default_rng(0).normal(0, 0.1, (1, 100, 200))
    >>> tree = xr.DataTree.from_dict(
    ...     {"/predictions": xr.Dataset({"y": (("chain", "draw", "obs"), draws)})})
    >>> ax = plot_effect_by_feature(tree, x, bins=5)
    >>> len(ax.lines[0].get_xdata())   # one point per bin
    5
    """
    if kind not in ("auto", "numeric", "categorical"):
        raise ValueError(f"`kind` must be 'auto', 'numeric' or 'categorical'; got {kind!r}.")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"`bins` must be a positive integer; got {bins!r}.")
    draws = _effect_draws(effect, var)
    values = np.asarray(x)
    if values.shape != (draws.shape[1],):
        raise ValueError(
            f"`x` needs one value per row of the effect ({draws.shape[1]}); got shape "
            f"{values.shape}."
        )
    if kind == "auto":
        kind = "categorical" if _is_categorical(x, values) else "numeric"
    ax = _axes(ax)
    if kind == "categorical":
        _by_category(ax, draws, x, values, prob)
    else:
        _by_bin(ax, draws, values, prob, bins)
    ax.axhline(0.0, color="0.5", linestyle=":", linewidth=1)
    ax.set_xlabel(label or getattr(x, "name", None) or "feature")
    ax.set_ylabel("effect")
    ax.legend()
    return ax


def plot_ppc(predictive, observed, *, var=None, num_draws=50, seed=0, ax=None):
    """Posterior (or prior) predictive check: simulated outcome distributions over the
    observed one.

    Parameters
    ----------
    predictive : xarray.DataTree
        Output of ``sample_posterior_predictive`` (any of the groups
        ``posterior_predictive``, ``predictions``, ``prior_predictive``).
    observed : array-like of shape (n_rows,)
        The observed outcome for the same rows.
    var : str, optional
        Outcome variable; default the first of the predictive group.
    num_draws : int, default=50
        Simulated data sets drawn (chosen at random with ``seed``).
    seed : int, default=0
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    group = next(
        (g for g in ("posterior_predictive", "predictions", "prior_predictive")
         if g in predictive.children),
        None,
    )
    if group is None:
        raise ValueError(
            f"The tree has no predictive group; it has {list(predictive.children)}."
        )
    ds = predictive[group].to_dataset()
    da = ds[var or next(iter(ds.data_vars))]
    sims = np.asarray(da.values, dtype=float).reshape(da.sizes["chain"] * da.sizes["draw"], -1)
    obs = np.asarray(observed, dtype=float).ravel()
    if obs.shape[0] != sims.shape[1]:
        raise ValueError(
            f"`observed` has {obs.shape[0]} values; the predictions have {sims.shape[1]} rows."
        )
    rng = np.random.default_rng(seed)
    picks = rng.choice(sims.shape[0], size=min(num_draws, sims.shape[0]), replace=False)
    ax = _axes(ax)
    discrete = np.all(np.mod(sims[picks], 1) == 0) and np.all(np.mod(obs, 1) == 0)
    if discrete:
        values = np.unique(np.concatenate([obs, sims[picks].ravel()]))
        freq = np.stack([(sims[picks] == v).mean(1) for v in values], 1)
        for row in freq:
            ax.plot(values, row, "o", color="C0", alpha=0.15)
        ax.plot(values, [(obs == v).mean() for v in values], "s", color="k", label="observed")
        ax.set_ylabel("relative frequency")
    else:
        for i, p in enumerate(picks):
            grid, density = _density(sims[p])
            ax.plot(grid, density, color="C0", alpha=0.15,
                    label=f"{group} ({len(picks)} draws)" if i == 0 else None)
        grid, density = _density(obs)
        ax.plot(grid, density, color="k", linewidth=2, label="observed")
        ax.set_ylabel("density")
    ax.set_xlabel(da.name)
    ax.legend()
    return ax


def plot_ranks(result, *, bins=10, ax=None):
    """Rank histogram of a calibration: where the true effect fell among the draws.

    With calibrated intervals the ranks are uniform: bars lie within the grey band, about
    the central 99% of a bar's count under uniformity (binomial, normal approximation). A U shape means
    intervals too narrow, a hump too wide, a slope a biased effect.

    Parameters
    ----------
    result : skimpact.calibration.CalibrationResult
        Output of :func:`skimpact.calibration.calibrate_effect`.
    bins : int, default=10
        Bars over the rank's range, ``0 .. n_draws``.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import pandas as pd
    >>> from skimpact.calibration import CalibrationResult
    >>> from skimpact.plotting import plot_ranks
    >>> table = pd.DataFrame({"rank": [10, 250, 480, 90], "n_draws": 500})
    >>> ax = plot_ranks(CalibrationResult(table, pd.Series(dtype=float)), bins=5)
    >>> [int(p.get_height()) for p in ax.patches[-5:]]     # the bars, after the band
    [2, 0, 1, 0, 1]
    """
    table = result.table
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"`bins` must be a positive integer; got {bins!r}.")
    if table.empty:
        raise ValueError("The calibration has no simulations to plot.")
    n_draws = int(table["n_draws"].max())
    fractions = table["rank"].to_numpy(dtype=float) / n_draws
    ax = _axes(ax)
    n = len(fractions)
    half = 2.576 * np.sqrt(n * (1.0 / bins) * (1 - 1.0 / bins))
    ax.axhspan(max(0.0, n / bins - half), n / bins + half, color="0.85", zorder=0)
    ax.axhline(n / bins, color="0.5", linewidth=1)
    ax.hist(fractions, bins=np.linspace(0, 1, bins + 1), color="C0", edgecolor="white")
    ax.set_xlabel("rank of the true effect among the draws (fraction)")
    ax.set_ylabel("simulations")
    return ax


def plot_loss(estimator, *, smooth=None, log=False, ax=None):
    """The SVI / MAP loss (negative ELBO) per step with its moving average.

    Parameters
    ----------
    estimator : fitted ImpactRegressor or ImpactClassifier, or dict
        A fitted estimator with ``inference="svi"`` or ``"map"``, or its ``diagnostics_``.
    smooth : int, optional
        Moving-average window; default the window of the convergence check.
    log : bool, default=False
        Log-scale the step axis.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    diag = estimator if isinstance(estimator, dict) else getattr(estimator, "diagnostics_", {})
    if "loss" not in diag:
        raise ValueError("No loss trace: the loss is recorded by SVI and MAP fits, not NUTS.")
    loss = np.asarray(diag["loss"], dtype=float)
    window = int(smooth or diag.get("elbo_window") or loss_window(len(loss)))
    window = max(1, min(window, len(loss)))
    steps = np.arange(1, len(loss) + 1)
    ax = _axes(ax)
    ax.plot(steps, loss, color="C0", alpha=0.4, linewidth=0.8, label="loss")
    smoothed = np.convolve(loss, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1 :], smoothed, color="C1", label=f"moving average ({window})")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative ELBO)")
    ax.legend()
    return ax


def plot_trace(estimator, var_names=None, *, axes=None):
    """Trace plot of NUTS draws: per-chain densities (left) and draws by iteration (right).

    Parameters
    ----------
    estimator : fitted estimator or xarray.DataTree
        A fitted estimator (its ``posterior_``) or a tree with a ``posterior`` group.
    var_names : list of str, optional
        Parameters to plot; default those without a row dim. A vector parameter draws one
        line per element and chain.
    axes : ndarray of matplotlib.axes.Axes of shape (len(var_names), 2), optional

    Returns
    -------
    ndarray of matplotlib.axes.Axes
        Shape ``(len(var_names), 2)``.
    """
    tree = getattr(estimator, "posterior_", estimator)
    post = tree["posterior"].to_dataset()
    if var_names is None:
        rows = row_dims(post)
        var_names = [k for k, da in post.data_vars.items() if not set(da.dims) & rows]
    if not var_names:
        raise ValueError("No parameters to plot.")
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(len(var_names), 2, figsize=(9, 2.2 * len(var_names)),
                               layout="constrained",
                               squeeze=False)
    axes = np.asarray(axes).reshape(len(var_names), 2)
    for row, name in zip(axes, var_names):
        values = draws_by_chain(post[name])
        for c in range(values.shape[0]):
            for k in range(values.shape[2]):
                grid, density = _density(values[c, :, k])
                row[0].plot(grid, density, color=f"C{c}", alpha=0.8)
                row[1].plot(values[c, :, k], color=f"C{c}", alpha=0.6, linewidth=0.7)
        row[0].set_title(name)
        row[1].set_title(name)
        row[1].set_xlabel("draw")
    return axes


def render_model(estimator, X, y=None, *, filename=None, render_distributions=False,
                 render_params=False, **inputs):
    """Draw the fitted model's graph with :func:`numpyro.render_model`.

    Parameters
    ----------
    estimator : fitted ImpactRegressor or ImpactClassifier
    X : array-like or DataFrame
        Rows to run the model on (a few are enough).
    y : array-like, optional
        Outcome; when given, the outcome site is drawn as observed.
    filename : str, optional
        Also write the image there (the format follows the suffix; needs the graphviz
        programs, not only the Python package).
    render_distributions : bool, default=False
        Label sites with their distributions.
    render_params : bool, default=False
        Also draw ``numpyro.param`` sites.
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    graphviz.Digraph
    """
    try:
        import graphviz  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "render_model needs the graphviz Python package: pip install 'skimpact[graph]' "
            "(and the graphviz programs to write an image file)."
        ) from exc
    import numpyro

    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "predictor_")
    pred = estimator.predictor_
    rows = pred.scenario(X, inputs).rows
    kwargs = pred.program.inputs(rows.inputs)
    if y is not None:
        kwargs[pred.program.outcome] = pred.encode_outcome(y, rows.n)
    with NUMPYRO_LOCK:
        return numpyro.render_model(
            pred.program.model,
            model_args=(rows.X,),
            model_kwargs=kwargs,
            filename=filename,
            render_distributions=render_distributions,
            render_params=render_params,
        )


def plot_sensitivity(result, *, ax=None):
    """The average effect against the strength of a simulated unobserved confounder.

    Parameters
    ----------
    result : skimpact.refute.Sensitivity
        Output of :func:`skimpact.sensitivity`.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The posterior mean and interval per strength, a line at 0, the robustness value
        (dashed) and the observed columns' strengths (dotted, labelled).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skimpact.plotting import plot_sensitivity
    >>> from skimpact.refute import Sensitivity
    >>> table = pd.DataFrame({"mean": [1.0, 0.5], "hdi_lower": [0.8, -0.1],
    ...                       "hdi_upper": [1.2, 1.1]}, index=pd.Index([0.0, 0.5], name="strength"))
    >>> result = Sensitivity(table, 0.4, pd.Series({"w": 0.2}), "rule", None)
    >>> plot_sensitivity(result).get_xlabel()
    'confounder strength'
    """
    ax = _axes(ax)
    table = result.table
    s = table.index.to_numpy(dtype=float)
    ax.fill_between(s, table["hdi_lower"], table["hdi_upper"], color="C0", alpha=0.3,
                    label="interval")
    ax.plot(s, table["mean"], "o-", color="C0", label="mean effect")
    ax.axhline(0.0, color="k", linewidth=0.8)
    if np.isfinite(result.robustness_value):
        ax.axvline(result.robustness_value, color="C3", linestyle="--",
                   label=f"robustness value {result.robustness_value:.2f}")
    for name, strength in result.benchmarks.items():
        ax.axvline(strength, color="0.5", linestyle=":")
        ax.annotate(str(name), (strength, 1.0), xycoords=("data", "axes fraction"),
                    rotation=90, va="top", ha="right", fontsize="small")
    ax.set_xlabel("confounder strength")
    ax.set_ylabel("average effect")
    ax.legend(loc="best")
    return ax


# ------------------------------------------------------------------------------ helpers
def plot_qini(effect, *, var=None, prob=0.94, n_points=101, ax=None):
    """Qini curve of targeting rows by their posterior mean effect, with its band.

    The posterior mean of the cumulative gain per row of the population
    (:func:`skimpact.uplift.qini_curve`), its ``prob`` HDI at each fraction of rows treated,
    and the random-targeting line.

    Parameters
    ----------
    effect : xarray.DataTree or array-like of shape (n_draws, n_rows)
        Output of :func:`skimpact.effect`, or its draws.
    var : str, optional
    prob : float, default=0.94
    n_points : int, default=101
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    table = qini_curve(effect, var=var, prob=prob, n_points=n_points)
    return _curve_plot(table, prob, "gain per row (cumulative)", _axes(ax), random=True)


def plot_uplift(effect, *, var=None, prob=0.94, n_points=101, ax=None):
    """Uplift curve: the average effect among the rows treated, with its band.

    Parameters and returns as :func:`plot_qini` (:func:`skimpact.uplift.uplift_curve`).
    """
    table = uplift_curve(effect, var=var, prob=prob, n_points=n_points)
    return _curve_plot(table, prob, "average effect of the rows treated", _axes(ax))


def _curve_plot(table, prob, ylabel, ax, random=False):
    x = table.index.to_numpy()
    ax.fill_between(x, table["hdi_lower"], table["hdi_upper"], color="C0", alpha=0.25,
                    label=f"{prob:.0%} HDI")
    ax.plot(x, table["mean"], color="C0", label="posterior mean")
    if random:
        ax.plot(x, table["random_mean"], color="0.4", linestyle="--", label="random targeting")
    ax.set_xlabel("fraction of rows treated (by posterior mean effect)")
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def _is_categorical(x, values):
    dtype = getattr(x, "dtype", values.dtype)
    return (isinstance(dtype, pd.CategoricalDtype) or values.dtype.kind in "OUSb"
            or pd.api.types.is_bool_dtype(dtype))


def _by_bin(ax, draws, values, prob, bins):
    """Points per row, and each quantile bin's average effect with its HDI band."""
    try:
        x = values.astype(float)
    except (TypeError, ValueError):
        raise ValueError(
            "`x` is not numeric; pass kind='categorical' to summarise it per category."
        ) from None
    if not np.isfinite(x).all():
        raise ValueError("`x` contains NaN or infinite values; pass a finite value per row.")
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
    groups = np.unique(which)
    means = np.stack([draws[:, which == g].mean(1) for g in groups], 1)
    centres = np.array([x[which == g].mean() for g in groups])
    hdi = array_stats.hdi(means, prob, axis=0)
    ax.scatter(x, draws.mean(0), s=8, alpha=0.3, color="C0", linewidths=0,
               label="row (posterior mean)")
    ax.fill_between(centres, hdi[:, 0], hdi[:, 1], color="C1", alpha=0.3,
                    label=f"{prob:.0%} HDI of the bin average")
    ax.plot(centres, means.mean(0), "o-", color="C1", label=f"bin average ({len(groups)} bins)")


def _by_category(ax, draws, x, values, prob):
    """A jittered strip of rows per category, and its average effect with the HDI."""
    dtype = getattr(x, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        present = set(pd.unique(values))
        cats = [c for c in dtype.categories if c in present]
    else:
        cats = list(pd.unique(values))
        try:
            cats = sorted(cats)
        except TypeError:  # labels of mixed types: keep the order of appearance
            pass
    per_row = draws.mean(0)
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(values))
    means = np.stack([draws[:, values == c].mean(1) for c in cats], 1)
    hdi = array_stats.hdi(means, prob, axis=0)
    position = {c: i for i, c in enumerate(cats)}
    ax.scatter([position[v] + j for v, j in zip(values, jitter)], per_row, s=8, alpha=0.3,
               color="C0", linewidths=0, label="row (posterior mean)")
    centre = means.mean(0)
    ax.errorbar(np.arange(len(cats)), centre, yerr=[centre - hdi[:, 0], hdi[:, 1] - centre],
                fmt="o", color="C1", capsize=4, label=f"category average, {prob:.0%} HDI")
    ax.set_xticks(np.arange(len(cats)))
    ax.set_xticklabels([str(c) for c in cats])


def _effect_draws(tree, var):
    """``(samples, rows)`` draws of an effect tree's variable (rows = 1 without a row dim)."""
    group = next((g for g in PREDICTIVE_GROUPS if g in tree.children), None)
    if group is None:
        raise ValueError(f"The tree has no effect group; it has {list(tree.children)}.")
    ds = tree[group].to_dataset()
    da = ds[var or next(iter(ds.data_vars))]
    values = np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)
    return values.reshape(values.shape[0] * values.shape[1], -1)


def _density(values):
    values = np.asarray(values, dtype=float)
    if np.ptp(values) == 0:
        return np.array([values[0]]), np.array([1.0])
    grid, pdf, _ = array_stats.kde(values)
    return np.asarray(grid), np.asarray(pdf)
