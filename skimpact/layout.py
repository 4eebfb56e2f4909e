"""The input layout: how the rows of X and the model's keyword inputs reach the model.

:class:`InputLayout` is fitted once on the training data (``fit``) and then turns every
prediction call's ``X``, inputs and intervention into what the model runs on
(``transform``): it validates X (numeric, finite, the fitted columns), takes the columns
named in ``inputs=`` out of a DataFrame, decides once which inputs hold one entry per row,
keeps the row labels, applies column and input interventions before the float32 cast, and
fingerprints the training rows so that in-sample predictions can check they get them.
"""

import hashlib
import warnings
from dataclasses import dataclass, replace

import jax.numpy as jnp
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import validate_data

from .interventions import apply_to_columns, apply_to_inputs, resolve_intervention

__all__ = ["InputLayout", "Rows", "FLOAT32_RESOLUTION"]

#: The largest float32 spacing, relative to a column's spread, that keeps its signal:
#: beyond it the float32 values a model computes with lose most digits of the variation.
FLOAT32_RESOLUTION = 1e-2


@dataclass(frozen=True)
class Rows:
    """The validated input of one prediction call.

    Attributes
    ----------
    X : ndarray of float32
        The model's first argument.
    inputs : dict
        The model's keyword inputs as JAX arrays.
    intervention : skimpact.interventions.Intervention
        The intervention sorted into sites, shifts, columns and inputs.
    labels : ndarray
        Row labels (a DataFrame's index, else positions).
    fingerprint : str
        A hash of X and the per-row inputs before the intervention.
    row_inputs : tuple of str
        The inputs with one entry per row.
    factual : tuple of (ndarray, dict) or None
        ``(X, inputs)`` as they were before the intervention (or a Pipeline) changed them,
        cast like ``X`` and ``inputs``; ``None`` when nothing changed them.
    """

    X: np.ndarray
    inputs: dict
    intervention: object
    labels: np.ndarray
    fingerprint: str
    row_inputs: tuple = ()
    factual: tuple = None

    @property
    def n(self):
        """Number of rows."""
        return self.X.shape[0]


