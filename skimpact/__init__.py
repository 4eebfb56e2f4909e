"""skimpact: Bayesian impact models written in NumPyro, used as scikit-learn estimators."""

__version__ = "0.1.0"

from .experiments import Experiment
from .effects import counterfactual_predict, effect, estimate_effect, summarize_effect
from .estimator import ImpactClassifier, ImpactRegressor
from .inference import InferenceError
from .model import Model
from .refute import refute, sensitivity

__all__ = [
    "Experiment",
    "ImpactClassifier",
    "ImpactRegressor",
    "InferenceError",
    "Model",
    "counterfactual_predict",
    "effect",
    "estimate_effect",
    "refute",
    "sensitivity",
    "summarize_effect",
]
