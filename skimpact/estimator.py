"""The scikit-learn face of skimpact: :class:`ImpactRegressor` and :class:`ImpactClassifier`.

The estimators validate inputs, hold fitted attributes and delegate: inference to
:mod:`skimpact.inference`, prediction to :mod:`skimpact.predictive`, interventions to
:mod:`skimpact.interventions`, effects to :mod:`skimpact.effects` and output labelling to
:mod:`skimpact.schema`.
"""

import functools
import numbers
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro import handlers
from numpyro.primitives import Messenger
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import effects
from .inference import run_inference
from .interventions import apply_to_inputs, describe, resolve_intervention
from .model import Model, as_model, inspect_model, linear_model, logistic_model
from ._sinks import ZarrSink, write_tree
from .predictive import PredictiveEngine, Request
from .schema import Labels, encode_attr, flatten_chains, make_dataset, make_tree

__all__ = ["ImpactRegressor", "ImpactClassifier"]

_INFERENCE = ("svi", "nuts", "map")

# NumPyro's effect handlers live on one global stack, so two threads tracing models at once
# corrupt each other (threaded joblib or Dask workers). Fitting and predicting hold this lock.
_NUMPYRO_LOCK = threading.RLock()


def _serialised(method):
    """Run ``method`` while holding the lock that guards NumPyro's handler stack."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _NUMPYRO_LOCK:
            return method(*args, **kwargs)

    return wrapper


class _LikelihoodOnly(Messenger):
    """Scale and mask the log-density of one site only (the outcome), leaving the priors of
    global parameters unscaled: ``handlers.scale`` / ``handlers.mask`` restricted to a site."""

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


class _ImpactBase(BaseEstimator):
    """Shared machinery of the skimpact estimators (not public)."""

    def __init__(
        self,
        model=None,
        *,
        inference="svi",
        guide="AutoNormal",
        learning_rate=0.01,
        num_steps=3000,
        num_warmup=500,
        num_samples=500,
        num_chains=1,
        target_accept_prob=0.8,
        reparam=None,
        outcome="y",
        inputs=None,
        missing="error",
        batch_size=None,
        fit_batch_size=None,
        random_state=None,
        progress_bar=False,
    ):
        self.model = model
        self.inference = inference
        self.guide = guide
        self.learning_rate = learning_rate
        self.num_steps = num_steps
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.target_accept_prob = target_accept_prob
        self.reparam = reparam
        self.outcome = outcome
        self.inputs = inputs
        self.missing = missing
        self.batch_size = batch_size
        self.fit_batch_size = fit_batch_size
        self.random_state = random_state
        self.progress_bar = progress_bar

    # --------------------------------------------------------------------- sklearn
    def __getstate__(self):
        from .model import _check_picklable

        if callable(self.model) and not isinstance(self.model, Model):
            _check_picklable(self.model, "Model")
        return super().__getstate__()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Only an int seed fixes every key; None or a RandomState / Generator draws fresh ones.
        tags.non_deterministic = not isinstance(self.random_state, numbers.Integral)
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------------ fit
    @_serialised
    def fit(self, X, y, sample_weight=None, **inputs):
        """Fit the model's posterior to ``(X, y)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Features, the model's first argument. Columns named in ``inputs=`` are passed
            to the model as keyword inputs instead.
        y : array-like of shape (n_samples,)
            Outcome, passed to the model as the keyword argument named ``outcome``.
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the rows' log-likelihood terms (priors are not scaled), so a row of
            weight 2 counts as that row repeated.
        **inputs : array-like
            Extra keyword inputs of the model (for example ``C=C``).

        Returns
        -------
        self : object
        """
        self._check_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        X, inputs = self._split_inputs(X, inputs, reset=True)
        X, y = self._validate_xy(X, y)
        inputs = self._validate_inputs(inputs, X.shape[0], reset=True)
        y_obs, mask = self._observed(y)
        scale = None
        if sample_weight is not None:
            sample_weight = _validated_sample_weight(sample_weight, X.shape[0])
            self._check_weighted_targets(y, sample_weight)
            scale = jnp.asarray(sample_weight)
        self.model_ = self._resolve_model(X)
        inputs = {**self._default_inputs(X, y_obs, mask, sample_weight), **inputs}
        model = self._prediction_model()
        self.model_info_ = inspect_model(model, X, self.outcome, y_obs, inputs)
        train_model = model
        if self.fit_batch_size is not None and (scale is not None or mask is not None):
            raise ValueError(
                "`fit_batch_size` cannot be combined with sample_weight or masked outcomes."
            )
        if scale is not None or mask is not None:
            train_model = _LikelihoodOnly(
                model, site=self.model_info_.outcome_site, scale=scale, mask=mask
            )
        result = run_inference(
            self.inference,
            train_model,
            (X,),
            {self.outcome: y_obs, **inputs},
            latent_sites=self.model_info_.latent_sites,
            deterministic_sites=self.model_info_.deterministic_sites,
            key=self._key("fit"),
            settings=self.get_params(deep=False),
            row_plate=self.model_info_.row_dim if self.model_info_.site_row_axis.get(
                self.model_info_.outcome_site) is not None else None,
            local_sites=tuple(self.model_info_.local_sites),
            cache_key=self._cache_key() if train_model is model else None,
        )
        self.diagnostics_ = result.diagnostics
        labels = self._labels(self._row_labels_fit, self.model_info_)
        posterior = {**result.draws, **result.deterministic}
        row_axes = {k: self.model_info_.site_row_axis.get(k) for k in posterior}
        groups = {
            "posterior": make_dataset(posterior, labels, row_axes),
            "observed_data": self._observed_dataset(y, labels),
        }
        if "diverging" in result.diagnostics:
            groups["sample_stats"] = make_dataset(
                {"diverging": result.diagnostics["diverging"]}, labels
            )
        self.posterior_ = make_tree(groups, attrs=self._attrs())
        self._finish_fit()
        return self

    def _finish_fit(self):
        """Hook for diagnostics after a fit (see :mod:`skimpact.diagnostics`)."""
        from .diagnostics import finish_fit

        finish_fit(self)

    def summary(self, var_names=None, prob=0.94):
        """Posterior summary per parameter element, like NumPyro's ``print_summary``.

        Parameters
        ----------
        var_names : list of str, optional
            Parameters to summarise; default those that do not vary by row.
        prob : float, default=0.94
            Probability mass of the highest-density interval.

        Returns
        -------
        pandas.DataFrame
            Columns ``mean``, ``sd``, ``median``, ``hdi_lower``, ``hdi_upper``,
            ``ess_bulk``, ``ess_tail``, ``r_hat``; one row per parameter element.
        """
        from .diagnostics import summary

        check_is_fitted(self, "posterior_")
        return summary(self.posterior_, var_names=var_names, prob=prob)

    def _check_params(self):
        if self.inference not in _INFERENCE:
            raise ValueError(f"`inference` must be one of {_INFERENCE}; got {self.inference!r}.")
        for name in ("num_steps", "num_samples", "num_chains", "num_warmup"):
            value = getattr(self, name)
            low = 0 if name == "num_warmup" else 1
            if not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")
        if not 0 < self.target_accept_prob < 1:
            raise ValueError("`target_accept_prob` must be in (0, 1).")
        if self.missing not in ("error", "mask"):
            raise ValueError(f"`missing` must be 'error' or 'mask'; got {self.missing!r}.")

    def _resolve_model(self, X):
        if self.model is None:
            return self._default_model()
        return as_model(self.model)

    def _prediction_model(self):
        model = self.model_.build()
        if self.reparam:
            model = handlers.reparam(model, config=self.reparam)
        return model

    def _cache_key(self):
        reparam = None
        if self.reparam:
            reparam = tuple(
                (k, type(r).__name__, repr(sorted(vars(r).items())))
                for k, r in sorted(self.reparam.items())
            )
        return (self.model_.cache_key(), reparam, self.outcome)

    def _default_inputs(self, X, y, mask, sample_weight=None):
        return {}

    def _check_weighted_targets(self, y, sample_weight):
        """Hook: reject targets that positive weights reduce to a degenerate problem."""

    # ----------------------------------------------------------------- validation
    def _split_inputs(self, X, inputs, reset=False):
        """Take the columns named in ``inputs=`` out of a DataFrame X as keyword inputs."""
        names = list(self.inputs or ())
        if names:
            if not isinstance(X, pd.DataFrame):
                raise TypeError(
                    f"`inputs={names}` takes model inputs from DataFrame columns, but X is "
                    f"{type(X).__name__}. Pass a DataFrame, or pass the inputs as keyword "
                    "arguments."
                )
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise ValueError(f"Input column(s) {missing} are not columns of X.")
            inputs = {**{c: X[c].to_numpy() for c in names}, **inputs}
            X = X.drop(columns=names)
        if reset:
            self._row_labels_fit = _row_labels(X)
        return X, inputs

    def _validate_xy(self, X, y):
        _check_finite(X, "X")
        _check_finite(y, "y", allow_nan=self.missing == "mask")
        if self.missing == "mask":
            return self._validate_xy_masked(X, y)
        return validate_data(
            self, X, y, reset=True, dtype=np.float32,
            y_numeric=not isinstance(self, ClassifierMixin),
        )

    def _validate_xy_masked(self, X, y):
        X = validate_data(self, X, reset=True, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32 if not isinstance(self, ClassifierMixin) else None)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},); got {y.shape}.")
        return X, y

    def _validate_X(self, X):
        _check_finite(X, "X")
        return validate_data(self, X, reset=False, dtype=np.float32)

    def _validate_inputs(self, inputs, n, reset=False):
        if reset:
            self.input_names_ = tuple(inputs)
        else:
            missing = [k for k in self.input_names_ if k not in inputs]
            extra = [k for k in inputs if k not in self.input_names_]
            if missing or extra:
                raise ValueError(
                    f"The model was fitted with inputs {list(self.input_names_)}; "
                    + (f"missing {missing}. " if missing else "")
                    + (f"unexpected {extra}." if extra else "")
                )
        out = {}
        for k, v in inputs.items():
            arr = np.asarray(v)
            if arr.dtype.kind in "fc":
                arr = arr.astype(np.float32)
            elif arr.dtype.kind == "b":
                arr = arr.astype(np.int32)
            _check_finite(arr, f"input {k!r}")
            out[k] = jnp.asarray(arr)
        if reset:
            self.row_inputs_ = tuple(k for k, v in out.items() if v.ndim >= 1 and v.shape[0] == n)
        for k in self.row_inputs_:
            if out[k].shape[0] != n:
                raise ValueError(
                    f"Input {k!r} has {out[k].shape[0]} rows; X has {n}. Per-row inputs need "
                    "one entry per row of X."
                )
        return out

    def _observed(self, y):
        """The outcome as the model observes it and, with ``missing='mask'``, its mask."""
        y = np.asarray(y)
        if self.missing == "mask" and y.dtype.kind == "f" and np.isnan(y).any():
            mask = ~np.isnan(y)
            return jnp.asarray(np.where(mask, y, 0.0).astype(y.dtype)), jnp.asarray(mask)
        return jnp.asarray(y), None

    def _observed_dataset(self, y, labels):
        y = np.asarray(y)
        return make_dataset({self.model_info_.outcome_site: y[None, None]}, labels, {
            self.model_info_.outcome_site: -1
        }).squeeze(("chain", "draw"), drop=True)

    def _labels(self, rows, info):
        return Labels(
            info.row_dim,
            rows,
            site_plates=info.site_plates,
            feature_names=getattr(self, "feature_names_in_", None),
        )

    # -------------------------------------------------------------- randomness
    def _key(self, purpose):
        """A JAX key for ``purpose``: fixed for an int ``random_state``, fresh for None."""
        rs = self.random_state
        if isinstance(rs, numbers.Integral):
            seed = int(rs)
        elif isinstance(rs, np.random.Generator):
            seed = int(rs.integers(2**31 - 1))
        else:
            seed = int(check_random_state(rs).randint(2**31 - 1))
        salt = {"fit": 0, "predict": 1, "prior": 2}[purpose]
        return jax.random.fold_in(jax.random.PRNGKey(seed), salt)

    def _attrs(self, **extra):
        settings = {
            k: v
            for k, v in self.get_params(deep=False).items()
            if k not in ("model", "reparam", "guide")
        }
        attrs = {
            "inference": self.inference,
            "inference_settings": encode_attr(settings),
            "model": repr(self.model_),
            "guide": encode_attr(self.guide if isinstance(self.guide, str) else repr(self.guide)),
            "reparam": encode_attr({k: type(v).__name__ for k, v in (self.reparam or {}).items()}),
        }
        attrs.update({k: encode_attr(v) for k, v in extra.items()})
        return attrs

    # ---------------------------------------------------------------- prediction
    def _draws(self):
        post = self.posterior_["posterior"]
        return flatten_chains({k: post[k].values for k in self.model_info_.latent_sites})

    def _engine(self):
        return PredictiveEngine(self._prediction_model(), self._cache_key(), self.model_info_)

    def _prepare(self, X, inputs, intervention=None):
        """Validated X, inputs and the resolved intervention for a prediction call."""
        check_is_fitted(self, "posterior_")
        X, inputs = self._split_inputs(X, inputs)
        n = _num_rows(X)
        columns = list(X.columns) if isinstance(X, pd.DataFrame) else list(range(_num_cols(X)))
        resolved = resolve_intervention(
            intervention,
            info=self.model_info_,
            input_names=self.input_names_,
            columns=columns,
            n_rows=n,
        )
        rows = _row_labels(X)
        X, inputs = apply_to_inputs(resolved, X, inputs)
        Xa = self._validate_X(X)
        inputs = self._validate_inputs(inputs, Xa.shape[0])
        inputs = {**self._default_inputs(None, None, None), **inputs}
        return Xa, inputs, resolved, rows

    @_serialised
    def _run(
        self, X, inputs, resolved, *, return_sites, outcome_stat="sample", in_sample=False,
        key=None, sink=None,
    ):
        """Run the engine; returns ``(arrays with (chain, draw) axes, row_axes)``."""
        info = self.model_info_
        if in_sample and info.local_sites and X.shape[0] != self._n_train():
            raise ValueError(
                f"in_sample=True uses the fitted values of the local latent sites "
                f"{sorted(info.local_sites)}, one per training row; X has {X.shape[0]} rows, "
                f"the training data {self._n_train()}. Use in_sample=False for new rows."
            )
        request = Request(
            return_sites=tuple(return_sites),
            do_sites=tuple(resolved.sites),
            fixed_sites=tuple(resolved.fixed),
            shifts=resolved.shifts,
            outcome_stat=outcome_stat,
            local_from_posterior=bool(in_sample),
        )
        values = {**resolved.sites, **resolved.fixed}
        if self.progress_bar:
            from .diagnostics import _ProgressSink

            sink = _ProgressSink(sink, X.shape[0])
        out, row_axes = self._engine().run(
            self._draws(),
            X,
            inputs,
            values,
            request,
            self._key("predict") if key is None else key,
            batch_size=self.batch_size,
            sink=sink,
        )
        n_chain = self.posterior_["posterior"].sizes["chain"]
        if isinstance(out, dict):
            out = {k: v.reshape((n_chain, -1) + v.shape[1:]) for k, v in out.items()}
        return out, row_axes

    def _n_train(self):
        return self.posterior_["observed_data"].sizes[self.model_info_.row_dim]

    def _return_sites(self, return_sites):
        info = self.model_info_
        if return_sites is None:
            return (info.outcome_site, *[s for s in info.local_sites])
        known = set(info.sites)
        unknown = [s for s in return_sites if s not in known]
        if unknown:
            raise KeyError(f"Unknown site(s) {unknown} in return_sites; the model has {sorted(known)}.")
        return tuple(return_sites)

    def _outcome_draws(self, X, inputs, intervention=None, stat="sample"):
        X, inputs, resolved, _ = self._prepare(X, inputs, intervention)
        out, _ = self._run(
            X, inputs, resolved, return_sites=(self.model_info_.outcome_site,), outcome_stat=stat
        )
        return flatten_chains(out)[self.model_info_.outcome_site]

    def sample_posterior_predictive(
        self, X, intervention=None, *, in_sample=False, return_sites=None, store=None, **inputs
    ):
        """Posterior predictive draws for the rows of ``X`` as a DataTree.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        intervention : dict, optional
            ``{site or input: value}``; see :meth:`counterfactual_predict`.
        in_sample : bool, default=False
            ``True``: X are the training rows; draws are stored in the ``posterior_predictive``
            group and local latent sites keep their fitted values. ``False``: new rows; draws
            go to ``predictions`` and local latents are drawn given the global parameters.
        return_sites : list of str, optional
            Sites to keep; default the outcome and the local latent sites.
        store : str, os.PathLike or zarr store, optional
            Stream every batch to this Zarr store as it is computed, so memory is bounded
            by the batch; the returned DataTree reads lazily (Dask) from the store. A path
            must not exist yet; it is written under a temporary name and renamed when
            complete.
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        xarray.DataTree
            Groups ``posterior`` and ``posterior_predictive`` or ``predictions``.
        """
        return effects.counterfactual_predict(
            self, X, intervention, in_sample=in_sample, return_sites=return_sites, store=store,
            **inputs,
        )

    def sample_prior_predictive(
        self, X, *, num_samples=None, return_sites=None, store=None, **inputs
    ):
        """Draws of the fitted model's prior and prior predictive for the rows of ``X``.

        The model runs with its hyperparameters (and, for the built-in models, the data
        scaling found at fit) but without the outcome and without the posterior.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        num_samples : int, optional
            Number of prior draws; default the estimator's ``num_samples``.
        return_sites : list of str, optional
            Sites to keep; default every latent, deterministic and observed site.
        store : str, os.PathLike or zarr store, optional
            Write the tree to this Zarr store (under a temporary name, renamed when
            complete) and return it read lazily from there.
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        xarray.DataTree
            Groups ``prior`` (latent and deterministic sites) and ``prior_predictive``
            (observed sites, the outcome among them), with dims ``chain`` (one chain),
            ``draw`` and the model's named dims.
        """
        from numpyro.infer import Predictive

        X, inputs, _, rows = self._prepare(X, inputs)
        info = self.model_info_
        sites = list(info.sites) if return_sites is None else list(self._return_sites(return_sites))
        n = int(num_samples or self.num_samples)
        draws = Predictive(self._prediction_model(), num_samples=n, return_sites=sites)(
            self._key("prior"), X, **inputs
        )
        draws = {k: np.asarray(v)[None] for k, v in draws.items() if k in sites}
        labels = self._labels(rows, info)
        observed = set(info.observed_sites)
        groups = {}
        for group, names in (
            ("prior", [k for k in draws if k not in observed]),
            ("prior_predictive", [k for k in draws if k in observed]),
        ):
            if names:
                groups[group] = make_dataset(
                    {k: draws[k] for k in names}, labels,
                    {k: info.site_row_axis.get(k) for k in names},
                )
        tree = make_tree(groups, attrs=self._attrs(quantity="prior"))
        return tree if store is None else write_tree(tree, store)

    def render_model(self, X, y=None, *, filename=None, render_distributions=False,
                     render_params=False, **inputs):
        """Draw the model's graph with :func:`numpyro.render_model` (needs graphviz).

        See :func:`skimpact.plotting.render_model`.
        """
        from .plotting import render_model

        return render_model(
            self, X, y, filename=filename, render_distributions=render_distributions,
            render_params=render_params, **inputs,
        )

    def counterfactual_predict(
        self, X, intervention, *, in_sample=False, return_sites=None, store=None, **inputs
    ):
        """Predict under a do-intervention, keeping every posterior draw.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        intervention : dict
            Maps names to values. A **model site** (sample or deterministic) is set with
            NumPyro's ``handlers.do`` semantics, so sites downstream follow it; an **input**
            (a keyword input or a column of X) is replaced before the model runs. Values are
            scalars or arrays broadcasting to the per-row shape; a callable
            ``f(factual) -> value`` shifts the factual value (e.g. ``lambda p: 1.1 * p``).
        in_sample : bool, default=False
            Store draws under ``posterior_predictive`` (training rows) or ``predictions``.
        return_sites : list of str, optional
            Sites to keep; default the outcome and the local latent sites.
        store : str, os.PathLike or zarr store, optional
            Stream the draws to this Zarr store; see :meth:`sample_posterior_predictive`.
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        xarray.DataTree
            As :meth:`sample_posterior_predictive`, with the intervention in the attrs.
        """
        return self.sample_posterior_predictive(
            X, intervention, in_sample=in_sample, return_sites=return_sites, store=store,
            **inputs,
        )

    def _tree(self, out, row_axes, rows, in_sample, intervention, group=None, extra_attrs=None):
        labels = self._labels(rows, self.model_info_)
        group = group or ("posterior_predictive" if in_sample else "predictions")
        attrs = self._attrs(intervention=describe(intervention), **(extra_attrs or {}))
        return make_tree(
            {"posterior": self.posterior_["posterior"].to_dataset(),
             group: make_dataset(out, labels, row_axes)},
            attrs=attrs,
        )

    def effect(self, X, intervention, baseline=None, *, kind="predictive", in_sample=False,
               return_sites=None, store=None, **inputs):
        """Effect of ``intervention`` against ``baseline`` per draw and row.

        See :func:`skimpact.effect`.
        """
        return effects.effect(
            self, X, intervention, baseline, kind=kind, in_sample=in_sample,
            return_sites=return_sites, store=store, **inputs,
        )

    def estimate_effect(self, output_baseline=None, output_intervention=None,
                        args_baseline=None, args_intervention=None, *, store=None):
        """Effect from two scenarios, each given eagerly (a DataTree) or lazily (a dict of
        :meth:`counterfactual_predict` arguments). See :func:`skimpact.estimate_effect`."""
        return effects.estimate_effect(
            self, output_baseline, output_intervention, args_baseline, args_intervention,
            store=store,
        )

    def predict_quantiles(self, X, q, intervention=None, **inputs):
        """Quantiles of the posterior predictive distribution of the outcome per row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        q : float or array-like of float in [0, 1]
        intervention : dict, optional
        **inputs : array-like

        Returns
        -------
        ndarray of shape (n_samples, n_quantiles) or DataFrame indexed like X
        """
        q = np.atleast_1d(np.asarray(q, dtype=float))
        if np.any((q < 0) | (q > 1)):
            raise ValueError(f"Quantiles must lie in [0, 1]; got {q}.")
        draws = self._outcome_draws(X, inputs, intervention)
        out = np.quantile(draws, q, axis=0).T
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=list(q))
        return out

    def predict_interval(self, X, coverage=0.9, intervention=None, **inputs):
        """Central posterior predictive interval of the outcome per row.

        Returns
        -------
        ndarray of shape (n_samples, 2) or DataFrame with columns ``lower`` and ``upper``
        """
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be in (0, 1); got {coverage}.")
        out = self.predict_quantiles(
            X, [(1 - coverage) / 2, (1 + coverage) / 2], intervention, **inputs
        )
        if isinstance(out, pd.DataFrame):
            out.columns = ["lower", "upper"]
        return out

    def score(self, X, y, sample_weight=None, **inputs):
        """R² (regressor) or accuracy (classifier) of :meth:`predict` on ``(X, y)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        float
        """
        metric = accuracy_score if isinstance(self, ClassifierMixin) else r2_score
        return metric(y, self.predict(X, **inputs), sample_weight=sample_weight)

    # ------------------------------------------------------------ log-likelihood
    @_serialised
    def log_likelihood(self, X, y, *, in_sample=False, store=None, **inputs):
        """Pointwise log-likelihood of ``y`` given ``X`` for every posterior draw.

        Each draw's latent values are substituted into the model, which is traced with the
        outcome observed; the outcome site's log-density is kept per row (the weights and
        masks of the fit are not applied).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Observed outcomes (class labels for a classifier).
        in_sample : bool, default=False
            ``True``: X are the training rows and local latent sites keep their fitted
            values (what PSIS-LOO needs). ``False``: new rows; local latent sites are drawn
            given the global parameters.
        store : str, os.PathLike or zarr store, optional
            Stream the log-likelihood to this Zarr store batch by batch; see
            :meth:`sample_posterior_predictive`.
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        xarray.DataTree
            Groups ``posterior``, ``log_likelihood`` (the outcome site with dims ``chain``,
            ``draw`` and the row dim) and ``observed_data``.
        """
        Xa, inputs, resolved, rows = self._prepare(X, inputs)
        _check_finite(y, "y")
        site = self.model_info_.outcome_site
        # the substitute + trace recipe: the outcome observed, its log-density per draw
        inputs = {**inputs, self.outcome: jnp.asarray(self._encode_outcome(y, Xa.shape[0]))}
        labels = self._labels(rows, self.model_info_)

        def build(arrays, row_axes):
            return make_tree(
                {
                    "posterior": self.posterior_["posterior"].to_dataset(),
                    "log_likelihood": make_dataset(arrays, labels, row_axes),
                    "observed_data": self._observed_dataset(y, labels),
                },
                attrs=self._attrs(),
            )

        sink = None if store is None else ZarrSink(
            store, build, group="log_likelihood",
            n_chain=self.posterior_["posterior"].sizes["chain"],
        )
        out, row_axes = self._run(
            Xa, inputs, resolved, return_sites=(site,), outcome_stat="log_prob",
            in_sample=in_sample, sink=sink,
        )
        return out if store is not None else build(out, row_axes)

    def _encode_outcome(self, y, n):
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},); got {y.shape}.")
        return y.astype(np.float32)

    def loo(self, X, y, *, pointwise=False, **inputs):
        """PSIS-LOO estimate of the expected log pointwise predictive density (ELPD).

        Computed from the fitted posterior and the training data, without refitting, with
        :func:`arviz_stats.loo`; compare models by their ``elpd``.

        Parameters
        ----------
        X : array-like or DataFrame
            The training features (the rows the posterior was fitted to).
        y : array-like
            The training outcome.
        pointwise : bool, default=False
            Also return the pointwise ELPD and Pareto k values.
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        ELPDData
            With ``elpd``, ``se``, ``p`` and, if ``pointwise``, ``elpd_i`` and ``pareto_k``.
        """
        from arviz_stats import loo

        tree = self.log_likelihood(X, y, in_sample=True, **inputs)
        # Draws of SVI and MAP are independent; only MCMC draws need an ESS-based r_eff.
        reff = None if self.inference == "nuts" else 1.0
        return loo(tree, pointwise=pointwise, var_name=self.model_info_.outcome_site, reff=reff)

    # ----------------------------------------------------------- metadata routing
    def set_fit_request(self, **requests):
        """Request metadata for ``fit`` (model inputs by name, ``sample_weight``) when
        metadata routing is enabled; returns ``self``.

        Model inputs arrive as ``**inputs``, whose names scikit-learn cannot read from the
        signature, so any name is accepted: ``est.set_fit_request(C=True)``.
        """
        return self._set_request("fit", requests)

    def set_predict_request(self, **requests):
        """Request metadata (model inputs by name) for ``predict``; returns ``self``."""
        return self._set_request("predict", requests)

    def set_score_request(self, **requests):
        """Request metadata (model inputs, ``sample_weight``) for ``score``; returns ``self``."""
        return self._set_request("score", requests)

    def _set_request(self, method, requests):
        from sklearn import get_config
        from sklearn.utils.metadata_routing import UNCHANGED

        if not get_config().get("enable_metadata_routing", False):
            raise RuntimeError(
                f"set_{method}_request is only available when metadata routing is enabled: "
                "sklearn.set_config(enable_metadata_routing=True)."
            )
        metadata = self._get_metadata_request()
        for name, alias in requests.items():
            if alias is not UNCHANGED:
                getattr(metadata, method).add_request(param=name, alias=alias)
        self._metadata_request = metadata
        return self


class ImpactRegressor(RegressorMixin, _ImpactBase):
    """A NumPyro model as a scikit-learn regressor with a full posterior.

    Parameters
    ----------
    model : Model, callable or None, default=None
        A :class:`~skimpact.Model` (factory and hyperparameters, tunable as
        ``model__<name>``), a bare NumPyro model ``model(X, y=None, **inputs)``, or
        ``None`` for a Bayesian linear regression with weakly informative priors scaled to
        the data.
    inference : {"svi", "nuts", "map"}, default="svi"
        Variational inference with ``guide``, NUTS MCMC, or a MAP point estimate.
    guide : str, AutoGuide class or callable, default="AutoNormal"
        Autoguide for SVI: a name in ``numpyro.infer.autoguide``, a class (built with
        ``init_to_median``), or ``callable(model) -> guide`` such as
        ``functools.partial(AutoNormal, init_loc_fn=init_to_feasible)``.
    learning_rate : float, default=0.01
        Adam step size for SVI and MAP.
    num_steps : int, default=3000
        SVI / MAP optimisation steps.
    num_warmup : int, default=500
        NUTS warm-up iterations per chain.
    num_samples : int, default=500
        Posterior draws kept (per chain for NUTS).
    num_chains : int, default=1
        NUTS chains (run in parallel across devices when there are enough).
    target_accept_prob : float, default=0.8
        NUTS target acceptance probability.
    reparam : dict, optional
        ``{site: Reparam}`` applied with ``numpyro.handlers.reparam``, e.g.
        ``{"theta": LocScaleReparam(centered=0)}``.
    outcome : str, default="y"
        The model's keyword argument that receives ``y``.
    inputs : list of str, optional
        Columns of a DataFrame X passed to the model as keyword inputs of the same name
        rather than as features, so one DataFrame drives the model (and a Pipeline).
    missing : {"error", "mask"}, default="error"
        ``"mask"``: rows with NaN outcome are left out of the likelihood with a mask.
    batch_size : int, optional
        Rows per prediction batch; chosen from a memory budget when omitted.
    fit_batch_size : int, optional
        Minibatch SVI / MAP: each step runs the model on this many random rows, the
        log-likelihood of the data plate scaled by ``n_rows / fit_batch_size`` (the ELBO
        stays unbiased), so memory per step does not grow with the data. Models with local
        latent sites need full batches.
    random_state : int, RandomState, Generator or None, default=None
        Seeds fitting and every prediction method; an int makes them deterministic.
    progress_bar : bool, default=False
        Show progress bars: SVI steps or NUTS iterations during ``fit``, and rows of
        predictions computed in several batches.

    Attributes
    ----------
    posterior_ : xarray.DataTree
        Groups ``posterior`` (draws with dims ``chain``, ``draw``, ...), ``observed_data``
        and, for NUTS, ``sample_stats``.
    model_ : Model
        The model that was fitted.
    model_info_ : ModelInfo
        Outcome site, row plate, latent and deterministic sites found by tracing the model.
    diagnostics_ : dict
        What inference reported (SVI loss trace, NUTS divergences, timings) and the
        convergence checks of :mod:`skimpact.diagnostics` (``r_hat``, ``ess_bulk``,
        ``ess_tail``, ``elbo_rel_change``, ``converged``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when X had string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 1))
    >>> y = 1 + 2 * X[:, 0] + rng.normal(0, 0.5, 100)
    >>> est = ImpactRegressor(num_steps=1000, random_state=0).fit(X, y)
    >>> est.predict(X[:2]).round(1)
    array([1.3, 0.7], dtype=float32)
    """

    # the mixin's score() takes no model inputs; ours passes them on to predict()
    score = _ImpactBase.score

    def _default_model(self):
        return Model(linear_model)

    def _default_inputs(self, X, y, mask, sample_weight=None):
        if not _is_builtin(self.model, linear_model):
            return {}
        if X is not None:
            w = np.ones(np.shape(y)) if sample_weight is None else np.asarray(sample_weight)
            if mask is not None:
                w = w * np.asarray(mask)
            x_loc, x_scale = _weighted_loc_scale(X, w)
            y_loc, y_scale = _weighted_loc_scale(np.asarray(y)[:, None], w)
            self._scales = {
                "x_loc": jnp.asarray(x_loc),
                "x_scale": jnp.asarray(x_scale),
                "y_loc": jnp.asarray(y_loc[0]),
                "y_scale": jnp.asarray(y_scale[0]),
            }
        return dict(self._scales)

    def predict(self, X, intervention=None, **inputs):
        """Posterior mean of the outcome's expected value per row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        intervention : dict, optional
            See :meth:`counterfactual_predict`.
        **inputs : array-like

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        try:
            draws = self._outcome_draws(X, inputs, intervention, stat="mean")
        except ValueError as exc:
            if "closed-form mean" not in str(exc):
                raise
            draws = self._outcome_draws(X, inputs, intervention)
        return draws.mean(axis=0)