class InputLayout(BaseEstimator):
    """Validation and layout of X and the model's keyword inputs, fitted on the training data.

    Parameters
    ----------
    input_columns : tuple of str
        Columns of a DataFrame X passed to the model as keyword inputs.
    owner : str
        The estimator's name, used in messages.
    center : bool
        Subtract the training columns' means (in float64) before the float32 cast; the
        built-in models take X so, and then no offset can swallow the signal (the outcome
        of the built-in linear model is centred by its program's offsets).
    allow_nan_y : bool
        Whether NaN outcomes are allowed (they are masked out of the likelihood).

    Attributes
    ----------
    n_features_in_, feature_names_in_
        As scikit-learn estimators define them.
    columns_ : list
        Column labels of X after the input columns are taken out (positions for arrays).
    input_names_ : tuple of str
        The model's keyword inputs.
    row_inputs_ : tuple of str
        Inputs the model uses one entry per row (see :meth:`keep_whole`): batched with the
        rows and checked for length on every call.
    x_loc_ : ndarray of float64 or None
        Column means subtracted when ``center``.
    labels_ : ndarray
        Training row labels.
    fingerprint_ : str
        Hash of the training X and per-row inputs.
    outcome_fingerprint_ : str
        Hash of the training outcome and sample weights.
    """

    def __init__(self, input_columns=(), owner="estimator", center=False, allow_nan_y=False):
        self.input_columns = input_columns
        self.owner = owner
        self.center = center
        self.allow_nan_y = allow_nan_y

    # ----------------------------------------------------------------------- fit
    def fit(self, X, y, inputs, *, y_numeric=True, sample_weight=None):
        """Learn the layout from the training data.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        inputs : dict
            The model's keyword inputs.
        y_numeric : bool
            Whether y must be numeric (regression).
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        X : ndarray of float64
            Validated, not yet centred (see :meth:`cast`).
        y : ndarray
        inputs : dict of JAX arrays
        sample_weight : ndarray of float32 or None
            Validated weights.
        """
        X, inputs = self._split(X, inputs)
        self.labels_ = _row_labels(X)
        _check_columns(X, "X")
        _check_finite(X, "X")
        if y_numeric and np.asarray(y).dtype.kind in "OUSV":
            try:
                np.asarray(y, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"y holds non-numeric values (dtype {np.asarray(y).dtype}); a regressor "
                    "needs a numeric outcome. For class labels use ImpactClassifier."
                ) from None
        _check_finite(y, "y", allow_nan=self.allow_nan_y)
        if self.allow_nan_y:
            X = self._validate(X, reset=True, dtype=np.float64)
            y = np.asarray(y, dtype=np.float64 if y_numeric else None)
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(f"y must have shape ({X.shape[0]},); got {y.shape}.")
        else:
            X, y = self._validate(X, y, reset=True, dtype=np.float64, y_numeric=y_numeric)
        n = X.shape[0]
        self.columns_ = (
            list(self.feature_names_in_) if hasattr(self, "feature_names_in_")
            else list(range(X.shape[1]))
        )
        self.input_names_ = tuple(inputs)
        arrays = {k: _input_array(k, v) for k, v in inputs.items()}
        self.input_shapes_ = {k: v.shape for k, v in arrays.items()}
        # one entry per training row: candidates, until the model's trace says which it
        # uses per row (keep_whole)
        self.row_inputs_ = tuple(k for k, v in arrays.items() if v.ndim >= 1 and v.shape[0] == n)
        self.fingerprinted_inputs_ = self.row_inputs_
        weights = None
        if sample_weight is not None:
            weights = _validated_sample_weight(sample_weight, n)
        _check_something_observed(y, weights)
        self.x_loc_ = None
        if self.center:
            w = np.ones(n) if weights is None else weights.astype(np.float64)
            self.x_loc_ = (w * ~pd.isna(y)) @ X / (w * ~pd.isna(y)).sum()
        self.fingerprint_ = _fingerprint(X, arrays, self.fingerprinted_inputs_)
        self.outcome_fingerprint_ = _outcome_fingerprint(y, weights)
        if not self.center:
            _warn_float32_range(X, self.columns_, "X")
        if y_numeric and not self.center:
            _warn_float32_range(np.asarray(y, dtype=np.float64)[:, None], ["y"], "the outcome")
            _warn_outcome_scale(np.asarray(y, dtype=np.float64))
        return X, y, {k: jnp.asarray(v) for k, v in arrays.items()}, weights

    # ----------------------------------------------------------------- transform
    def transform(self, X, inputs, intervention=None, *, info, raw_columns=(), factual=None):
        """Validate a prediction call's input and apply the intervention's columns and inputs.

        Parameters
        ----------
        X : array-like or DataFrame
        inputs : dict
            The model's keyword inputs for these rows.
        intervention : dict or None
        info : skimpact.inspection.ModelInfo
            The fitted model's sites (to sort the intervention's names).
        raw_columns : sequence, optional
            Columns of a Pipeline's raw input, listed in the message for an unknown name.
        factual : array-like or DataFrame, optional
            X before a Pipeline changed its raw columns: the rows to fingerprint, with the
            inputs taken from its columns (``inputs=``).

        Returns
        -------
        Rows
        """
        given = inputs
        X, inputs = self._split(X, inputs)
        labels = _row_labels(X)
        n = _num_rows(X)
        self._check_n_features(X)
        resolved = resolve_intervention(
            intervention, info=info, input_names=self.input_names_, columns=self.columns_,
            n_rows=n, raw_columns=raw_columns,
        )
        self.check_inputs(inputs)
        _check_columns(X, "X")
        _check_finite(X, "X")
        Xf = self._validate(X, reset=False, dtype=np.float64, ensure_all_finite=False)
        arrays = {k: _input_array(k, v) for k, v in inputs.items()}
        for k in self.row_inputs_:
            if arrays[k].ndim < 1 or arrays[k].shape[0] != n:
                raise ValueError(
                    f"Input {k!r} has {arrays[k].shape[0] if arrays[k].ndim else 'no'} rows; X "
                    f"has {n}. Per-row inputs need one entry per row of X."
                )
        fingerprinted = Xf, arrays
        if factual is not None:  # the inputs taken from its columns are factual too
            factual_X, factual_inputs = self._split(factual, given)
            fingerprinted = (
                self._validate(factual_X, reset=False, dtype=np.float64),
                {k: _input_array(k, v) for k, v in factual_inputs.items()},
            )
        fingerprint = _fingerprint(*fingerprinted, self.fingerprinted_inputs_)
        before = None
        if factual is not None or resolved.columns or resolved.inputs:
            before = (self.cast(np.asarray(fingerprinted[0], dtype=np.float64)),
                      {k: jnp.asarray(_input_array(k, v)) for k, v in fingerprinted[1].items()})
        if resolved.columns:  # on the caller's X, so a Series is aligned by its index
            changed = apply_to_columns(X, resolved.columns)
            _check_columns(changed, "X after the intervention")
            Xf = self._validate(changed, reset=False, dtype=np.float64, ensure_all_finite=False)
            _check_finite(Xf, "X after the intervention")
        arrays = apply_to_inputs(replace(resolved, columns={}), Xf, arrays)[1]
        for k, v in arrays.items():
            _check_finite(np.asarray(v), f"input {k!r} after the intervention")
        return Rows(
            X=self.cast(np.asarray(Xf, dtype=np.float64)),
            inputs={k: jnp.asarray(_input_array(k, v)) for k, v in arrays.items()},
            intervention=resolved,
            labels=labels,
            fingerprint=fingerprint,
            row_inputs=self.row_inputs_,
            factual=before,
        )

    def keep_whole(self, row_inputs):
        """Take only ``row_inputs`` (of :attr:`row_inputs_`) as per-row inputs: the others
        the model uses whole (e.g. one value per group, as many groups as rows), found when
        the model is inspected (:func:`skimpact.inspection.inspect_model`). Part of fitting."""
        self.row_inputs_ = tuple(k for k in self.row_inputs_ if k in row_inputs)
        return self

    def is_training_rows(self, rows):
        """Whether ``rows`` (from :meth:`transform`) are the training rows, in order."""
        return rows.fingerprint == self.fingerprint_

    def is_training_outcome(self, y, sample_weight=None):
        """Whether ``y`` and ``sample_weight`` are the training outcome and weights, in
        order."""
        y = np.asarray(y).reshape(-1)
        weights = None if sample_weight is None else _validated_sample_weight(
            sample_weight, y.shape[0])
        return _outcome_fingerprint(y, weights) == self.outcome_fingerprint_

    # -------------------------------------------------------------------- helpers
    def _split(self, X, inputs):
        """Take the columns named in ``input_columns`` out of a DataFrame X."""
        names = list(self.input_columns or ())
        if not names:
            return X, dict(inputs)
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"`inputs={names}` takes model inputs from DataFrame columns, but X is "
                f"{type(X).__name__}. Pass a DataFrame, or pass the inputs as keyword "
                "arguments."
            )
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(
                f"Input column(s) {missing} named in `inputs=` are not columns of X; X has "
                f"{list(X.columns)}."
            )
        both = [c for c in names if c in inputs]
        if both:
            raise ValueError(
                f"Input(s) {both} are given both as columns of X (`inputs=`) and as keyword "
                "arguments; give each once."
            )
        return X.drop(columns=names), {**{c: X[c].to_numpy() for c in names}, **inputs}

    def _validate(self, X, *args, **kwargs):
        """scikit-learn's ``validate_data`` on this layout, its errors and feature-name
        warnings naming the estimator (``owner``) rather than this class."""
        name = type(self).__name__
        names = getattr(X, "columns", None)
        named = names is not None and len(names) > 0 and all(isinstance(c, str) for c in names)
        fitted_named = hasattr(self, "feature_names_in_")
        mismatch = not kwargs.get("reset", True) and named != fitted_named
        try:
            if not mismatch:
                return validate_data(self, X, *args, **kwargs)
            with warnings.catch_warnings():  # said again below, naming the estimator
                warnings.filterwarnings("ignore", message=r"X (has|does not have valid) "
                                        "feature names", category=UserWarning)
                out = validate_data(self, X, *args, **kwargs)
        except ValueError as exc:
            raise ValueError(str(exc).replace(name, self.owner)) from None
        warnings.warn(
            f"X has feature names, but {self.owner} was fitted without feature names"
            if named else
            f"X does not have valid feature names, but {self.owner} was fitted with feature "
            "names",
            UserWarning, stacklevel=5,
        )
        return out

    def _check_n_features(self, X):
        ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
        if ndim != 2:  # validate_data says how to reshape
            return
        k = _num_cols(X)
        if k != self.n_features_in_:
            raise ValueError(
                f"X has {k} features, but {self.owner} is expecting {self.n_features_in_} "
                "features as input."
            )

    def check_inputs(self, inputs):
        """Refuse keyword inputs other than those of the fit (X's input columns among
        them), and inputs given in another shape than at fit (:meth:`check_input_shapes`):
        only per-row inputs change length with the rows."""
        missing = [k for k in self.input_names_ if k not in inputs]
        extra = [k for k in inputs if k not in self.input_names_]
        if missing or extra:
            raise ValueError(
                f"The model was fitted with inputs {list(self.input_names_)}; "
                + (f"missing {missing}. " if missing else "")
                + (f"unexpected {extra}. " if extra else "")
                + "Pass the same keyword inputs as at fit."
            )
        self.check_input_shapes(inputs)

    def check_input_shapes(self, inputs):
        """Refuse an input the model uses whole (not per row) given in another shape than
        at fit."""
        for k, v in inputs.items():
            fitted = self.input_shapes_.get(k)
            if k in self.row_inputs_ or fitted is None or np.shape(v) == fitted:
                continue
            raise ValueError(
                f"Input {k!r} has shape {np.shape(v)}, but at fit it had shape {fitted} and the "
                f"model uses it whole, not one entry per row (the per-row inputs are "
                f"{list(self.row_inputs_)}). Pass {k!r} as at fit; to give it per row, "
                "refit with one entry per training row (or make it a column of X named in "
                "the estimator's `inputs=`)."
            )

    def cast(self, X):
        """Validated float64 X as the model takes it: float32, centred when ``center``."""
        if self.x_loc_ is not None:
            X = X - self.x_loc_
        limit = np.finfo(np.float32).max
        big = (X.max(axis=0, initial=0.0) > limit) | (X.min(axis=0, initial=0.0) < -limit)
        if big.any():
            raise ValueError(
                f"Column(s) {[c for c, b in zip(self.columns_, big) if b]} of X exceed "
                f"float32's range (about {np.finfo(np.float32).max:.1e}), which the model "
                "computes in. Rescale them first (e.g. sklearn.preprocessing.StandardScaler)."
            )
        return np.asarray(X, dtype=np.float32)


