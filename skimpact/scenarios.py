"""Scenarios of an effect: which estimator, which rows and what to predict.

A Pipeline's raw-column interventions are applied before its transformers
(:func:`through_pipeline`), the skimpact estimator at its end does the rest
(:func:`final_estimator`), :func:`fitted_scenario` validates the rows of one scenario for its
fitted posterior, and :func:`effect_request` checks the two scenarios of an effect and its
``kind``. The effect functions, their streaming and their Dask versions all build on
these, so none of them needs another.
"""

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .interventions import apply_to_columns, split_columns

__all__ = ["effect_request", "final_estimator", "fitted_scenario", "through_pipeline"]


def effect_request(estimator, intervention, baseline=None, kind=None, return_sites=None):
    """Check the scenarios and ``kind`` of an effect and say what to predict.

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
    intervention, baseline : dict
        As in :func:`effect`.
    kind : {"predictive", "mean", "probs"}, optional
        As in :func:`effect`; ``None`` picks the default.
    return_sites : list of str, optional

    Returns
    -------
    pred : skimpact.posterior.FittedPosterior
    kind : str
        The resolved kind.
    stat : str
        The engine's ``outcome_stat`` for it.
    sites : tuple of str or None
        The sites to contrast (``None``: the default sites).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.scenarios import effect_request
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=100, num_samples=10, random_state=0).fit(X, y)
    >>> effect_request(est, {0: 1.0}, kind="mean")[1:]
    ('mean', 'mean', ('y',))
    """
    _check_scenarios(intervention, baseline)
    est = final_estimator(estimator)
    check_is_fitted(est, "predictor_")
    pred = est.predictor_
    stats = pred.info.outcome_stats
    if kind is None:
        if pred.classes is not None:
            kind = "probs" if "probs" in stats else "predictive"
        else:
            kind = "mean" if "mean" in stats else "predictive"
    if kind not in ("predictive", "mean", "probs"):
        raise ValueError(f"`kind` must be 'predictive', 'mean' or 'probs'; got {kind!r}.")
    if kind != "predictive" and kind not in stats:
        if pred.classes is not None and "probs" in stats:  # class codes have no mean
            advice = ("kind='probs' (the default for classifiers): the effect on each class "
                      "probability")
        else:
            advice = "kind='predictive' (a contrast of sampled outcomes)"
        raise ValueError(
            f"kind={kind!r} needs the outcome distribution's {kind} in closed form (and "
            f"finite), which {pred.info.outcome_site!r} does not have; use {advice}."
        )
    if kind == "predictive" and pred.classes is not None and len(pred.classes) > 2:
        raise ValueError(
            "kind='predictive' would subtract the codes of unordered classes, which means "
            "nothing; use kind='probs' (the default for classifiers): the effect on each "
            "class probability."
        )
    if kind == "predictive":
        sites = return_sites
    else:
        sites = (pred.info.outcome_site,) if return_sites is None else tuple(return_sites)
    stat = "sample" if kind == "predictive" else kind
    return pred, kind, stat, sites



def _check_scenarios(intervention, baseline):
    """An effect needs an intervention that names something and differs from its baseline."""
    for side, scenario in (("intervention", intervention), ("baseline", baseline)):
        if scenario is not None and not isinstance(scenario, dict):
            raise TypeError(
                f"`{side}` must be a dict mapping site, input or column names to values, "
                f"e.g. {{'z': 0.0}}; got {type(scenario).__name__} {scenario!r}."
            )
    if not intervention:
        raise ValueError(
            "An effect needs an intervention that names at least one site, input or column, "
            "e.g. {'z': 1.0}; an empty intervention is the factual scenario and its effect is "
            "zero by construction."
        )
    if baseline is not None and _same_scenario(intervention, baseline):
        raise ValueError(
            "The intervention and the baseline are the same scenario, so the effect is zero "
            "by construction; change the value of at least one name."
        )



def _same_scenario(a, b):
    if set(a) != set(b):
        return False
    for k in a:
        va, vb = a[k], b[k]
        if callable(va) or callable(vb):
            if va is not vb:
                return False
            continue
        try:
            if not np.array_equal(np.asarray(va), np.asarray(vb)):
                return False
        except (TypeError, ValueError):
            return False
    return True



def final_estimator(estimator):
    """The skimpact estimator at the end of a Pipeline (or ``estimator`` itself).

    Raises
    ------
    TypeError
        If it is no skimpact estimator (a Pipeline ending in a fitted LinearRegression
        would otherwise be called "not fitted").
    """
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if not hasattr(type(final), "counterfactual_predict"):
        where = ("the last step of the Pipeline is" if isinstance(estimator, Pipeline)
                 else "got")
        raise TypeError(
            "Effects and counterfactual predictions need a skimpact estimator "
            f"(ImpactRegressor or ImpactClassifier), or a Pipeline ending in one; {where} "
            f"{type(final).__name__}. Make a skimpact estimator the last step."
        )
    return final



