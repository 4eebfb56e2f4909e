"""skimpact: Bayesian impact models written in NumPyro, used as scikit-learn estimators."""

__version__ = "0.1.0"

from ._compilation_cache import enable_compilation_cache

enable_compilation_cache()

from .experiments import Experiment, ExperimentConflictWarning
from .effects import (
    ConstantEffectWarning, counterfactual_predict, effect, estimate_effect, summarize_effect,
)
from .estimator import ImpactClassifier, ImpactRegressor
from . import choice
from .inference import InferenceError
from .mediation import mediation
from .model import Model
from .effect_model import effect_model
from .pipeline import (
    log_likelihood, loo, predict_interval, predict_quantiles, sample_posterior_predictive, summary,
)
from .refute import refute, sensitivity

__all__ = [
    "ConstantEffectWarning",
    "Experiment",
    "ExperimentConflictWarning",
    "ImpactClassifier",
    "ImpactRegressor",
    "InferenceError",
    "Model",
    "counterfactual_predict",
    "effect",
    "effect_model",
    "estimate_effect",
    "log_likelihood",
    "loo",
    "mediation",
    "predict_interval",
    "predict_quantiles",
    "refute",
    "sample_posterior_predictive",
    "sensitivity",
    "summarize_effect",
    "summary",
]
