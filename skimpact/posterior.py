"""The fitted posterior: draws and program, and the one ``predict`` behind every output.

:class:`FittedPosterior` is built once at fit from the inference result. It holds the flat
draws of the latent sites (chains stacked), the chain count, the :class:`~skimpact.program.
Program` and the fingerprint of the training rows, and predicts with the compiled engine
of :mod:`skimpact.predictive`. Effects, metrics and plots use it (and public API) only;
nothing here knows of scikit-learn estimators.
"""

import numbers
import threading
from dataclasses import dataclass, replace
from functools import lru_cache

import jax
import numpy as np
import pandas as pd
from numpyro.infer import Predictive
from sklearn.utils import check_random_state

from ._sinks import OffsetSink, ProgressSink
from .predictive import PredictiveEngine, Request
from .propagation import DATA, check_semantics, dependency_graph, downstream

__all__ = ["FittedPosterior", "NUMPYRO_LOCK", "Scenario", "make_key"]

_SALT = {"fit": 0, "predict": 1, "prior": 2}

#: NumPyro's effect handlers live on one global stack, so two threads tracing models at
#: once corrupt each other (threaded joblib or Dask workers). Everything that traces a
#: model (fit, predictions, prior draws, rendering) holds this lock.
NUMPYRO_LOCK = threading.RLock()


@dataclass(frozen=True)
class Scenario:
    """One scenario to predict: validated rows and what the engine returns for them.

    Made by :meth:`FittedPosterior.scenario`, predicted by :meth:`FittedPosterior.predict`
    (or, against a baseline, :meth:`FittedPosterior.predict_contrast`).

    Attributes
    ----------
    rows : skimpact.layout.Rows
        X, the keyword inputs and the resolved intervention.
    request : skimpact.predictive.Request
        Sites, statistic and semantics of the prediction.
    """

    rows: object
    request: object

    def with_request(self, **changes):
        """The same rows with ``changes`` to the request (e.g. ``held=`` sites)."""
        return replace(self, request=replace(self.request, **changes))