# ---------------------------------------------------------------------- checks
def _check_columns(X, what):
    """Duplicate or non-numeric columns get an error that names them and the fix."""
    if isinstance(X, pd.DataFrame):
        dup = X.columns[X.columns.duplicated()].unique().tolist()
        if dup:
            raise ValueError(
                f"{what} has duplicate column name(s) {dup}; give every column a unique name."
            )
        bad = [c for c in X.columns if not (
            pd.api.types.is_numeric_dtype(X[c]) and not isinstance(X[c].dtype, pd.CategoricalDtype)
        )]
        if bad:
            raise ValueError(
                f"{what} has non-numeric column(s) {bad} (dtypes "
                f"{[str(X[c].dtype) for c in bad]}). Encode them first, e.g. with "
                "sklearn.preprocessing.OneHotEncoder or OrdinalEncoder in a ColumnTransformer "
                "in a Pipeline before the estimator."
            )
        return
    arr = np.asarray(X) if not hasattr(X, "dtype") else X
    if getattr(arr, "dtype", None) is not None and arr.dtype.kind in "OUSV":
        try:
            np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"{what} holds non-numeric values ({exc}). Encode them first, e.g. with "
                "sklearn.preprocessing.OneHotEncoder in a Pipeline before the estimator."
            ) from None


