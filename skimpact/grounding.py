"""Grounding an observational model on experiments: a bias term the experiments identify.

A model fitted to observational data answers "what if the treatment changed" with its own
contrast, which hidden confounding biases. Multiplying its likelihood by an experiment's
likelihood then gives a compromise between the two, weighted by their precisions, not a
correction. Grounding (after Kallus, Puli and Shalit 2018) lets the observational
contrast differ from the true effect by a bias ``delta(x)`` per unit of treatment::

    observational contrast = true effect + delta(x) * (change of the treatment)
    delta(x) = delta_0 + sum_j delta_j x_j          (the columns chosen, if any)

with ``Normal(0, scale)`` priors on the deltas. The observational rows fit the model as
they are; each experiment observes the model's contrast less the bias on its rows, so the
experiments identify ``delta`` and every prediction is corrected: an outcome predicted
under a treatment ``t`` for rows whose factual treatment is ``t_f`` is lowered by
``delta(x) (t - t_f)``, and an effect of ``t_1`` against ``t_0`` by ``delta(x) (t_1 - t_0)``.
The bias sites are part of the posterior, so its draws report the size of the bias.
"""

from dataclasses import dataclass

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

__all__ = ["BIAS_SITES", "Grounding"]

#: The latent sites of the bias: its constant and its coefficients on the chosen columns.
BIAS_SITES = ("experiment_bias", "experiment_bias_coef")


@dataclass(frozen=True)
class Grounding:
    """The bias term of a grounded fit.

    Parameters
    ----------
    treatment : tuple
        ``("column", position in the model's X)`` or ``("input", name)``: where the model
        reads the treatment.
    columns : tuple of int
        Positions in the model's X of the columns the bias varies with (empty: constant).
    scale : float
        Prior standard deviation of each bias term, in outcome units per unit of treatment.
    """

    treatment: tuple
    columns: tuple = ()
    scale: float = 1.0

    @property
    def sites(self):
        """The latent sites this grounding adds to the fit."""
        return BIAS_SITES if self.columns else BIAS_SITES[:1]

    def sample(self):
        """Sample the bias sites (inside a model); ``{site: value}``."""
        values = {BIAS_SITES[0]: numpyro.sample(BIAS_SITES[0], dist.Normal(0.0, self.scale))}
        if self.columns:
            values[BIAS_SITES[1]] = numpyro.sample(
                BIAS_SITES[1],
                dist.Normal(0.0, self.scale).expand([len(self.columns)]).to_event(1))
        return values

    def treatment_of(self, X, inputs):
        """The treatment's value in each row."""
        source, where = self.treatment
        return X[:, where] if source == "column" else jnp.asarray(inputs[where])

    def shift(self, values, X, inputs, factual_X, factual_inputs):
        """``delta(x) (t - t_f)`` per row: what the model's prediction under ``X`` and
        ``inputs`` overstates, the bias taken at the factual rows."""
        delta = values[BIAS_SITES[0]]
        if self.columns:
            delta = delta + factual_X[:, list(self.columns)] @ values[BIAS_SITES[1]]
        change = self.treatment_of(X, inputs) - self.treatment_of(factual_X, factual_inputs)
        return delta * change
