"""Effect-aware scorers: how well a model's per-row effects of a binary treatment fit
held-out data, for ``scoring=`` in scikit-learn's model selection.

Predictive scores (:mod:`skimpact.metrics`) judge predictions of ``y``; two models can
predict ``y`` equally well and differ several-fold in their effects. The true effects are
never observed, but two losses of the per-row effects ``tau(x)`` are minimised, in
expectation, by the true conditional average effect, and need only ``(X, T, y)``:

R-loss (tau-risk; Nie and Wager 2021)
    ``mean(((y - m(x)) - (T - e(x)) tau(x))^2)``, with ``m(x) = E[y | x]`` the outcome
    model and ``e(x) = P(T = 1 | x)`` the propensity. Errors of ``m`` and ``e`` enter only
    as their product (Robinson's residual-on-residual decomposition).
Doubly-robust pseudo-outcome (Kennedy 2023)
    ``mean((psi - tau(x))^2)`` with ``psi = mu1 - mu0 + T (y - mu1) / e - (1 - T)
    (y - mu0) / (1 - e)`` and ``mu_t(x) = E[y | x, T = t]`` fitted on each arm:
    ``E[psi | x]`` is the true effect when either the outcome models or the propensity are
    right.

The nuisance models are fitted on the scored (held-out) rows themselves, cross-fitted: each
row's ``m``, ``e`` and ``mu_t`` come from models fitted on the other folds, so no row's own
outcome enters its nuisance values. Both losses carry a constant (the outcome's noise) that
is the same for every model scored on the same rows: compare scores of models on the same
folds, not across datasets.

They apply when the treatment is binary (0/1), when both arms overlap (every propensity well
inside (0, 1): the doubly-robust score divides by it, the R-loss loses the rows where
``T - e`` is near zero) and when the nuisance models are reasonable for the data: a poor
propensity model biases the comparison between models whose effects differ where it errs.
"""

import numbers
import warnings

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .arguments import check_seed
from .effects import effect

__all__ = ["EffectScorer", "effect_scorer"]

METHODS = ("r", "dr")
_CACHE_SIZE = 32


