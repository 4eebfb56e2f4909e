"""The scikit-learn face of skimpact: :class:`ImpactRegressor` and :class:`ImpactClassifier`.

``fit`` validates the parameters and builds the fitted collaborators, each in its own
module, and afterwards the estimator only delegates to them; nothing calls back:

* :class:`~skimpact.layout.InputLayout` (``layout.py``): validation of X and inputs, row
  labels, column interventions;
* :class:`~skimpact.program.Program` (``program.py``): the model with its reparameterisation,
  outcome name, model info, cache key and data scales;
* :func:`~skimpact.inference.run_inference` (``inference.py``): the posterior draws;
* :class:`~skimpact.posterior.FittedPosterior` (``posterior.py``): draws, program and layout,
  with the one ``predict`` that effects, metrics and plots use.

Everything predictions need is frozen at ``fit``: ``set_params`` changes nothing until the
next ``fit``.
"""

import functools
import hashlib
import inspect
import numbers
import warnings
from abc import ABCMeta, abstractmethod
from dataclasses import replace
from numbers import Integral, Real
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer.reparam import Reparam
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._param_validation import (
    Interval, InvalidParameterError, StrOptions, validate_parameter_constraints)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from . import effects, pipeline
from ._sinks import ZarrSink, check_target, write_tree
from .dask_dispatch import accepts_dask
from .choice import (
    NUTS_SETTINGS, SVI_SETTINGS, after_over_budget, choose_inference, latent_dimension,
)
from .experiments import (
    ExperimentConflictWarning, as_list, calibrated_model, conflicts, grounding_for,
    resolve_experiments,
)
from .convergence import finish_fit
from .plotting import render_model
from .posterior_summary import summary
from .inference import NutsOverBudget, run_inference
from .methods import get_method, method_names
from .layout import InputLayout
from .builtin_models import builtin_offsets, builtin_scales, linear_model, logistic_model
from .inspection import ModelRef
from .model import FIT_SETTINGS, Model, as_model
from .posterior import NUMPYRO_LOCK, FittedPosterior, make_key
from .program import build_program, training_model
from .schema import DeferredTree, Labels, log_likelihood_tree, posterior_tree, prior_tree

__all__ = ["ImpactRegressor", "ImpactClassifier"]