class ImpactClassifier(ClassifierMixin, _ImpactBase):
    """A NumPyro model as a scikit-learn classifier with a full posterior.

    Labels of any type are encoded as ``0 .. n_classes - 1`` before the model sees them.
    With ``model=None`` the model is a Bayesian logistic (two classes) or multinomial
    logistic regression with weakly informative priors on standardised features. The
    parameters are those of :class:`ImpactRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    posterior_, model_, model_info_, diagnostics_, n_features_in_, feature_names_in_
        As for :class:`ImpactRegressor`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    >>> clf = ImpactClassifier(num_steps=1000, random_state=0).fit(X, y)
    >>> clf.classes_.tolist()
    ['no', 'yes']
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def _validate_xy(self, X, y):
        y_arr = np.asarray(y)
        if not (self.missing == "mask" and y_arr.dtype.kind == "f"):
            check_classification_targets(y)
        X, y = super()._validate_xy(X, y)
        self._encoder = LabelEncoder()
        observed = ~pd.isna(y)
        y_enc = np.full(y.shape, np.nan) if not observed.all() else np.empty(y.shape, np.int32)
        y_enc[observed] = self._encoder.fit_transform(y[observed])
        self.classes_ = self._encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"ImpactClassifier needs at least 2 classes in y; got {len(self.classes_)} "
                f"class ({self.classes_.tolist()})."
            )
        return X, y_enc.astype(np.int32) if observed.all() else y_enc.astype(np.float32)

    score = _ImpactBase.score

    def _default_model(self):
        return Model(logistic_model, n_classes=len(self.classes_))

    def _default_inputs(self, X, y, mask, sample_weight=None):
        if not _is_builtin(self.model, logistic_model):
            return {}
        if X is not None:
            x_loc, x_scale = _weighted_loc_scale(X, sample_weight)
            self._scales = {"x_loc": jnp.asarray(x_loc), "x_scale": jnp.asarray(x_scale)}
        return dict(self._scales)

    def _check_weighted_targets(self, y, sample_weight):
        kept = np.unique(np.asarray(y)[(sample_weight > 0) & ~pd.isna(y)])
        if kept.size < 2:
            raise ValueError(
                f"ImpactClassifier needs rows of at least 2 classes with positive "
                f"sample_weight; got {kept.size} class."
            )

    def predict_proba(self, X, intervention=None, **inputs):
        """Posterior mean class probabilities per row.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self, "posterior_")
        try:
            probs = self._outcome_draws(X, inputs, intervention, stat="probs")
            probs = np.asarray(probs, dtype=np.float64).mean(0)
        except AttributeError:  # the outcome distribution has no `probs`: count draws
            draws = self._outcome_draws(X, inputs, intervention).astype(int)
            probs = np.stack([(draws == k).mean(0) for k in range(len(self.classes_))], -1)
        return np.asarray(probs, dtype=np.float64)

    def predict(self, X, intervention=None, **inputs):
        """Most probable class label per row (posterior mean probabilities)."""
        check_is_fitted(self, "posterior_")
        return self.classes_[np.argmax(self.predict_proba(X, intervention, **inputs), axis=1)]

    def _encode_outcome(self, y, n):
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},); got {y.shape}.")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown.tolist()} not seen in fit.")
        return self._encoder.transform(y).astype(np.int32)


