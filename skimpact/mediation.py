"""Natural direct and indirect effects: how much of an effect passes through mediators.

With ``t`` the intervention, ``c`` the baseline and ``M`` the mediator sites, each draw's
outcome is predicted in three worlds that share their random numbers: ``Y(c, M(c))``,
``Y(t, M(t))`` and the nested counterfactual ``Y(t, M(c))``, the treatment set to ``t``
while the mediators keep the values they take under ``c``. Then

* total effect ``Y(t, M(t)) - Y(c, M(c))``,
* natural direct effect ``Y(t, M(c)) - Y(c, M(c))``: what the treatment does with the
  mediators held where the baseline leaves them,
* natural indirect effect ``Y(t, M(t)) - Y(t, M(c))``: what moving the mediators to
  where the treatment puts them adds,

and total = direct + indirect in every draw and row. The mediators' values under ``c``
come from the same engine as every prediction (latent sites downstream of the
intervention follow it: :mod:`skimpact.propagation`), so the three worlds are those of
:func:`skimpact.effect`.
"""


from .arguments import check_flag
from .interventions import describe
from .scenarios import effect_request, final_estimator, fitted_scenario
from .schema import Labels, effect_tree
from .blockwise import plan_prediction

__all__ = ["mediation"]

#: The effects :func:`mediation` returns, in order.
EFFECTS = ("total", "direct", "indirect")


def mediation(estimator, X, intervention, baseline=None, *, mediators, kind=None,
              in_sample=False, semantics="counterfactual", **inputs):
    """Total, natural direct and natural indirect effects of ``intervention``.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
        Raw input of ``estimator``.
    intervention : dict
        The treatment scenario, as for :func:`skimpact.effect`.
    baseline : dict, optional
        The control scenario; ``None`` means the rows as they are.
    mediators : str or sequence of str
        Sites of the model through which the treatment may act: latent, deterministic, or
        observed (``obs=`` a model input holding the measured mediator, which then moves
        from its measured value under an intervention upstream of it); held together at
        their values under ``baseline`` for the direct effect.
    kind : {"mean", "predictive", "probs"}, optional
        As in :func:`skimpact.effect`.
    in_sample : bool, default=False
        As in :func:`skimpact.effect`: for the training rows, per-row mediators start from
        their fitted values; for new rows they are drawn.
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        As in :func:`skimpact.effect`.
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` and ``predictions`` (or ``posterior_predictive``) holding the
        variables ``total``, ``direct`` and ``indirect``, each with dims ``chain``,
        ``draw`` and the row dim; ``summarize_effect(tree, var="direct")`` summarises one
        (the default is ``total``).

    Raises
    ------
    ValueError
        If a mediator is not a site of the model other than the outcome.

    Examples
    --------
    A treatment ``t`` (column 0) moves a measured mediator ``m`` (the input ``M``) by 1 and
    ``y`` by 0.5 directly; ``m`` moves ``y`` by 2:

    >>> import numpy as np, numpyro, numpyro.distributions as dist
    >>> from skimpact import ImpactRegressor, mediation, summarize_effect
    >>> def model(X, y=None, M=None):
    ...     a = numpyro.sample("a", dist.Normal(0, 2)); b = numpyro.sample("b", dist.Normal(0, 2))
    ...     g = numpyro.sample("g", dist.Normal(0, 2)); s = numpyro.sample("s", dist.HalfNormal(1))
    ...     with numpyro.plate("obs", X.shape[0]):
    ...         m = numpyro.sample("m", dist.Normal(a * X[:, 0], 0.5), obs=M)
    ...         numpyro.sample("y", dist.Normal(b * m + g * X[:, 0], s), obs=y)
    >>> rng = np.random.default_rng(2); t = rng.integers(0, 2, 500).astype(float)
    >>> M = t + 0.5 * rng.normal(size=500); y = 2 * M + 0.5 * t + 0.3 * rng.normal(size=500)
    >>> est = ImpactRegressor(model, inference="nuts", num_samples=300, random_state=0)
    >>> est = est.fit(t[:, None], y, M=M)
    >>> tree = mediation(est, t[:, None], {0: 1.0}, {0: 0.0}, mediators="m", M=M)
    >>> [round(float(summarize_effect(tree, var=v)["mean"].iloc[0]), 1)
    ...  for v in ("total", "direct", "indirect")]
    [2.5, 0.5, 2.0]
    """
    pred, kind, stat, _ = effect_request(estimator, intervention, baseline, kind)
    info = pred.info
    in_sample = check_flag(in_sample, "in_sample")
    if isinstance(mediators, str):
        mediators = (mediators,)
    elif not (isinstance(mediators, (list, tuple))
              and all(isinstance(m, str) for m in mediators)):
        raise TypeError(
            "`mediators` must be a site name or a list of site names, e.g. mediators='m'; "
            f"got {mediators!r}."
        )
    mediators = tuple(mediators)
    allowed = (set(info.latent_sites) | set(info.deterministic_sites)
               | set(info.observed_sites)) - {info.outcome_site}
    wrong = [m for m in mediators if m not in allowed]
    if not mediators or wrong:
        raise ValueError(
            f"`mediators` must name sites of the model other than the outcome through which "
            f"the treatment acts (latent, deterministic, or observed with the data as a "
            f"model input); got {list(wrong) or list(mediators)!r}. The model's sites are "
            f"{sorted(allowed)}."
        )
    site = info.outcome_site
    (_, treated), (_, control) = (
        fitted_scenario(estimator, X, s, inputs, return_sites=(site,), outcome_stat=stat,
                        in_sample=in_sample, semantics=semantics)
        for s in (intervention, baseline))
    # one key and one batch size for every pass: the mediators drawn for new rows under
    # the baseline are the ones its world in the contrasts draws
    key = pred.key()
    size = plan_prediction(pred, control, key).batch_size
    held, _ = pred.predict(
        control.with_request(return_sites=mediators, outcome_stat="sample"), key,
        batch_size=size)
    total, row_axes = pred.predict_contrast(treated, control, key, batch_size=size)
    direct, _ = pred.predict_contrast(treated.with_request(held=mediators), control, key,
                                      held=held, batch_size=size)
    arrays = {"total": total[site], "direct": direct[site],
              "indirect": total[site] - direct[site]}
    probs = kind == "probs" and pred.classes is not None
    plates = info.site_plates.get(site, {})
    labels = Labels(
        info.row_dim, control.rows.labels, site_plates={k: plates for k in EFFECTS},
        feature_names=getattr(pred.layout, "feature_names_in_", None),
        trailing={k: ("class",) for k in EFFECTS} if probs else None,
        dim_coords={"class": pred.classes} if probs else None,
    )
    attrs = {**pred.attrs, "intervention": describe(intervention),
             "baseline": describe(baseline), "mediators": list(mediators), "kind": kind,
             "outcome": "total", "row_dim": info.row_dim, "semantics": semantics}
    posterior = final_estimator(estimator).posterior_["posterior"].to_dataset()
    return effect_tree(posterior, arrays, labels,
                       {k: row_axes[site] for k in EFFECTS}, in_sample=in_sample,
                       attrs=attrs)