def _check_finite(X, what, allow_nan=False):
    """Raise a ValueError naming the columns of ``X`` that hold NaN or infinity."""
    if isinstance(X, pd.DataFrame):
        cols = [c for c in X.columns if X[c].dtype.kind in "fc"]
        bad = [c for c in cols
               if not np.all(np.isfinite(X[c].to_numpy(dtype=float, na_value=np.nan)))]
        if bad:
            raise ValueError(
                f"{what} contains NaN or infinity in column(s) {bad}. Impute or drop these "
                "values first (e.g. sklearn.impute.SimpleImputer in a Pipeline)."
            )
        return
    if np.asarray(X).dtype.kind == "c":
        raise ValueError(
            f"Complex data not supported: {what} holds complex numbers and the models take "
            "real values. Pass the real and imaginary parts as separate columns "
            "(np.real, np.imag)."
        )
    try:
        arr = np.asarray(X)
        arr = arr if arr.dtype.kind == "f" else np.asarray(arr, dtype=float)
    except (TypeError, ValueError):
        return
    if not allow_nan and np.isfinite(arr).all():  # one pass, no copy, for the usual case
        return
    finite = np.isfinite(arr) | (np.isnan(arr) if allow_nan else False)
    if finite.all():
        return
    if arr.ndim == 2:
        where = f"column(s) {sorted(set(np.nonzero(~finite)[1].tolist()))}"
    else:
        where = f"{int((~finite).sum())} entries"
    hint = " or fit with missing='mask'" if what == "y" else ""
    raise ValueError(
        f"{what} contains NaN or infinity in {where}. Impute or drop these values first{hint}."
    )