def through_pipeline(estimator, X, intervention):
    """Apply raw-column interventions before a Pipeline's transformers.

    The transformed X keeps the raw X's row labels (a DataFrame's index), so outputs are
    labelled by the caller's rows even when a transformer returns a bare array.

    Returns
    -------
    estimator
        The final estimator.
    Xt
        The X it sees (transformed, with the raw-column interventions applied).
    rest : dict or None
        The intervention's other names (sites, inputs, transformed columns).
    raw_columns : list
        The raw columns (valid intervention names, listed in messages).
    factual : array-like or None
        The transformed X without the raw-column interventions, when there were any.
    """
    final = final_estimator(estimator)
    if not isinstance(estimator, Pipeline):
        return final, X, intervention, (), None
    columns = list(X.columns) if isinstance(X, pd.DataFrame) else list(range(np.shape(X)[1]))
    raw, rest = split_columns(intervention, columns)

    def transform(rows):
        return _with_labels_of(X, estimator[:-1].transform(rows))

    if not raw:
        return estimator[-1], transform(X), rest, columns, None
    changed = apply_to_columns(X, raw)
    factual, Xt = transform(X), transform(changed)
    hidden = []
    for label, value in raw.items():  # each change alone; with one, the whole is it
        alone = changed if len(raw) == 1 else apply_to_columns(X, {label: value})
        if not _column_moved(X, alone, label):
            continue
        Xt_alone = Xt if len(raw) == 1 else transform(alone)
        if _same_values(Xt_alone, factual):
            hidden.append(label)
        else:
            _check_known_values(estimator, X, alone, label, Xt_alone, factual, transform)
    if hidden:
        raise ValueError(
            f"The intervention changes the raw column(s) {hidden}, but the Pipeline's "
            f"transformers {[name for name, _ in estimator.steps[:-1]]} give the final "
            "estimator the same input with and without the change (a dropped or unused "
            "column, or a change too small for them to register, such as one within a "
            "bin), so its effect would be zero by construction. Keep the column in the "
            "transformers (e.g. ColumnTransformer(..., remainder='passthrough')) or "
            "intervene on a column they use."
        )
    return estimator[-1], Xt, rest, columns, factual


#: A value no transformer has seen: what a transformer that ignores unknown values makes
#: of one (OneHotEncoder(handle_unknown="ignore") gives all zeros).
_UNSEEN = "\x00skimpact-unseen-value\x00"


def _check_known_values(estimator, X, changed, label, Xt_changed, factual, transform):
    """Refuse new values of a raw column taken as categories that the transformers do not
    know.

    A transformer that ignores unknown categories (``OneHotEncoder(handle_unknown=
    "ignore")``, an ``OrdinalEncoder`` with ``unknown_value``) turns a misspelt or new
    category into what it makes of any unseen value, so the final estimator predicts from
    no category at all. The changed rows whose transformed values equal those of a value
    surely unseen are such rows, unless an encoder lists the value among its categories
    (an infrequent category is lumped with unseen ones, yet known). A numeric column is
    checked only where an encoder lists its categories: numbers need none otherwise.
    """
    before, after = _column(X, label), _column(changed, label)
    moved = ~_equal_rows(pd.Series(before).to_numpy(), pd.Series(after).to_numpy())
    if pd.api.types.is_numeric_dtype(pd.Series(before).dtype) and \
            pd.api.types.is_numeric_dtype(pd.Series(after).dtype):
        # numbers need no category, unless an encoder takes them as categories
        categories = _encoder_categories(estimator[:-1], label)
        if categories is None or not _numeric(categories):
            return
        known = np.asarray(categories, dtype=float)
        values = [v for v in pd.unique(pd.Series(after[moved])) if not np.isin(v, known)]
        if values:
            raise _unknown_values_error(estimator, label, values, categories)
        return
    try:
        unseen = transform(apply_to_columns(X, {label: _UNSEEN}))
    except Exception:  # noqa: BLE001 - the transformers refuse unseen values themselves
        return
    unseen, Xt_changed, factual = (_dense(a) for a in (unseen, Xt_changed, factual))
    if unseen is None or Xt_changed is None or unseen.shape != Xt_changed.shape:
        return
    as_unseen = moved & _rows_equal(Xt_changed, unseen)
    categories = _encoder_categories(estimator[:-1], label)
    values = [v for v in pd.unique(pd.Series(after[as_unseen]))
              if categories is None or v not in categories]
    if not values:
        return
    if categories is None:  # the values of these rows that the transformers tell apart
        known = ~_rows_equal(factual, unseen)
        categories = sorted(map(str, pd.unique(pd.Series(before[known]))))
    raise _unknown_values_error(estimator, label, values, categories)