# ------------------------------------------------------------------------ helpers
def _check_finite(X, what, allow_nan=False):
    """Raise a ValueError naming the columns of ``X`` that hold NaN or infinity."""
    if isinstance(X, pd.DataFrame):
        cols = [c for c in X.columns if X[c].dtype.kind in "fc"]
        bad = [c for c in cols if not np.all(np.isfinite(X[c].to_numpy(dtype=float, na_value=np.nan)))]
        if bad:
            raise ValueError(
                f"{what} contains NaN or infinity in column(s) {bad}. Impute or drop these "
                "values first (e.g. sklearn.impute.SimpleImputer in a Pipeline)."
            )
        return
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
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


def _safe_std(X):
    s = np.asarray(X, dtype=np.float32).std(0)
    return np.where(s > 0, s, 1.0).astype(np.float32)


def _row_labels(X):
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.index.to_numpy()
    return np.arange(_num_rows(X))


def _num_rows(X):
    if hasattr(X, "shape"):
        return X.shape[0]
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]


def _is_builtin(model, factory):
    """Whether ``model`` (the estimator's parameter) is the built-in ``factory``, which
    takes the data's location and scale as inputs: ``None`` or ``Model(factory, ...)``."""
    return model is None or (isinstance(model, Model) and model.factory is factory)


