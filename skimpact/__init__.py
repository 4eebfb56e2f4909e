"""skimpact: Bayesian impact models written in NumPyro, used as scikit-learn estimators."""

__version__ = "0.1.0"

from .effects import counterfactual_predict, effect, estimate_effect, summarize_effect
from .estimator import ImpactClassifier, ImpactRegressor
from . import choice
from .inference import InferenceError
from .model import Model

__all__ = [
    "ImpactClassifier",
    "ImpactRegressor",
    "InferenceError",
    "Model",
    "counterfactual_predict",
    "effect",
    "estimate_effect",
    "summarize_effect",
]