class EffectScorer:
    """Minus an effect loss of a fitted model's per-row effects; see :func:`effect_scorer`.

    ``scorer(estimator, X, y, sample_weight=None, **inputs) -> float``, greater is better.
    """

    def __init__(self, treatment, method, outcome_model, propensity_model, cv, clip,
                 random_state):
        self.treatment, self.method = treatment, method
        self.outcome_model, self.propensity_model = outcome_model, propensity_model
        self.cv, self.clip, self.random_state = cv, clip, random_state
        self._cache = {}

    def __repr__(self):
        return f"effect_scorer({self.treatment!r}, method={self.method!r})"

    def __call__(self, estimator, X, y, sample_weight=None, **inputs):
        """Score ``estimator``'s per-row effects on ``(X, y)``; greater is better."""
        t, covariates = self._split(X)
        y = np.asarray(y, dtype=float)
        if y.shape != t.shape:
            raise ValueError(f"`y` needs one outcome per row of X ({t.size}); got shape {y.shape}.")
        tau = self.effects(estimator, X, **inputs)
        nuisance = self.nuisances(covariates, t, y)
        if self.method == "r":
            loss = ((y - nuisance["m"]) - (t - nuisance["e"]) * tau) ** 2
        else:
            loss = (pseudo_outcome(y, t, nuisance) - tau) ** 2
        return -float(np.average(loss, weights=sample_weight))

    def effects(self, estimator, X, **inputs):
        """Posterior mean of each row's effect of setting the treatment from 0 to 1."""
        tree = effect(estimator, X, {self._key(X): 1.0}, {self._key(X): 0.0}, **inputs)
        da = tree["predictions"][tree.attrs["outcome"]]
        if da.ndim != 3:
            raise ValueError(
                f"effect_scorer scores one real effect per row; the effect has dims {da.dims}. "
                "Use it with a regressor."
            )
        return da.mean(("chain", "draw")).values.astype(float)

    def nuisances(self, covariates, t, y):
        """Cross-fitted ``m``, ``e``, ``mu0``, ``mu1`` for the rows (cached by content)."""
        key = joblib.hash((covariates, t, y))
        if key not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._cross_fit(covariates, t, y)
        return self._cache[key]

    def _cross_fit(self, covariates, t, y):
        n_arm = int(min(t.sum(), (1 - t).sum()))
        if n_arm < 2 * self.cv:
            raise ValueError(
                f"effect_scorer needs at least {2 * self.cv} rows in each arm of the treatment "
                f"to cross-fit its nuisance models with cv={self.cv}; the scored rows have "
                f"{int(t.sum())} treated and {int((1 - t).sum())} control. Use fewer, larger "
                "folds (a smaller cv here or in the model selection)."
            )
        out = {k: np.empty(t.size) for k in ("m", "e", "mu0", "mu1")}
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
        for train, test in folds.split(t, t):
            C, Ct = _take(covariates, train), _take(covariates, test)
            out["m"][test] = clone(self.outcome_model).fit(C, y[train]).predict(Ct)
            out["e"][test] = clone(self.propensity_model).fit(C, t[train]).predict_proba(Ct)[:, 1]
            for arm in (0, 1):
                rows = t[train] == arm
                out[f"mu{arm}"][test] = clone(self.outcome_model).fit(
                    _take(C, rows), y[train][rows]).predict(Ct)
        clipped = (out["e"] < self.clip) | (out["e"] > 1 - self.clip)
        if clipped.mean() > 0.1:
            warnings.warn(
                f"{clipped.mean():.0%} of the scored rows have an estimated propensity outside "
                f"[{self.clip}, {1 - self.clip}]: the arms overlap poorly there, so the effect "
                "scores rest on few comparable rows. Restrict the rows to where both arms "
                "occur, or compare models on a predictive score as well.",
                UserWarning, stacklevel=4,
            )
        out["e"] = np.clip(out["e"], self.clip, 1 - self.clip)
        return out

    def _key(self, X):
        if isinstance(X, pd.DataFrame):
            if not isinstance(self.treatment, str) or self.treatment not in X.columns:
                raise KeyError(
                    f"effect_scorer's treatment {self.treatment!r} is not a column of X; X has "
                    f"columns {list(X.columns)}."
                )
            return self.treatment
        n = np.shape(X)[1]
        if isinstance(self.treatment, str) or not -n <= self.treatment < n:
            raise KeyError(
                f"effect_scorer's treatment {self.treatment!r} is not a column of X: an array "
                f"X takes a position in 0..{n - 1} (a name needs a DataFrame)."
            )
        return int(self.treatment) % n

    def _split(self, X):
        """The treatment (0.0 / 1.0) and the other columns (a DataFrame's stay one, for
        nuisance models that encode their columns)."""
        key = self._key(X)
        if isinstance(X, pd.DataFrame):
            t, covariates = X[key].to_numpy(), X.drop(columns=[key])
        else:
            X = np.asarray(X)
            t, covariates = X[:, key], np.delete(X, key, axis=1).astype(float)
        raw = np.asarray(t)
        try:
            t = raw.astype(float)
        except (TypeError, ValueError):
            t = np.full(len(raw), np.nan)
        if not np.isin(t, (0.0, 1.0)).all():
            raise ValueError(
                f"effect_scorer's treatment {self.treatment!r} must be binary, 0 or 1 in every "
                f"row; got values such as {pd.unique(raw)[:5].tolist()}. Code it as 0/1 (a "
                "continuous treatment has no per-row effect of 0 -> 1 to score)."
            )
        return t, covariates


def _take(rows, index):
    """Rows ``index`` (positions or a mask) of an array or a DataFrame."""
    return rows.iloc[index] if isinstance(rows, pd.DataFrame) else rows[index]


def pseudo_outcome(y, t, nuisance):
    """The doubly-robust pseudo-outcome of each row (its AIPW score).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.effect_scoring import pseudo_outcome
    >>> nuisance = {"mu0": np.zeros(2), "mu1": np.ones(2), "e": np.full(2, 0.5)}
    >>> pseudo_outcome(np.array([3.0, 0.0]), np.array([1.0, 0.0]), nuisance).tolist()
    [5.0, 1.0]
    """
    e, mu0, mu1 = nuisance["e"], nuisance["mu0"], nuisance["mu1"]
    return mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)