def _warn_float32_range(X, columns, what):
    """Warn when float32 cannot resolve a column's variation around its offset."""
    if X.shape[0] < 2:
        return
    if np.isnan(X).any():  # a masked outcome; the nan-aware reductions cost 5x more
        spread, size = np.nanstd(X, axis=0), np.nanmax(np.abs(X), axis=0)
    else:
        spread, size = X.std(axis=0), np.abs(X).max(axis=0)
    spacing = size * np.finfo(np.float32).eps
    bad = [c for c, s, e in zip(columns, spread, spacing) if s > 0 and e > FLOAT32_RESOLUTION * s]
    if bad:
        warnings.warn(
            f"Column(s) {bad} of {what} vary little relative to their size: in float32 (what "
            "the model computes in) their variation loses most of its digits, so predictions "
            "and effects can be wrong. Centre and scale them first (e.g. subtract the mean, "
            "or sklearn.preprocessing.StandardScaler in a Pipeline for X).",
            UserWarning,
            stacklevel=4,
        )


#: The outcome's standard deviation above which a custom model's priors (scaled for
#: standardised data, say Normal(0, 1)) cannot reach it.
OUTCOME_SCALE_LIMIT = 1e4


def _warn_outcome_scale(y):
    """Warn when the outcome varies far beyond the unit scale that priors usually assume:
    a fit of y * 1e9 with Normal(0, 1) priors gave R^2 0 and warnings that blamed NUTS."""
    observed = y[~np.isnan(y)]
    sd = float(observed.std()) if observed.size > 1 else 0.0
    if sd > OUTCOME_SCALE_LIMIT:
        warnings.warn(
            f"The outcome y has standard deviation {sd:.3g}, far beyond the scale of priors "
            "set for standardised data (Normal(0, 1) coefficients, HalfNormal(1) noise): the "
            "posterior cannot reach it and the fit can fail to converge or predict nothing. "
            "Standardise y (fit on (y - y.mean()) / y.std(), or sklearn's "
            "TransformedTargetRegressor), or widen the model's priors to y's scale.",
            UserWarning,
            stacklevel=4,
        )