#: Warnings of fit are attributed to the user's line that called it.
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class _RoutingMixin:
    """``set_*_request`` for model inputs, whose names scikit-learn cannot read from the
    ``**inputs`` signatures."""

    def set_fit_request(self, **requests):
        """Request metadata for ``fit`` (model inputs by name, ``sample_weight``) when
        metadata routing is enabled; returns ``self``.

        Model inputs arrive as ``**inputs``, whose names scikit-learn cannot read from the
        signature, so any name is accepted: ``est.set_fit_request(C=True)``.

        Examples
        --------
        >>> import sklearn
        >>> from skimpact import ImpactRegressor
        >>> with sklearn.config_context(enable_metadata_routing=True):
        ...     est = ImpactRegressor().set_fit_request(C=True).set_predict_request(C=True)
        ...     est.get_metadata_routing().fit.requests["C"]
        True
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


#: The largest count a parameter may hold: counts are int32 inside JAX.
INT32_MAX = 2**31 - 1


class _InferenceNames(StrOptions):
    """The values ``inference=`` takes: ``"auto"`` and the inference methods registered
    when the parameters are validated (:mod:`skimpact.methods`), not when the class was
    defined."""

    def __init__(self):
        super().__init__({"auto"})

    def is_satisfied_by(self, val):
        return isinstance(val, str) and (val == "auto" or val in method_names())

    def __str__(self):
        return f"a str among {{{', '.join(map(repr, ('auto', *method_names())))}}}"


class _ImpactBase(_RoutingMixin, BaseEstimator, metaclass=ABCMeta):
    """Shared scikit-learn face of the skimpact estimators (not public)."""

    _parameter_constraints = {
        "model": [Model, callable, None],
        "inference": [_InferenceNames()],
        "guide": [str, type, callable],
        # counts run as int32 loop bounds inside JAX: 2**40 steps overflowed there
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "num_steps": [Interval(Integral, 1, INT32_MAX, closed="both")],
        "num_warmup": [Interval(Integral, 0, INT32_MAX, closed="both")],
        "num_samples": [Interval(Integral, 1, INT32_MAX, closed="both")],
        "num_chains": [Interval(Integral, 1, INT32_MAX, closed="both"), None],
        "target_accept_prob": [Interval(Real, 0, 1, closed="neither")],
        "reparam": [dict, None],
        "outcome": [str],
        "row_plate": [str, None],
        "inputs": [list, tuple, None],
        "missing": [StrOptions({"error", "mask"})],
        "batch_size": [Interval(Integral, 1, INT32_MAX, closed="both"), None],
        "fit_batch_size": [Interval(Integral, 1, INT32_MAX, closed="both"), None],
        "random_state": ["random_state"],
        "progress_bar": ["boolean"],
        "experiment_bias": [StrOptions({"auto", "none", "constant"}), list, tuple],
    }

    def _validate_params(self):
        """scikit-learn's checks, and no bool for a number: ``True`` is an Integral to
        Python, so ``num_steps=True`` passed them and failed deep inside the fit."""
        super()._validate_params()
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name, None)
            numeric = [str(c) for c in constraints if isinstance(c, Interval)]
            if "random_state" in constraints:
                numeric.append("an int seed, a RandomState or None")
            if isinstance(value, (bool, np.bool_)) and numeric:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be "
                    f"{' or '.join(numeric)}, not a bool; got {value!r}."
                )
        bad = {k: v for k, v in (self.reparam or {}).items()
               if not isinstance(k, str) or not isinstance(v, Reparam)}
        if bad:
            raise InvalidParameterError(
                f"The 'reparam' parameter of {type(self).__name__} must map site names (str) "
                "to numpyro.infer.reparam objects, e.g. {'theta': LocScaleReparam(0)}; got "
                f"{bad!r}."
            )

    def __init__(
        self,
        model=None,
        *,
        inference="auto",
        guide="auto",
        learning_rate=0.01,
        num_steps=3000,
        num_warmup=500,
        num_samples=500,
        num_chains=None,
        target_accept_prob=0.8,
        reparam=None,
        outcome="y",
        row_plate=None,
        inputs=None,
        missing="error",
        batch_size=None,
        fit_batch_size=None,
        random_state=None,
        progress_bar=False,
        experiment_bias="auto",
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
        self.row_plate = row_plate
        self.inputs = inputs
        self.missing = missing
        self.batch_size = batch_size
        self.fit_batch_size = fit_batch_size
        self.random_state = random_state
        self.progress_bar = progress_bar
        self.experiment_bias = experiment_bias

    # ------------------------------------------------------------- sklearn protocol
    def __getstate__(self):
        if callable(self.model) and not isinstance(self.model, Model):
            as_model(self.model).__getstate__()  # a clear error for lambdas and closures
        return super().__getstate__()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Only an int seed fixes every key; None or a RandomState / Generator draws fresh ones.
        tags.non_deterministic = not isinstance(self.random_state, numbers.Integral)
        tags.input_tags.allow_nan = False
        return tags

    @abstractmethod
    def _default_factory(self, classes):
        """The built-in model factory and its hyperparameters for ``model=None``."""

    @abstractmethod
    def _encode_fit_outcome(self, y, sample_weight):
        """``(y as the model observes it, classes or None)``; sets nothing."""

    # -------------------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None, experiments=None, **inputs):
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
        experiments : list of skimpact.Experiment, optional
            Average effects measured in experiments: each adds the likelihood of its
            measured effect given the model's own counterfactual contrast on its rows
            (see :mod:`skimpact.experiments`), less the observational model's bias when
            the fit is grounded (``experiment_bias``). First the model is fitted to the
            observational rows alone and each experiment compared with its prediction of
            the same contrast: ``diagnostics_["experiment_conflicts"]`` records the
            comparison and a disagreement beyond 3 standard errors warns
            (:class:`~skimpact.experiments.ExperimentConflictWarning`).
        **inputs : array-like
            Extra keyword inputs of the model (for example ``C=C``).

        Returns
        -------
        self : object

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> est.posterior_["posterior"]["coef"].mean(("chain", "draw")).values.round(1)
        array([0.9, 2.1], dtype=float32)
        >>> bool(est.diagnostics_["converged"])
        True
        """
        self._validate_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        if any(not isinstance(c, str) for c in self.inputs or ()):
            raise ValueError(f"`inputs` must list column names (str); got {self.inputs!r}.")
        _check_input_names(type(self), inputs)
        with NUMPYRO_LOCK:
            fitted = self._fit(X, y, sample_weight, inputs, experiments)
        # one swap of the fitted state, so a concurrent prediction sees old or new, not both
        vars(self).update(fitted)
        for c in self.diagnostics_.get("experiment_conflicts", ()):
            if c["conflict"]:
                warnings.warn(_conflict_message(c, self.diagnostics_["experiment_bias"],
                                                self.diagnostics_["experiment_ungrounded"]),
                              ExperimentConflictWarning, skip_file_prefixes=(_PACKAGE_DIR,))
        method = get_method(self.inference_)
        self.diagnostics_ = finish_fit(
            self.diagnostics_, method,
            self.posterior_ if method.mcmc else None,  # read for Markov chains only
            sample_sites=self.predictor_.draws,
        )
        return self

    @property
    def posterior_(self):
        """The fitted posterior as a DataTree (see the class's Attributes); built from the
        draws frozen at fit when first read."""
        try:
            deferred = vars(self)["_posterior"]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute 'posterior_': fit it first."
            ) from None
        return deferred.get()

    def _fit(self, X, y, sample_weight, inputs, experiments=None):
        factory = self._default_factory(None)[0]
        builtin = self.model is None or (isinstance(self.model, Model)
                                         and self.model.factory is factory)
        layout = InputLayout(tuple(self.inputs or ()), owner=type(self).__name__,
                             center=builtin, allow_nan_y=self.missing == "mask")
        X64, y, inputs, weights = layout.fit(
            X, y, inputs, y_numeric=not isinstance(self, ClassifierMixin),
            sample_weight=sample_weight,
        )
        observed = ~pd.isna(y)
        w = observed if weights is None else weights * observed
        # the built-in linear model observes y less its mean, taken here in float64
        offsets = builtin_offsets(factory, y, w) if builtin else {}
        y_model, classes = self._encode_fit_outcome(
            y - offsets["y"] if offsets else y, weights)
        hyper = self._default_factory(classes)[1]
        mask = None if observed.all() else jnp.asarray(observed)
        y_model = np.where(observed, y_model, 0).astype(y_model.dtype)
        if self.fit_batch_size is not None and (weights is not None or mask is not None):
            raise ValueError(
                "`fit_batch_size` cannot be combined with sample_weight or masked outcomes."
            )
        spec = Model(factory, **hyper) if self.model is None else as_model(self.model)
        Xm = layout.cast(X64)
        scales = builtin_scales(spec.factory, X64, y_model, w) if builtin else spec.fit_inputs(
            X64, y_model, w, feature_names=getattr(layout, "feature_names_in_", None))
        program = build_program(
            spec, Xm, jnp.asarray(y_model), inputs, reparam=self.reparam,
            outcome=self.outcome, scales=scales, row_inputs=layout.row_inputs_,
            offsets=offsets, row_plate=self.row_plate,
        )
        info = program.info
        layout.keep_whole(info.row_inputs)
        program.check_indices(Xm, inputs, layout.row_inputs_)
        experiments = as_list(experiments or [])
        measured = resolve_experiments(experiments, layout, program,
                                       x_range=(np.min(Xm, 0), np.max(Xm, 0)) if len(Xm) else None)
        checks, bias, ungrounded = [], "none", None
        if measured:
            checks = self._experiment_conflicts(X, y, sample_weight, inputs, experiments)
            bias = self._experiment_bias(checks)
            if bias != "none":
                scale = float(np.std(y_model[observed])) or 1.0
                try:
                    program = replace(program, grounding=grounding_for(
                        experiments, layout, () if bias == "constant" else bias, scale))
                except ValueError as exc:
                    if self.experiment_bias != "auto":
                        raise
                    # "auto" grounds where it can; the warning says why it could not
                    bias, ungrounded = "none", str(exc)
        grounding = program.grounding
        fit_model = calibrated_model(
            training_model(program, scale=None if weights is None else jnp.asarray(weights),
                           mask=mask),
            program, measured)
        fit_kwargs = {self.outcome: jnp.asarray(y_model), **program.inputs(inputs)}
        params, declared = _with_fit_settings(self, spec)
        # fits of one program (same model, shapes, no weights, masks or experiments) share
        # their compiled programs
        cache_key = program.cache_key if weights is None and mask is None and not measured \
            else None
        choice = choose_inference(
            params["inference"], ModelRef(fit_model, cache_key), (Xm,), fit_kwargs,
            latent_dim=latent_dimension(info.site_shapes, info.latent_sites),
            n_rows=Xm.shape[0], settings=params, key=make_key(0, "fit"),
            explicit=_changed_from_defaults(self) | set(declared),
        )
        base = params

        def infer(choice):
            settings = {**base, "inference": choice.method, "guide": choice.guide}
            if choice.num_chains is not None:
                settings["num_chains"] = choice.num_chains
            return settings, run_inference(
                choice.method,
                fit_model,
                (Xm,),
                fit_kwargs,
                latent_sites=info.latent_sites + (grounding.sites if grounding else ()),
                deterministic_sites=info.deterministic_sites,
                key=make_key(self.random_state, "fit"),
                settings=settings,
                row_plate=info.row_dim if info.site_row_axis.get(info.outcome_site) is not None
                else None,
                local_sites=tuple(info.local_sites),
                row_kwargs=(self.outcome, *layout.row_inputs_),
                cache_key=cache_key,
                nuts_budget=choice.nuts_budget,
            )

        while True:  # NUTS over budget: one chain, then SVI, which has no budget
            try:
                params, result = infer(choice)
                break
            except NutsOverBudget as over:
                choice = after_over_budget(choice, over, base)
        if declared:
            choice = replace(choice, reason=(
                f"{type(spec).__name__}.fit_settings() declares "
                f"{', '.join(f'{k}={v!r}' for k, v in declared.items())}, used in place of "
                f"the estimator's defaults. {choice.reason}"))
        attrs = {**_tree_attrs(params, spec), "inference_choice": choice.reason,
                 "experiments": len(measured),
                 "posterior_fingerprint": _draws_fingerprint(result.draws)}
        draws = program.add_offsets({**result.draws, **result.deterministic})
        labels = Labels(info.row_dim, layout.labels_, site_plates=info.site_plates,
                        feature_names=getattr(layout, "feature_names_in_", None))
        y_obs = program.add_offsets({info.outcome_site: y_model})[info.outcome_site]
        y_obs = np.where(observed, y_obs, np.nan) if mask is not None else y_obs
        tree = DeferredTree(
            posterior_tree, draws, labels, {k: info.site_row_axis.get(k) for k in draws},
            observed=(info.outcome_site, y_obs),
            sample_stats=get_method(choice.method).sample_stats(result.diagnostics), attrs=attrs,
        )
        experiment_diagnostics = {"experiment_conflicts": checks, "experiment_bias": bias,
                                  "experiment_ungrounded": ungrounded} if measured else {}
        fitted = {
            "_posterior": tree,
            "diagnostics_": {**result.diagnostics, "inference_choice": choice.as_dict(),
                             **experiment_diagnostics},
            "model_": program.spec,
            "model_info_": info,
            "inference_": choice.method,
            "predictor_": FittedPosterior(
                program, result.draws, layout, attrs=attrs, classes=classes,
                random_state=self.random_state, batch_size=self.batch_size,
                progress_bar=self.progress_bar,
            ),
            "input_names_": layout.input_names_,
            "n_features_in_": layout.n_features_in_,
        }
        if hasattr(layout, "feature_names_in_"):
            fitted["feature_names_in_"] = layout.feature_names_in_
        else:
            vars(self).pop("feature_names_in_", None)
        if classes is not None:
            fitted["classes_"] = classes
        return fitted

    def _predictor(self):
        check_is_fitted(self, "predictor_")
        return self.predictor_

    def _experiment_conflicts(self, X, y, sample_weight, inputs, experiments):
        """Fit a clone to the observational rows alone and compare each experiment with
        its prediction of the same contrast (:func:`skimpact.experiments.conflicts`)."""
        observational = clone(self).fit(X, y, sample_weight=sample_weight, **inputs)
        return conflicts(observational, experiments, effects.effect)

    def _experiment_bias(self, checks):
        """The bias term of the fit: ``experiment_bias``, with ``"auto"`` resolved to a
        constant bias when an experiment conflicts with the observational fit."""
        bias = self.experiment_bias
        if isinstance(bias, str):
            if bias == "auto":
                return "constant" if any(c["conflict"] for c in checks) else "none"
            return bias
        if isinstance(self, ClassifierMixin):
            raise ValueError(
                "experiment_bias with columns grounds a regressor's outcome; for a "
                "classifier use experiment_bias='none'."
            )
        return tuple(bias)

    # ------------------------------------------------------------------ posterior
    def summary(self, var_names=None, prob=0.94):
        """Posterior summary per parameter element, like NumPyro's ``print_summary``.

        See :func:`skimpact.posterior_summary.summary`; the ESS and r_hat columns are shown only
        after NUTS (draws of SVI and MAP are independent or constant: no chain to judge).

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> est.summary(var_names=["coef"])[["mean", "sd"]].round(1)
                   mean   sd
        parameter
        coef[0]     0.9  0.1
        coef[1]     2.1  0.1
        """
        check_is_fitted(self, "posterior_")
        return summary(self.posterior_, var_names=var_names, prob=prob)

    def sample_prior_predictive(self, X, *, num_samples=None, return_sites=None, store=None,
                                **inputs):
        """Draws of the fitted model's prior and prior predictive for the rows of ``X``
        (the fitted hyperparameters and data scaling, no outcome, no posterior).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        num_samples : int, optional
            Number of prior draws; default the fitted ``num_samples``.
        return_sites : list of str, optional
            Sites to keep; default every latent, deterministic and observed site.
        store : str, os.PathLike or zarr store, optional
            Write the tree to this Zarr store and return it read lazily from there.
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        xarray.DataTree
            Groups ``prior`` (latent and deterministic sites) and ``prior_predictive``
            (observed sites, the outcome among them).

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> prior = est.sample_prior_predictive(X[:5], num_samples=50)
        >>> sorted(prior.children), dict(prior["prior_predictive"]["y"].sizes)
        (['prior', 'prior_predictive'], {'chain': 1, 'draw': 50, 'obs': 5})
        """
        pred = self._predictor()
        n = self.posterior_["posterior"].sizes["draw"] * pred.n_chain
        n = n if num_samples is None else num_samples
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}.")
        if store is not None:
            check_target(store)
        info = pred.info
        rows = pred.scenario(X, inputs).rows
        sites = info.sites if return_sites is None else pred.return_sites(return_sites)
        draws = pred.prior(rows, int(n), sites, pred.key("prior"))
        labels = _labels(pred, rows.labels)
        tree = prior_tree(draws, labels, {k: info.site_row_axis.get(k) for k in draws},
                          info.observed_sites, attrs={**pred.attrs, "quantity": "prior"})
        return tree if store is None else write_tree(tree, store)

    def render_model(self, X, y=None, *, filename=None, render_distributions=False,
                     render_params=False, **inputs):
        """Draw the model's graph with :func:`numpyro.render_model` (needs graphviz).

        See :func:`skimpact.plotting.render_model`.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> graph = est.render_model(X)   # a graphviz.Digraph; graph.render() draws it
        >>> type(graph).__name__
        'Digraph'
        """
        return render_model(self, X, y, filename=filename,
                            render_distributions=render_distributions,
                            render_params=render_params, **inputs)

    # ---------------------------------------------------------------- predictions
    def sample_posterior_predictive(self, X, intervention=None, *, in_sample=False,
                                    return_sites=None, store=None, **inputs):
        """Posterior predictive draws for the rows of ``X`` as a DataTree.

        See :func:`skimpact.counterfactual_predict`; ``in_sample=True`` means X are the
        training rows (checked), stored under ``posterior_predictive`` with the local latent
        sites at their fitted values; else ``predictions``.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> tree = est.sample_posterior_predictive(X, in_sample=True)
        >>> sorted(tree.children), dict(tree["posterior_predictive"]["y"].sizes)
        (['posterior', 'posterior_predictive'], {'chain': 1, 'draw': 100, 'obs': 100})
        """
        return effects.counterfactual_predict(
            self, X, intervention, in_sample=in_sample, return_sites=return_sites,
            store=store, **inputs,
        )

    def counterfactual_predict(self, X, intervention, *, in_sample=False, return_sites=None,
                               store=None, semantics="counterfactual", **inputs):
        """Predict under a do-intervention, keeping every posterior draw.

        See :func:`skimpact.counterfactual_predict`.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> tree = est.counterfactual_predict(X[:5], {0: 0.0})   # set column 0 to zero
        >>> dict(tree["predictions"]["y"].sizes)
        {'chain': 1, 'draw': 100, 'obs': 5}
        """
        return effects.counterfactual_predict(
            self, X, intervention, in_sample=in_sample, return_sites=return_sites,
            store=store, semantics=semantics, **inputs,
        )

    def effect(self, X, intervention, baseline=None, *, kind=None, in_sample=False,
               return_sites=None, store=None, semantics="counterfactual", **inputs):
        """Effect of ``intervention`` against ``baseline`` per draw and row.

        See :func:`skimpact.effect`.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> from skimpact import summarize_effect
        >>> eff = est.effect(X, {0: X[:, 0] + 1.0}, kind="mean")   # raise column 0 by one
        >>> summarize_effect(eff)[["mean", "sd"]].round(1)
                mean   sd
        effect
        ATE      0.9  0.1
        """
        return effects.effect(
            self, X, intervention, baseline, kind=kind, in_sample=in_sample,
            return_sites=return_sites, store=store, semantics=semantics, **inputs,
        )

    def estimate_effect(self, output_baseline=None, output_intervention=None,
                        args_baseline=None, args_intervention=None, *, store=None):
        """Effect from two scenarios, each given eagerly (a DataTree) or lazily (a dict of
        :meth:`counterfactual_predict` arguments). See :func:`skimpact.estimate_effect`.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> from skimpact import summarize_effect
        >>> base = est.counterfactual_predict(X, None)                # eager: a tree
        >>> eff = est.estimate_effect(
        ...     output_baseline=base,
        ...     args_intervention={"X": X, "intervention": {1: X[:, 1] + 1.0}})  # lazy
        >>> round(float(summarize_effect(eff)["mean"].iloc[0]), 1)
        2.1
        """
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

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> quantiles = est.predict_quantiles(X[:2], [0.05, 0.5, 0.95])
        >>> quantiles.shape, bool((quantiles[:, 0] < quantiles[:, 2]).all())
        ((2, 3), True)
        """
        return pipeline.predict_quantiles(self, X, q, intervention, **inputs)

    def predict_interval(self, X, coverage=0.9, intervention=None, **inputs):
        """Central posterior predictive interval of the outcome per row.

        Returns
        -------
        ndarray of shape (n_samples, 2) or DataFrame with columns ``lower`` and ``upper``

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> interval = est.predict_interval(X[:2], coverage=0.9)
        >>> interval.shape, bool((interval[:, 0] < est.predict(X[:2])).all())
        ((2, 2), True)
        """
        return pipeline.predict_interval(self, X, coverage, intervention, **inputs)

    def score(self, X, y, sample_weight=None, **inputs):
        """R² (regressor) or accuracy (classifier) of :meth:`predict` on ``(X, y)``.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> round(est.score(X, y), 2)
        0.95
        """
        metric = accuracy_score if isinstance(self, ClassifierMixin) else r2_score
        return metric(y, self.predict(X, **inputs), sample_weight=sample_weight)

    # -------------------------------------------------------------- log-likelihood
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
            ``True``: X are the training rows (checked) and local latent sites keep their
            fitted values (what PSIS-LOO needs). ``False``: new rows.
        store : str, os.PathLike or zarr store, optional
            Stream the log-likelihood to this Zarr store batch by batch.
        **inputs : array-like
            The model's keyword inputs.

        Returns
        -------
        xarray.DataTree
            Groups ``posterior``, ``log_likelihood`` and ``observed_data``.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> tree = est.log_likelihood(X, y, in_sample=True)
        >>> dict(tree["log_likelihood"]["y"].sizes)
        {'chain': 1, 'draw': 100, 'obs': 100}
        """
        pred = self._predictor()
        if store is not None:
            check_target(store)
        site = pred.info.outcome_site
        scenario = pred.log_likelihood_scenario(X, y, inputs, in_sample=in_sample)
        labels = _labels(pred, scenario.rows.labels)
        posterior = self.posterior_["posterior"].to_dataset()

        def build(arrays, row_axes):
            return log_likelihood_tree(posterior, arrays, labels, row_axes,
                                       (site, np.asarray(y)), attrs=pred.attrs)

        sink = None if store is None else ZarrSink(store, build, group="log_likelihood",
                                                   n_chain=pred.n_chain)
        out, row_axes = pred.predict(scenario, pred.key(), sink=sink)
        return out if store is not None else build(out, row_axes)

    def loo(self, X, y, *, pointwise=False, **inputs):
        """PSIS-LOO estimate of the expected log pointwise predictive density (ELPD).

        Computed from the fitted posterior and the training rows (checked), without
        refitting, with :func:`arviz_stats.loo`; compare models by their ``elpd``.

        Returns
        -------
        ELPDData
            With ``elpd``, ``se``, ``p`` and, if ``pointwise``, ``elpd_i`` and ``pareto_k``.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=1000,
        ...                       random_state=0).fit(X, y)
        >>> bool(-95 < est.loo(X, y).elpd < -80)
        True
        """
        from arviz_stats import loo

        pred = self._predictor()
        rows = pred.scenario(X, inputs).rows
        if not pred.layout.is_training_rows(rows):
            raise ValueError(
                f"loo needs the training rows in their training order (PSIS-LOO leaves each "
                f"out of the fitted posterior without refitting), but these {rows.n} rows "
                f"differ from the {pred.layout.labels_.shape[0]} training rows. Pass the X "
                "(and inputs) the estimator was fitted on; for new rows, score them with "
                "log_likelihood(X, y) or refit on them."
            )
        tree = self.log_likelihood(X, y, in_sample=True, **inputs)
        # Draws of SVI and MAP are independent; only MCMC draws need an ESS-based r_eff.
        reff = None if get_method(self.inference_).mcmc else 1.0
        return loo(tree, pointwise=pointwise, var_name=self.model_info_.outcome_site, reff=reff)