def effect_scorer(treatment, *, method="r", outcome_model=None, propensity_model=None, cv=5,
                  clip=0.01, random_state=0):
    """A scorer of a model's per-row effects of a binary treatment, for model selection.

    ``scorer(estimator, X, y, sample_weight=None, **inputs)`` computes each row's posterior
    mean effect of setting ``treatment`` from 0 to 1 (:func:`skimpact.effect`), fits the
    nuisance models on ``(X, y)`` by cross-fitting, and returns minus the R-loss or the
    doubly-robust loss (module :mod:`skimpact.effect_scoring` gives both), so greater is
    better. Pass it as ``scoring=`` to :class:`~sklearn.model_selection.GridSearchCV` or
    :func:`~sklearn.model_selection.cross_validate`; it takes a fitted estimator or a
    :class:`~sklearn.pipeline.Pipeline` ending in one, with the Pipeline's raw ``X``.

    Parameters
    ----------
    treatment : str or int
        The treatment column of the raw ``X``: a DataFrame's column name or an array's
        position. Its values must be 0 or 1.
    method : {"r", "dr"}, default="r"
        ``"r"``: the R-loss (tau-risk); ``"dr"``: the squared error against the
        doubly-robust pseudo-outcome, which divides by the propensity and so is noisier where
        it is near 0 or 1.
    outcome_model : scikit-learn regressor, optional
        Fits ``E[y | x]`` (R-loss) and ``E[y | x, T = t]`` on each arm (doubly robust) on
        the covariates (``X`` without the treatment). Default
        ``RandomForestRegressor(n_estimators=100, min_samples_leaf=5)``.
    propensity_model : scikit-learn classifier with ``predict_proba``, optional
        Fits ``P(T = 1 | x)``. Default a standardised ``LogisticRegression``.
    cv : int, default=5
        Folds of the cross-fitting, stratified by treatment; each arm needs ``2 * cv`` rows.
    clip : float in (0, 0.5), default=0.01
        Propensities are clipped to ``[clip, 1 - clip]``; a warning says when more than a
        tenth of the rows are (poor overlap).
    random_state : int, default=0
        Seed of the folds and of the default outcome model: every model scored on the same
        rows is compared against the same nuisance values (they are fitted once per set of
        rows and reused).

    Returns
    -------
    EffectScorer

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.model_selection import cross_val_score
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.metrics import effect_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"T": rng.integers(0, 2, 200).astype(float), "x": rng.normal(size=200)})
    >>> y = X["x"] + 2.0 * X["T"] + rng.normal(0, 0.5, 200)
    >>> est = ImpactRegressor(inference="svi", num_steps=300, num_samples=50, random_state=0)
    >>> scores = cross_val_score(est, X, y, cv=2, scoring=effect_scorer("T", cv=3))
    >>> scores.shape
    (2,)
    """
    if isinstance(treatment, (bool, np.bool_)) or not isinstance(treatment, (str, numbers.Integral)):
        raise TypeError(
            f"`treatment` must be the treatment column's name (str) or position (int); got "
            f"{treatment!r}."
        )
    if method not in METHODS:
        raise ValueError(f"`method` must be 'r' (R-loss) or 'dr' (doubly robust); got {method!r}.")
    if isinstance(cv, (bool, np.bool_)) or not isinstance(cv, numbers.Integral) or cv < 2:
        raise ValueError(f"`cv` must be an int >= 2 (folds of the cross-fitting); got {cv!r}.")
    if isinstance(clip, (bool, np.bool_)) or not isinstance(clip, numbers.Real) \
            or not 0 < clip < 0.5:
        raise ValueError(f"`clip` must be a number in (0, 0.5); got {clip!r}.")
    if random_state is None or isinstance(random_state, (np.random.RandomState,
                                                         np.random.Generator)):
        raise ValueError(
            f"`random_state` must be an int seed, so that every model is scored against the "
            f"same nuisance values; got {random_state!r}."
        )
    check_seed(random_state)
    if outcome_model is None:
        outcome_model = RandomForestRegressor(n_estimators=100, min_samples_leaf=5,
                                              random_state=random_state)
    if propensity_model is None:
        propensity_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    _check_model(outcome_model, "outcome_model", "predict")
    _check_model(propensity_model, "propensity_model", "predict_proba")
    return EffectScorer(treatment, method, outcome_model, propensity_model, int(cv),
                        float(clip), int(random_state))


def _check_model(model, name, method):
    if not (hasattr(model, "fit") and hasattr(model, method) and hasattr(model, "get_params")):
        raise TypeError(
            f"`{name}` must be a scikit-learn estimator with fit and {method}; got {model!r}."
        )
