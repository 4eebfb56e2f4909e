"""
Tune a Pipeline with GridSearchCV and a CRPS scorer
===================================================

Tune a skimpact model inside a scikit-learn Pipeline and read off an intervention's effect.
A DataFrame with a numeric price, a numeric advertising spend and a categorical region goes
through a ColumnTransformer (scaling, one-hot encoding) into an ImpactRegressor. GridSearchCV
tunes the model's prior scale together with the inference's step count, scored by the
continuous ranked probability score (CRPS) of the posterior predictive draws. The best
pipeline then answers: what happens to sales if every price goes up by 1?

Run: ``python examples/pipeline_search.py``
"""

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skimpact import ImpactRegressor, Model, effect, summarize_effect
from skimpact.metrics import neg_crps_scorer
from skimpact.builtin_models import linear_model

TRUE_PRICE_EFFECT = -3.0


def simulate(n=300, seed=0):
    """Sales that fall by 3 per unit of price and rise with advertising, by region."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "price": rng.uniform(5, 15, n),
            "advertising": rng.gamma(2.0, 1.5, n),
            "region": rng.choice(["north", "south", "west"], n),
        }
    )
    region_effect = data["region"].map({"north": 0.0, "south": 4.0, "west": -2.0})
    sales = (
        60 + TRUE_PRICE_EFFECT * data["price"] + 2.0 * data["advertising"] + region_effect
        + rng.normal(0, 2.0, n)
    )
    return data, sales.to_numpy()


def main():
    X, y = simulate()
    pipeline = make_pipeline(
        ColumnTransformer(
            [
                ("numeric", StandardScaler(), ["price", "advertising"]),
                ("region", OneHotEncoder(drop="first"), ["region"]),
            ]
        ),
        ImpactRegressor(
            Model(linear_model), inference="svi", num_samples=200, learning_rate=0.05,
            random_state=0,
        ),
    )
    search = GridSearchCV(
        pipeline,
        {
            "impactregressor__model__prior_scale": [0.1, 2.5],
            "impactregressor__num_steps": [200, 600],
        },
        scoring=neg_crps_scorer,
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    print("best hyperparameters:", search.best_params_)
    print(f"best cross-validated CRPS: {-search.best_score_:.3f}")

    # Intervention on a raw column: price + 1 for every row, applied before the scaler.
    eff = effect(search.best_estimator_, X, {"price": lambda p: p + 1.0}, kind="mean")
    print("effect on sales of raising every price by 1 (true effect -3.0):")
    print(summarize_effect(eff, prob=0.94).round(3).to_string())
    return search, eff


if __name__ == "__main__":
    main()