def _weighted_loc_scale(X, weight=None):
    """Column means and standard deviations of ``X`` (float32) under frequency weights,
    so that a row of weight 2 gives the same scaling as that row repeated."""
    X = np.asarray(X, dtype=np.float64)
    if weight is None:
        return X.mean(0).astype(np.float32), _safe_std(X)
    w = np.asarray(weight, dtype=np.float64)
    loc = (w @ X) / w.sum()
    scale = np.sqrt((w @ (X - loc) ** 2) / w.sum())
    return loc.astype(np.float32), np.where(scale > 0, scale, 1.0).astype(np.float32)


def _validated_sample_weight(sample_weight, n):
    """``sample_weight`` as a float32 array of shape ``(n,)``, finite, non-negative and not
    all zero (any array-like: list, Series, objects with ``__array__``)."""
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.ndim == 0:
        sample_weight = np.full(n, float(sample_weight))
    if sample_weight.shape != (n,):
        raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected ({n},).")
    if np.any(sample_weight < 0) or not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight must be finite and non-negative.")
    if not np.any(sample_weight > 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sample_weight.astype(np.float32)


def _num_cols(X):
    shape = X.shape if hasattr(X, "shape") else np.asarray(X).shape
    return shape[1] if len(shape) > 1 else 1