def _mean_over_draws(draws, rows):
    """Mean over the draws of one batch, in float64."""
    return np.asarray(draws, dtype=np.float64).mean(0)


@functools.cache
def _method_keywords(cls):
    """``{name: methods}``: the named parameters of the public methods of ``cls`` that also
    pass ``**inputs`` to the model."""
    names = {}
    for attr in dir(cls):
        method = getattr(cls, attr)
        if attr.startswith("_") or not inspect.isfunction(method):
            continue
        params = list(inspect.signature(method).parameters.values())[1:]
        if any(p.kind is p.VAR_KEYWORD for p in params):
            for p in params:
                if p.kind is not p.VAR_KEYWORD:
                    names.setdefault(p.name, []).append(attr)
    return names


def _check_input_names(cls, inputs):
    """A keyword input named like a method's own parameter (``store``, ``kind``, ...) would
    be taken by that method instead of reaching the model: refuse it at fit."""
    taken = _method_keywords(cls)
    clash = [k for k in inputs if k in taken]
    if clash:
        k = clash[0]
        methods = ", ".join(f"{m}()" for m in taken[k])
        raise ValueError(
            f"Model input {k!r} is passed as a keyword argument, but {methods} of "
            f"{cls.__name__} take a parameter {k!r} of their own, so the model would not "
            f"receive it there. Pass it as a DataFrame column named in `inputs=` (for "
            f"example inputs=[{k!r}]), or rename the model's argument."
        )