def _numeric(values):
    try:
        np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


def _unknown_values_error(estimator, label, values, categories):
    return ValueError(
        f"The intervention (or baseline) sets the raw column {label!r} to "
        f"{[_plain(v) for v in values]}, which the Pipeline's transformers "
        f"{[name for name, _ in estimator.steps[:-1]]} did not see in fit: they encode it as "
        "they encode any unknown value (OneHotEncoder(handle_unknown='ignore') as all zeros), "
        "so the final estimator would predict from no category and the effect would mean "
        f"nothing. The known categories are {[_plain(v) for v in categories]}; check the "
        "spelling, or refit with the new category in the training data."
    )


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _column(X, label):
    return X[label].to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)[:, label]


def _dense(a):
    if hasattr(a, "toarray"):
        a = a.toarray()
    a = np.asarray(a)
    return a if a.ndim == 2 else None


def _rows_equal(a, b):
    """Per row, whether two 2-D arrays are equal in every column."""
    try:
        return np.all((a == b) | (pd.isna(a) & pd.isna(b)), axis=1)
    except TypeError:
        return np.array([np.array_equal(r, q) for r, q in zip(a, b)])


def _equal_rows(a, b):
    """Per entry, whether two 1-D arrays are equal (missing equal to missing)."""
    return np.asarray((a == b) | (pd.isna(a) & pd.isna(b)), dtype=bool)


def _encoder_categories(est, label):
    """The categories an encoder learnt for the column ``label`` of ``est``'s input (a
    name, else a position), looking through Pipelines (their first step) and the column
    lists of ColumnTransformers; ``None`` where no encoder is found."""
    cats = getattr(est, "categories_", None)
    if cats is not None:
        names = getattr(est, "feature_names_in_", None)
        if names is not None:
            names = list(names)
            return list(cats[names.index(label)]) if label in names else None
        return list(cats[label]) if isinstance(label, (int, np.integer)) \
            and 0 <= label < len(cats) else None
    if isinstance(est, Pipeline):
        return _encoder_categories(est.steps[0][1], label) if est.steps else None
    for _, sub, cols in getattr(est, "transformers_", ()):
        if not hasattr(sub, "fit") or isinstance(cols, (str, int, slice)) or callable(cols):
            continue
        cols = list(np.asarray(cols).tolist()) if not isinstance(cols, list) else cols
        if label in cols and not any(isinstance(c, bool) for c in cols):
            found = _encoder_categories(
                sub, label if hasattr(sub, "feature_names_in_") else cols.index(label))
            if found is not None:
                return found
    return None


def _column_moved(X, changed, label):
    """Whether ``changed`` differs from ``X`` in the raw column ``label`` (a change that
    moves nothing on these rows has an effect of zero because nothing changed)."""
    if isinstance(X, pd.DataFrame):
        return not _same_values(X[label], changed[label])
    return not _same_values(np.asarray(X)[:, label], changed[:, label])


def _same_values(a, b):
    if hasattr(a, "toarray") or hasattr(b, "toarray"):  # scipy sparse
        return a.shape == b.shape and (a != b).nnz == 0
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"
                                                 and b.dtype.kind == "f")


def _with_labels_of(X, Xt):
    """``Xt`` labelled by the rows of ``X`` where ``X`` is a DataFrame or Series and a
    transformer dropped or reset its index: a dense array becomes a DataFrame with
    positional column names (which scikit-learn does not take for feature names)."""
    if not isinstance(X, (pd.DataFrame, pd.Series)):
        return Xt
    if isinstance(Xt, pd.DataFrame):
        return Xt if Xt.index.equals(X.index) else Xt.set_axis(X.index, axis=0)
    if isinstance(Xt, np.ndarray) and Xt.ndim == 2 and Xt.shape[0] == len(X):
        return pd.DataFrame(Xt, index=X.index)
    return Xt


def fitted_scenario(estimator, X, intervention, inputs, **request):
    """The fitted posterior of ``estimator`` (or a Pipeline's last step) and its
    :class:`~skimpact.posterior.Scenario` for ``X`` under ``intervention`` (raw columns of a
    Pipeline changed before its transformers); ``request``: what to predict, as in
    :meth:`skimpact.posterior.FittedPosterior.scenario`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.scenarios import fitted_scenario
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=100, num_samples=10, random_state=0).fit(X, y)
    >>> pred, scenario = fitted_scenario(est, X[:5], {0: 0.0}, {}, outcome_stat="mean")
    >>> scenario.rows.n, scenario.request.outcome_stat
    (5, 'mean')
    """
    est, Xt, rest, raw, factual = through_pipeline(estimator, X, intervention)
    check_is_fitted(est, "predictor_")
    pred = est.predictor_
    return pred, pred.scenario(Xt, inputs, rest, raw_columns=raw, factual=factual, **request)