def _check_something_observed(y, weights):
    """Refuse a fit without one observed, positively weighted outcome: an all-NaN y under
    missing='mask' fitted the prior, and predictions blamed an outcome without a mean."""
    observed = ~pd.isna(y)
    if not observed.any():
        raise ValueError(
            f"y has no observed value: all {len(y)} are missing (NaN), which "
            "missing='mask' leaves out of the fit, so there is no outcome to learn from. "
            "Give rows whose outcome is observed."
        )
    if weights is not None and not np.any(weights[observed] > 0):
        raise ValueError(
            f"sample_weight is zero on every row whose outcome is observed ({int(observed.sum())} "
            "rows; the others are missing), so the fit has no data to learn from; give the "
            "rows to fit on positive weights."
        )


def _validated_sample_weight(sample_weight, n):
    """``sample_weight`` as float32 of shape ``(n,)``: finite, non-negative, not all zero."""
    raw = np.asarray(sample_weight)
    try:
        if raw.dtype.kind in "USV":  # numbers written as text are no weights either
            raise TypeError
        sample_weight = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"sample_weight holds non-numeric values (dtype {raw.dtype}, e.g. "
            f"{raw.reshape(-1)[:1].tolist()}); it must be one non-negative number per row."
        ) from None
    if sample_weight.ndim == 0:
        sample_weight = np.full(n, float(sample_weight))
    if sample_weight.shape != (n,):
        raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected ({n},).")
    if np.any(sample_weight < 0) or not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight must be finite and non-negative.")
    if not np.any(sample_weight > 0):
        raise ValueError(
            "sample_weight is zero on every row, so the fit has no data to learn from (its "
            "parameters would stay where they started); give the rows to fit on positive "
            "weights."
        )
    return sample_weight.astype(np.float32)


def _input_array(name, value):
    arr = np.asarray(value)
    if arr.dtype.kind in "OUSV":
        raise ValueError(
            f"Model input {name!r} holds non-numeric values (dtype {arr.dtype}); encode it as "
            "numbers first."
        )
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int32)
    _check_finite(arr, f"input {name!r}")
    if arr.dtype.kind in "fc":
        return arr.astype(np.float32)
    return arr


def _fingerprint(X, inputs, row_inputs):
    h = hashlib.sha1(np.ascontiguousarray(X, dtype=np.float64).data)
    h.update(str(X.shape).encode())
    for k in row_inputs:
        h.update(k.encode())
        h.update(np.ascontiguousarray(inputs[k]).data)
    return h.hexdigest()


def _outcome_fingerprint(y, weights):
    y = np.asarray(y)
    h = hashlib.sha1(str(y.shape).encode())
    if y.dtype.kind in "biuf":
        h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    else:  # class labels of any type
        h.update(pd.util.hash_array(y.astype(object)).tobytes())
    if weights is not None:
        h.update(np.ascontiguousarray(weights).tobytes())
    return h.hexdigest()


def _row_labels(X):
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.index.to_numpy()
    return np.arange(_num_rows(X))


def _num_rows(X):
    if hasattr(X, "shape"):
        return X.shape[0]
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]


def _num_cols(X):
    shape = X.shape if hasattr(X, "shape") else np.asarray(X).shape
    return shape[1] if len(shape) > 1 else 1