def _draws_fingerprint(draws):
    """A hash of the posterior draws: every output tree records it, so that scenarios
    predicted by different fits (or refits) are not contrasted as if they shared one."""
    h = hashlib.sha1()
    for name in sorted(draws):
        value = np.ascontiguousarray(np.asarray(draws[name]))
        h.update(f"{name}:{value.dtype}:{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _changed_from_defaults(estimator, names=(*SVI_SETTINGS, *NUTS_SETTINGS)):
    """The settings among ``names`` (by default those that only one inference method
    reads) whose values differ from ``__init__``'s defaults."""
    defaults = {k: p.default for k, p in
                inspect.signature(type(estimator).__init__).parameters.items()}
    params = estimator.get_params(deep=False)
    return {k for k in names
            if type(params[k]) is not type(defaults[k]) or params[k] != defaults[k]}


def _with_fit_settings(estimator, spec):
    """The estimator's parameters with the settings ``spec.fit_settings()`` declares in
    place of those left at their defaults, and the declared settings so used."""
    params = estimator.get_params(deep=False)
    declared = dict(spec.fit_settings())
    unknown = sorted(set(declared) - set(FIT_SETTINGS))
    if unknown:
        raise ValueError(f"{type(spec).__name__}.fit_settings() declares {unknown}; a model "
                         f"may declare only {list(FIT_SETTINGS)}.")
    validate_parameter_constraints(
        {k: estimator._parameter_constraints[k] for k in declared}, declared,
        caller_name=f"{type(spec).__name__}.fit_settings")
    changed = _changed_from_defaults(estimator, FIT_SETTINGS)
    used = {k: v for k, v in declared.items() if k not in changed}
    return {**params, **used}, used


def _conflict_message(check, bias, ungrounded=None):
    """The warning for an experiment that the observational fit contradicts."""
    if bias != "none":
        then = (
            "The fit is grounded on the experiments (experiment_bias resolved to "
            f"{bias!r}): the observational contrast is allowed a bias the experiments "
            "measure, and effects are corrected by it (posterior site 'experiment_bias')."
        )
    elif ungrounded:
        then = (
            "The fit settles between the two, weighted by their precisions: a compromise, "
            f"not a correction, because experiment_bias='auto' could not ground it: "
            f"{ungrounded}"
        )
    else:
        then = (
            "With experiment_bias='none' the fit settles between the two, weighted by their "
            "precisions: a compromise, not a correction. Use experiment_bias='auto' or "
            "'constant' to correct the observational model by the experiments."
        )
    return (
        f"Experiment {check['experiment']} measured {check['measured']:.4g} ± "
        f"{check['se']:.2g}, but the observational fit predicts {check['predicted']:.4g} ± "
        f"{check['predicted_sd']:.2g} for the same contrast on its rows ({check['z']:+.1f} "
        "standard errors): the observational model is biased for this effect (hidden "
        f"confounding or a wrong functional form). {then}"
    )


def _tree_attrs(params, spec):
    """What every output tree of a fit records about its settings."""
    settings = {k: v for k, v in params.items() if k not in ("model", "reparam", "guide")}
    guide = params["guide"]
    return {
        "inference": params["inference"],
        "inference_settings": settings,
        "model": repr(spec),
        "guide": guide if isinstance(guide, str) else repr(guide),
        "reparam": {k: type(v).__name__ for k, v in (params["reparam"] or {}).items()},
    }


def _labels(pred, row_labels):
    info = pred.info
    return Labels(info.row_dim, row_labels, site_plates=info.site_plates,
                  feature_names=getattr(pred.layout, "feature_names_in_", None))


class ImpactRegressor(RegressorMixin, _ImpactBase):
    """A NumPyro model as a scikit-learn regressor with a full posterior.

    Parameters
    ----------
    model : Model, callable or None, default=None
        A :class:`~skimpact.Model` (factory and hyperparameters, tunable as
        ``model__<name>``), a bare NumPyro model ``model(X, y=None, **inputs)``, or
        ``None`` for a Bayesian linear regression with weakly informative priors scaled to
        the data (:func:`skimpact.builtin_models.linear_model`).
    inference : {"auto", "svi", "nuts", "map"} or str, default="auto"
        Variational inference with ``guide``, NUTS MCMC, a MAP point estimate, the name of
        another method registered with :func:`skimpact.methods.register_method`, or
        ``"auto"``: chosen per fit by :mod:`skimpact.choice`. ``"auto"`` times one
        gradient of the model's log-density and runs NUTS when its expected cost,
        ``(num_warmup + num_samples) x num_chains x`` expected leapfrog steps (``8 x
        latent_dim ** 0.25``) ``x`` gradient time, is at most 30 s for one chain (or
        ``num_chains`` when set; two chains when they fit too), which covers
        regression-sized models up to tens of thousands of rows; otherwise SVI with
        ``guide``. The choice and its reason are recorded in
        ``diagnostics_["inference_choice"]``, ``inference_`` and the output trees'
        attrs; on a loaded machine a model near the 30 s boundary may be fitted either
        way, so set ``inference`` explicitly where that matters. A model may declare the
        settings it is fitted with best (:meth:`skimpact.Model.fit_settings`;
        :func:`skimpact.effect_model` declares SVI): each replaces the estimator's own
        setting where that is at its default.
    guide : str, AutoGuide class or callable, default="auto"
        Autoguide for SVI: ``"auto"`` (a full-rank ``AutoMultivariateNormal`` up to 200
        latent dims, ``AutoLowRankMultivariateNormal`` up to 20,000, the mean-field
        ``AutoNormal`` above), a name in ``numpyro.infer.autoguide``, a class (built with
        ``init_to_median``), or ``callable(model) -> guide`` such as
        ``functools.partial(AutoNormal, init_loc_fn=init_to_feasible)``. A mean-field
        guide warns when the posterior is strongly correlated (see
        :mod:`skimpact.convergence`).
    learning_rate : float, default=0.01
        Adam step size for SVI and MAP (positive), for the first two thirds of the steps;
        the last third tapers it to a tenth and the fit reports the mean of the guide's
        parameters over the taper (:mod:`skimpact.inference`).
    num_steps : int, default=3000
        SVI / MAP optimisation steps.
    num_warmup : int, default=500
        NUTS warm-up iterations per chain.
    num_samples : int, default=500
        Posterior draws kept (per chain for NUTS).
    num_chains : int or None, default=None
        NUTS chains (run in parallel across devices when there are enough, else one after
        another). ``None``: two, so that r_hat compares chains; with ``inference="auto"``,
        one when two would exceed its budget.
    target_accept_prob : float, default=0.8
        NUTS target acceptance probability.
    reparam : dict, optional
        ``{site: Reparam}`` applied with ``numpyro.handlers.reparam``, e.g.
        ``{"theta": LocScaleReparam(centered=0)}``; every key must be a latent site.
    outcome : str, default="y"
        The model's keyword argument that receives ``y``; the outcome site is the sample
        site that observes it as given (``numpyro.sample("y", ..., obs=y)``).
    row_plate : str, optional
        Name of the plate over the rows of X. By default the outcome site's plate over its
        first batch axis (the axis of y), whatever its name; a model without one has its
        rows in a dim named ``"obs"``. Sample sites inside the row plate are local latents,
        one value per row; output dims are named after it.
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
        stays unbiased). Models with local latent sites need full batches.
    random_state : int, RandomState, Generator or None, default=None
        Seeds fitting and every prediction method; an int makes them deterministic.
    progress_bar : bool, default=False
        Show progress bars: SVI steps or NUTS iterations during ``fit``, and rows of
        predictions computed in several batches.
    experiment_bias : {"auto", "none", "constant"} or list, default="auto"
        How ``fit(..., experiments=[...])`` combines experiments with the observational
        rows (see :mod:`skimpact.grounding`). ``"none"``: each experiment is a likelihood
        term of the model's own contrast, so a biased observational model and an
        experiment settle between each other. ``"constant"``: the fit is grounded, the
        observational contrast allowed a bias per unit of the treatment that the
        experiments identify, and every prediction and effect is corrected by it (its
        draws are the posterior site ``experiment_bias``). A list of columns lets the bias
        vary linearly with them. ``"auto"``: ``"constant"`` when an experiment contradicts
        the observational fit beyond 3 standard errors, else ``"none"``. Grounding needs
        experiments of one treatment column or input.

    Attributes
    ----------
    posterior_ : xarray.DataTree
        Groups ``posterior`` (draws with dims ``chain``, ``draw``, ...), ``observed_data``
        and, for NUTS, ``sample_stats``.
    predictor_ : FittedPosterior
        The fitted program, draws and input layout every prediction runs through.
    model_ : Model
        The model that was fitted.
    model_info_ : ModelInfo
        Outcome site, row plate, latent and deterministic sites found by tracing the model.
    inference_ : str
        The inference method the fit ran (``"auto"`` resolved to ``"nuts"`` or ``"svi"``).
    diagnostics_ : dict
        What inference reported (SVI loss trace, NUTS divergences, timings) and the
        convergence checks of :mod:`skimpact.convergence` (``converged`` among them).
    input_names_ : tuple of str
        The model's keyword inputs at fit.
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
    >>> est = ImpactRegressor(random_state=0).fit(X, y)
    >>> est.inference_                    # "auto" chose NUTS for this small model
    'nuts'
    >>> est.predict(X[:2]).round(1)
    array([1.2, 0.7])
    """

    # the mixin's score() takes no model inputs; ours passes them on to predict()
    score = _ImpactBase.score

    def _default_factory(self, classes):
        return linear_model, {}

    def _encode_fit_outcome(self, y, sample_weight):
        return np.asarray(y, dtype=np.float32), None

    @accepts_dask("predict")
    def predict(self, X, intervention=None, **inputs):
        """Posterior mean of the outcome's expected value per row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Or a Dask DataFrame or array: predicted partition by partition, the result a
            Dask array (:mod:`skimpact.distributed`).
        intervention : dict, optional
            See :meth:`counterfactual_predict`.
        **inputs : array-like

        Returns
        -------
        ndarray of shape (n_samples,)

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactRegressor
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2)); y = 1 + X @ [1.0, 2.0] + rng.normal(0, 0.5, 100)
        >>> est = ImpactRegressor(inference="svi", num_steps=1000, num_samples=100,
        ...                       random_state=0).fit(X, y)
        >>> est.predict(X[:3]).round(1)
        array([0.8, 1.7, 1.2])
        >>> est.predict(X[:3], intervention={0: 0.0}).round(1)   # column 0 set to zero
        array([0.6, 1.1, 1.7])
        """
        stat = self._predictor().mean_stat()
        return effects.outcome_draws(self, X, intervention, stat=stat,
                                     reduce=lambda draws, rows: draws.mean(0), **inputs)


class ImpactClassifier(ClassifierMixin, _ImpactBase):
    """A NumPyro model as a scikit-learn classifier with a full posterior.

    Labels of any type are encoded as ``0 .. n_classes - 1`` before the model sees them.
    With ``model=None`` the model is a Bayesian logistic (two classes) or multinomial
    logistic regression with weakly informative priors on standardised features
    (:func:`skimpact.builtin_models.logistic_model`). The parameters are those of
    :class:`ImpactRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    posterior_, predictor_, model_, model_info_, inference_, diagnostics_, input_names_, \
n_features_in_, feature_names_in_
        As for :class:`ImpactRegressor`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    >>> clf = ImpactClassifier(random_state=0).fit(X, y)
    >>> clf.classes_.tolist()
    ['no', 'yes']
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    score = _ImpactBase.score

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def _default_factory(self, classes):
        return logistic_model, {"n_classes": 0 if classes is None else len(classes)}

    def fit(self, X, y, sample_weight=None, experiments=None, **inputs):
        y_arr = np.asarray(y) if y is not None else None
        if y_arr is not None and y_arr.dtype.kind == "O" and y_arr.ndim == 1:
            # missing labels (None, NaN) among labels of any type: scikit-learn calls their
            # type "unknown", or fails comparing None with a string
            missing = pd.isna(y_arr)
            if missing.any():
                if self.missing != "mask":
                    raise ValueError(
                        f"y contains missing labels (None or NaN) in {int(missing.sum())} "
                        "rows; drop those rows, or fit with missing='mask' to leave them out "
                        "of the likelihood."
                    )
                labels = np.array(y_arr[~missing].tolist())  # their own dtype
                check_classification_targets(labels)
                if labels.dtype.kind in "biuf":  # numbers: as float labels with NaN
                    y_arr = np.full(y_arr.shape, np.nan)
                    y_arr[~missing] = labels
                return super().fit(X, y_arr, sample_weight, experiments, **inputs)
        # float labels with NaN or infinity get the input layout's error, which names the fix
        if y_arr is not None and not (y_arr.dtype.kind == "f"
                                      and (self.missing == "mask"
                                           or not np.isfinite(y_arr).all())):
            check_classification_targets(y)
        return super().fit(X, y, sample_weight, experiments, **inputs)

    fit.__doc__ = _ImpactBase.fit.__doc__

    def _encode_fit_outcome(self, y, sample_weight):
        observed = ~pd.isna(y)
        classes = np.unique(y[observed])
        if len(classes) < 2:
            raise ValueError(
                f"ImpactClassifier needs at least 2 classes in y; got {len(classes)} "
                f"class ({classes.tolist()})."
            )
        if sample_weight is not None:
            kept = np.unique(y[(sample_weight > 0) & observed])
            if kept.size < 2:
                raise ValueError(
                    "ImpactClassifier needs rows of at least 2 classes with positive "
                    f"sample_weight; got {kept.size} class."
                )
        codes = np.zeros(y.shape, np.int32)
        codes[observed] = np.searchsorted(classes, y[observed])
        return codes, classes

    @accepts_dask("predict_proba")
    def predict_proba(self, X, intervention=None, **inputs):
        """Posterior mean class probabilities per row.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactClassifier
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2))
        >>> y = np.where(X[:, 0] + rng.normal(0, 0.5, 100) > 0, "yes", "no")
        >>> clf = ImpactClassifier(inference="svi", num_steps=1000, num_samples=100,
        ...                        random_state=0).fit(X, y)
        >>> clf.predict_proba(X[:2]).round(2)
        array([[0.64, 0.36],
               [0.16, 0.84]])
        """
        pred = self._predictor()
        if "probs" in pred.info.outcome_stats:
            return effects.outcome_draws(self, X, intervention, stat="probs",
                                         reduce=_mean_over_draws, **inputs)
        # an outcome distribution without class probabilities: count the sampled classes
        n_classes = len(pred.classes)

        def shares(draws, rows):
            draws = draws.astype(int)
            return np.stack([(draws == k).mean(0) for k in range(n_classes)], -1)

        return effects.outcome_draws(self, X, intervention, reduce=shares, **inputs)

    @accepts_dask("predict")
    def predict(self, X, intervention=None, **inputs):
        """Most probable class label per row (posterior mean probabilities).

        Examples
        --------
        >>> import numpy as np
        >>> from skimpact import ImpactClassifier
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 2))
        >>> y = np.where(X[:, 0] + rng.normal(0, 0.5, 100) > 0, "yes", "no")
        >>> clf = ImpactClassifier(inference="svi", num_steps=1000, num_samples=100,
        ...                        random_state=0).fit(X, y)
        >>> clf.predict(X[:4])
        array(['no', 'yes', 'no', 'yes'], dtype='<U3')
        """
        classes = self._predictor().classes
        return classes[np.argmax(self.predict_proba(X, intervention, **inputs), axis=1)]