class FittedPosterior:
    """Posterior draws of a fitted program, with the input layout of its training data.

    Parameters
    ----------
    program : skimpact.program.Program
    draws : dict of str to ndarray
        ``(chain, draw, ...)`` draws of the latent sample sites.
    layout : skimpact.layout.InputLayout
        Fitted on the training rows.
    attrs : dict
        Attributes every output tree carries (inference settings, model).
    classes : ndarray, optional
        Labels of the outcome's categories (classifiers), encoded ``0 .. K - 1``.
    random_state : int, RandomState, Generator or None
        Source of prediction keys: an int gives the same key on every call.
    batch_size : int, optional
        Rows per prediction batch (chosen from a memory budget when None).
    progress_bar : bool
        Show a bar over the rows of predictions computed in several batches.
    """

    def __init__(self, program, draws, layout, *, attrs=None, classes=None, random_state=None,
                 batch_size=None, progress_bar=False):
        self.program = program
        first = next(iter(draws.values())) if draws else np.zeros((1, 1))
        self.n_chain, self.n_draw = first.shape[:2]
        self.draws = {k: np.asarray(v).reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
        self.layout = layout
        self.attrs = dict(attrs or {})
        self.classes = classes
        self.random_state = random_state
        self.batch_size = batch_size
        self.progress_bar = progress_bar
        self._engine = _engine(program)
        self._graph = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_engine")
        state["_graph"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._engine = _engine(self.program)

    def key(self, purpose="predict"):
        """A JAX key for ``purpose``: fixed for an int ``random_state``, fresh otherwise."""
        return make_key(self.random_state, purpose)

    def scenario(self, X, inputs, intervention=None, *, raw_columns=(), factual=None,
                 return_sites=None, outcome_stat="sample", in_sample=False,
                 semantics="counterfactual"):
        """The rows of ``X`` under ``intervention``, and what to predict for them.

        Parameters
        ----------
        X : array-like or DataFrame
            Rows in the model's columns (after a Pipeline's transformers).
        inputs : dict
            The model's keyword inputs.
        intervention : dict, optional
            ``{site, input or column: value}``, resolved and validated against the model
            (see :meth:`skimpact.layout.InputLayout.transform`).
        raw_columns : sequence, optional
            Columns a Pipeline changed before its transformers (named in errors).
        factual : tuple, optional
            ``(X, inputs)`` of the factual world when the intervention changed data.
        return_sites : list of str, optional
            Default: the outcome and the local latent sites.
        outcome_stat : {"sample", "mean", "probs", "log_prob"}, default="sample"
            What to return for the outcome: draws, their conditional mean or class
            probabilities, or the log-likelihood of the outcome given as an input.
        in_sample : bool, default=False
            The rows are the training rows (checked at prediction): local latent sites keep
            their fitted values.
        semantics : {"counterfactual", "interventional"}, default="counterfactual"
            How latent sites downstream of the intervention move (see
            :mod:`skimpact.propagation`).

        Returns
        -------
        Scenario
        """
        rows = self.layout.transform(
            X, inputs, intervention, info=self.info, raw_columns=raw_columns, factual=factual,
        )
        resolved = rows.intervention
        return Scenario(rows, Request(
            return_sites=self.return_sites(return_sites),
            do_sites=tuple(resolved.sites) if resolved else (),
            fixed_sites=tuple(resolved.fixed) if resolved else (),
            shifts=resolved.shifts if resolved else (),
            outcome_stat=outcome_stat,
            local_from_posterior=bool(in_sample),
            semantics=check_semantics(semantics),
        ))

    def log_likelihood_scenario(self, X, y, inputs, *, in_sample=False):
        """The scenario whose outcome statistic is the log-density of the observed ``y``
        per draw and row (the pointwise log-likelihood), ``y`` passed among the inputs.

        Parameters
        ----------
        X : array-like or DataFrame
        y : array-like of shape (n_rows,)
            Observed outcomes (class labels for a classifier).
        inputs : dict
            The model's keyword inputs.
        in_sample : bool, default=False
            As in :meth:`scenario`.

        Returns
        -------
        Scenario
        """
        scenario = self.scenario(X, inputs, return_sites=(self.info.outcome_site,),
                                 outcome_stat="log_prob", in_sample=in_sample)
        rows = scenario.rows
        if pd.isna(np.asarray(y, dtype=object)).any():
            raise ValueError("y contains NaN; the log-likelihood needs every outcome observed.")
        # a NumPy array: the engine takes each batch's rows of it on the host
        y_model = self.encode_outcome(y, rows.n)
        return replace(scenario, rows=replace(
            rows, inputs={**rows.inputs, self.program.outcome: y_model},
            row_inputs=rows.row_inputs + (self.program.outcome,)))

    def encode_outcome(self, y, n):
        """``y`` as the model observes it: class codes for a classifier, else float32 less
        the outcome's offset."""
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},); got {y.shape}.")
        if self.classes is None:
            offset = self.program.offsets.get(self.info.outcome_site, 0.0)
            return (y.astype(np.float64) - offset).astype(np.float32)
        unknown = np.setdiff1d(y, self.classes)
        if unknown.size:
            raise ValueError(
                f"y holds labels {unknown.tolist()} not seen in fit; the classes are "
                f"{self.classes.tolist()}."
            )
        return np.searchsorted(self.classes, y).astype(np.int32)

    @property
    def info(self):
        """The program's :class:`~skimpact.inspection.ModelInfo`."""
        return self.program.info

    def mean_stat(self):
        """The outcome statistic whose posterior mean a point prediction is: its expected
        value where the program computes one, else its draws.

        Raises
        ------
        ValueError
            The outcome's distribution has no finite mean (a Cauchy, say).
        """
        info = self.info
        if "undefined_mean" in info.outcome_stats:
            raise ValueError(
                f"The outcome {info.outcome_site!r} has a distribution without a finite mean "
                "(a Cauchy, say), so the posterior mean that predict returns is undefined. "
                "Use predict_quantiles(X, 0.5) for the posterior predictive median."
            )
        return "mean" if "mean" in info.outcome_stats else "sample"

    def return_sites(self, sites=None):
        """Sites to return: by default the outcome and the local latent sites."""
        info = self.info
        if sites is None:
            return (info.outcome_site, *info.local_sites)
        if isinstance(sites, str):
            sites = (sites,)
        unknown = [s for s in sites if s not in info.sites]
        if unknown:
            raise KeyError(
                f"Unknown site(s) {unknown} in return_sites; the model has {sorted(info.sites)}."
            )
        return tuple(sites)

    def prior(self, rows, num_samples, sites, key):
        """Draws of ``sites`` from the program's prior for ``rows`` (a scenario's): ``{site:
        (1, draw, ...)}``."""
        with NUMPYRO_LOCK:
            draws = Predictive(self.program.model, num_samples=num_samples,
                               return_sites=list(sites))(
                key, rows.X, **self.program.inputs(rows.inputs)
            )
        return {k: np.asarray(v)[None]
                for k, v in self.program.add_offsets(draws).items() if k in sites}

    def predict(self, scenario, key, *, batch_size=None, sink=None, rows_of=None):
        """Run the engine for a :class:`Scenario`.

        Parameters
        ----------
        scenario : Scenario
            From :meth:`scenario`; for ``in_sample=True`` its rows are checked to be the
            training rows (by fingerprint when the model has local latent sites, whose
            fitted values belong to those rows).
        key : jax.random key
            The same key gives the same random numbers per draw and row.
        batch_size : int, optional
        sink : object, optional
            See :meth:`skimpact.predictive.PredictiveEngine.run`.
        rows_of : tuple of (int, int), optional
            ``(offset, total)`` when ``rows`` are a part of a larger table: its rows get the
            random numbers of that table (see
            :meth:`skimpact.predictive.PredictiveEngine.run`).

        Returns
        -------
        outputs : dict of str to ndarray with leading ``(chain, draw)`` axes, or what the
            sink's ``close()`` returns
        row_axes : dict of str to int or None
        """
        rows, request = scenario.rows, scenario.request
        self._check_in_sample(scenario)
        offsets = self.program.offsets_for(request.return_sites, request.outcome_stat)
        if offsets:
            sink = OffsetSink(sink, offsets)
        if self.progress_bar:
            sink = ProgressSink(sink, rows.n)
        with NUMPYRO_LOCK:
            X, inputs, values, request, factual = self._scenario(rows, request)
            out, row_axes = self._engine.run(
                self.draws, X, inputs, values, request, key, factual=factual, batch_size=self.batch_size if batch_size is None else batch_size,
                sink=sink, row_inputs=rows.row_inputs, rows_of=rows_of,
            )
        return self._by_chain(out, sink), row_axes

    def predict_contrast(self, scenario, baseline, key, *, batch_size=None, sink=None,
                         rows_of=None, held=None):
        """Predict ``scenario`` minus ``baseline`` (both :class:`Scenario`) in one pass over
        the batches, with the same random numbers for both (see
        :meth:`skimpact.predictive.PredictiveEngine.run_contrast`); arguments and returns
        as in :meth:`predict` (the sites' offsets cancel in the difference). ``held``:
        ``{site: (chain, draw, ...) values}`` of the sites ``scenario.request.held`` sets
        per draw."""
        self._check_in_sample(scenario)
        self._check_in_sample(baseline)
        rows = scenario.rows
        if self.progress_bar:
            sink = ProgressSink(sink, rows.n)
        with NUMPYRO_LOCK:
            out, row_axes = self._engine.run_contrast(
                self.draws, self._scenario(rows, scenario.request),
                self._scenario(baseline.rows, baseline.request),
                key, batch_size=self.batch_size if batch_size is None else batch_size,
                sink=sink, row_inputs=rows.row_inputs, rows_of=rows_of,
                held=None if held is None else {
                    k: np.reshape(v, (-1,) + np.shape(v)[2:]) for k, v in held.items()},
            )
        return self._by_chain(out, sink), row_axes

    def _scenario(self, rows, request):
        self.program.check_indices(rows.X, rows.inputs, rows.row_inputs)
        resolved = rows.intervention
        values = {**resolved.sites, **resolved.fixed}
        inputs = self.program.inputs(rows.inputs)
        factual = None
        if rows.factual is not None:
            factual = (rows.factual[0], self.program.inputs(rows.factual[1]))
        changed = set(request.do_sites) | set(request.fixed_sites) | set(request.held)
        changed |= {name for name, _ in request.shifts}
        if factual is not None:
            changed.add(DATA)
        propagate = self._downstream(rows, changed, request) if changed else ()
        # a grounded fit corrects the outcome where the data (its treatment) changed
        grounded = self.program.grounding is not None and factual is not None \
            and request.outcome_stat in ("sample", "mean")
        if not propagate and not grounded:
            # nothing moves: the factual world is not traced, and the semantics (which
            # only says how sites move) must not make a program of its own
            return rows.X, inputs, values, replace(request, semantics="counterfactual"), None
        return (rows.X, inputs, values,
                replace(request, propagate=propagate, grounded=grounded), factual)

    def _downstream(self, rows, changed, request):
        """The sites whose values the intervention on ``changed`` moves: downstream of it in
        the model's dependency graph, and either substituted from the draws (global latent
        sites, and local ones for in-sample rows) or observed other than the outcome."""
        info = self.info
        if self._graph is None:
            # the structure, from one draw on the rows' first row (no computation)
            first = np.zeros(1, int)
            latent = {
                k: (np.take(v[0], first, axis=info.local_sites[k]) if k in info.local_sites
                    else v[0])
                for k, v in self.draws.items()
            }
            inputs = {k: (np.asarray(v)[first] if k in rows.row_inputs else v)
                      for k, v in self.program.inputs(rows.inputs).items()}
            with NUMPYRO_LOCK:
                self._graph = dependency_graph(self.program.model, rows.X[first], inputs,
                                               latent, info.deterministic_sites,
                                               self._intermediate())
        candidates = {k for k in self.draws
                      if request.local_from_posterior or k not in info.local_sites}
        return downstream(self._graph, changed, candidates | set(self._intermediate()))

    def _intermediate(self):
        """Observed sample sites other than the outcome (a mediator measured in the data):
        downstream of an intervention they move from their observed values."""
        info = self.info
        return tuple(k for k in info.observed_sites if k != info.outcome_site)

    def _by_chain(self, out, sink=None):
        """Split the draw axis of in-memory outputs into ``(chain, draw)``; outputs of a
        sink that reduced the draws away (``keeps_draws`` False) are returned as they are."""
        if isinstance(out, dict) and getattr(sink, "keeps_draws", True):
            out = {k: v.reshape((self.n_chain, -1) + v.shape[1:]) for k, v in out.items()}
        return out

    def _check_in_sample(self, scenario):
        info, rows = self.info, scenario.rows
        if scenario.request.local_from_posterior and not self.layout.is_training_rows(rows):
            raise ValueError(
                "in_sample=True means X (and the per-row inputs) are the training rows in "
                f"their training order, but these {rows.n} rows differ from the "
                f"{self.layout.labels_.shape[0]} training rows"
                + (f"; their local latent sites {sorted(info.local_sites)} have fitted values "
                   "only for the training rows" if info.local_sites else "")
                + ". Use in_sample=False for new rows."
            )


def _engine(program):
    """The engine of ``program``; a grounded program's compiled code reads its bias term,
    so it is shared only with programs grounded alike."""
    grounding = getattr(program, "grounding", None)
    key = program.cache_key if grounding is None else (program.cache_key, grounding)
    return PredictiveEngine(program.model, key, program.info, grounding=grounding)


def make_key(random_state, purpose):
    """A JAX key for ``purpose`` ("fit", "predict" or "prior") from a scikit-learn
    ``random_state``: fixed for an int, drawn afresh from a RandomState, Generator or None.
    """
    if isinstance(random_state, numbers.Integral):
        return _fixed_key(int(random_state), purpose)
    if isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**31 - 1))
    else:
        seed = int(check_random_state(random_state).randint(2**31 - 1))
    return jax.random.fold_in(jax.random.PRNGKey(seed), _SALT[purpose])


@lru_cache(maxsize=256)
def _fixed_key(seed, purpose):
    # an int random_state's keys are made once: each is two small device programs
    return jax.random.fold_in(jax.random.PRNGKey(seed), _SALT[purpose])
