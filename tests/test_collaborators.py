"""The fitted collaborators tested alone, without an estimator: input layout, program,
fitted posterior, schema builders; and the one-way rule that fitted state is frozen."""

import ast
import pathlib
import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer.reparam import LocScaleReparam

from skimpact import ImpactRegressor, Model
from skimpact.layout import InputLayout
from skimpact.builtin_models import linear_model
from skimpact.inspection import _eager_trace, inspect_model, trace_model
from skimpact.model import as_model
from skimpact.posterior import FittedPosterior
from skimpact.program import build_program
from skimpact.schema import Labels, posterior_tree, predictive_tree

from models import linear, seed_data

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "skimpact"


def _frame(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"dose": rng.integers(0, 5, n), "age": rng.normal(40, 5, n), "C": rng.normal(size=n)},
        index=[f"r{i}" for i in range(n)],
    )


# ----------------------------------------------------------------------------- layout
def test_layout_splits_inputs_keeps_labels_and_decides_row_inputs_once():
    X = _frame()
    layout = InputLayout(("C",), owner="Est")
    X64, y, inputs, w = layout.fit(X, np.zeros(30), {"k": np.ones(3)})
    assert X64.dtype == np.float64 and X64.shape == (30, 2) and w is None
    assert layout.columns_ == ["dose", "age"] and layout.input_names_ == ("C", "k")
    assert layout.row_inputs_ == ("C",)  # k has 3 entries: passed whole
    rows = layout.transform(X.iloc[:4], {"k": np.ones(3)}, info=_info())
    assert rows.labels.tolist() == ["r0", "r1", "r2", "r3"] and rows.X.dtype == np.float32
    keyword = InputLayout()
    keyword.fit(X.drop(columns="C"), np.zeros(30), {"C": X["C"]})
    assert keyword.row_inputs_ == ("C",)
    with pytest.raises(ValueError, match="Input 'C' has 2 rows; X has 4"):
        keyword.transform(X.drop(columns="C").iloc[:4], {"C": np.ones(2)}, info=_info())


def test_layout_column_intervention_keeps_float_values_on_integer_columns():
    X = _frame()
    layout = InputLayout()
    layout.fit(X, np.zeros(30), {})
    rows = layout.transform(X, {}, {"dose": 0.5}, info=_info())
    np.testing.assert_array_equal(rows.X[:, 0], 0.5)
    integers = X[["dose"]].to_numpy()
    array_layout = InputLayout()
    array_layout.fit(integers, np.zeros(30), {})
    shifted = array_layout.transform(integers, {}, {0: lambda d: d + 0.5}, info=_info())
    np.testing.assert_allclose(shifted.X[:, 0], X["dose"] + 0.5)


def test_layout_fingerprint_tells_training_rows_from_others():
    X = _frame()
    layout = InputLayout()
    layout.fit(X, np.zeros(30), {})
    assert layout.is_training_rows(layout.transform(X, {}, info=_info()))
    assert not layout.is_training_rows(layout.transform(X.iloc[::-1], {}, info=_info()))
    # an intervention does not change which rows they are
    assert layout.is_training_rows(layout.transform(X, {}, {"dose": 1.0}, info=_info()))


def test_layout_centres_in_float64_so_offsets_keep_the_signal():
    X = np.c_[2.0**40 + np.arange(10.0)]
    layout = InputLayout(center=True)
    X64 = layout.fit(X, np.arange(10.0), {})[0]
    np.testing.assert_array_equal(layout.cast(X64)[:, 0], np.arange(10.0) - 4.5)


def test_layout_errors_name_column_and_fix():
    layout = InputLayout(owner="Est")
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['s'\].*OneHotEncoder"):
        layout.fit(pd.DataFrame({"s": ["a", "b"], "x": [1.0, 2.0]}), [0.0, 1.0], {})
    dup = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    with pytest.raises(ValueError, match=r"duplicate column name\(s\) \['a'\]"):
        layout.fit(dup, [0.0], {})
    layout.fit(np.zeros((3, 2)), np.zeros(3), {})
    with pytest.raises(ValueError, match="X has 3 features, but Est is expecting 2"):
        layout.transform(np.zeros((3, 3)), {}, info=_info())


def test_layout_warns_when_float32_cannot_resolve_a_column():
    X = np.c_[1e9 + np.arange(20.0)]
    with pytest.warns(UserWarning, match="float32"):
        InputLayout().fit(X, np.zeros(20), {})


# ---------------------------------------------------------------------------- program
def _hier(X, y=None, g=None):
    mu = numpyro.sample("mu", dist.Normal(0, 1))
    with numpyro.plate("groups", 3):
        theta = numpyro.sample("theta", dist.Normal(mu, 1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Normal(theta[g], 1), obs=y)


def _info():
    X, y = np.zeros((2, 2), np.float32), np.zeros(2, np.float32)
    return inspect_model(linear_model(), X, "y", y, {})


def test_program_applies_reparam_and_rejects_unknown_sites():
    X, y, g = np.zeros((6, 1), np.float32), np.zeros(6, np.float32), np.arange(6) % 3
    prog = build_program(as_model(_hier), X, y, {"g": g}, reparam={"theta": LocScaleReparam(0)},
                         row_inputs=("g",))
    assert "theta_decentered" in prog.info.latent_sites
    assert prog.info.site_plates["theta"] == {"groups": -1}
    with pytest.raises(ValueError, match=r"\['thetta'\].*latent sites are \['mu', 'theta'\]"):
        build_program(as_model(_hier), X, y, {"g": g}, reparam={"thetta": LocScaleReparam(0)})


def test_program_names_the_outcome_argument_and_bad_parameters():
    X, y = np.zeros((4, 1), np.float32), np.zeros(4, np.float32)

    def payments(X, payments=None):
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("p", dist.Normal(0, 1), obs=payments)

    with pytest.raises(ValueError, match="outcome='payments'"):
        build_program(as_model(payments), X, y, {})

    def negative_scale(X, y=None):
        s = numpyro.sample("s", dist.Normal(0, 1))
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(s, -1.0), obs=y)

    with pytest.raises(ValueError, match="after its site 's'.*invalid scale"):
        build_program(as_model(negative_scale), X, y, {})



def test_deterministic_row_axis_found_by_dependency_not_by_size():
    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
        numpyro.deterministic("mu", X @ b)        # per row, outside the plate
        numpyro.deterministic("b2", b * 2)        # as long as the rows, but not per row
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(X @ b, 1), obs=y)

    X, y = np.ones((3, 3), np.float32), np.zeros(3, np.float32)
    info = inspect_model(model, X, "y", y, {})
    assert info.site_row_axis["mu"] == -1 and info.site_row_axis["b2"] is None


def _bounded(X, y=None):
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("obs", X.shape[0]):
        numpyro.sample("y", dist.Uniform(X @ b - scale, X @ b + scale + 10.0), obs=y)


def test_compiled_trace_gives_the_eager_trace_values_and_distributions():
    X, y = np.ones((4, 2), np.float32), np.zeros(4, np.float32)
    compiled = trace_model(_bounded, (X,), {"y": y})
    eager = _eager_trace(_bounded, (X,), {"y": y}, 0)
    assert list(compiled) == list(eager)
    for k in ("scale", "b", "y"):
        np.testing.assert_allclose(compiled[k]["value"], eager[k]["value"], rtol=1e-6)
        assert type(compiled[k]["fn"]) is type(eager[k]["fn"])
        assert compiled[k]["cond_indep_stack"] == eager[k]["cond_indep_stack"]
    # the support's bounds come back as values, not tracers
    np.testing.assert_allclose(compiled["y"]["fn"].support.upper_bound,
                               eager["y"]["fn"].support.upper_bound, rtol=1e-6)


def test_model_that_cannot_compile_is_refused_and_errors_name_the_site():
    def branchy(X, y=None):  # Python control flow on a value: not traceable under jit
        b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1]]).to_event(1))
        sd = 1.0 if float(np.asarray(y).mean()) > 0 else 2.0
        with numpyro.plate("obs", X.shape[0]):
            numpyro.sample("y", dist.Normal(X @ b, sd), obs=y)

    X, y = np.ones((3, 2), np.float32), np.ones(3, np.float32)
    # inference compiles the model too: refused where it is first traced, naming the site
    with pytest.raises(TypeError, match=r"traced JAX value.*after its site 'b'.*jax\.numpy"):
        inspect_model(branchy, X, "y", y, {})

    def broken(X, y=None):
        b = numpyro.sample("b", dist.Normal(0, 1).expand([X.shape[1] + 1]).to_event(1))
        numpyro.sample("y", dist.Normal(X @ b, 1.0), obs=y)

    with pytest.raises(TypeError, match=r"failed on the training data after its site 'b'"):
        inspect_model(broken, X, "y", y, {})


# -------------------------------------------------------------- posterior and schema
@pytest.fixture(scope="module")
def posterior():
    X, y = seed_data(50)
    layout = InputLayout()
    X64, y, inputs, _ = layout.fit(X, y, {})
    Xm = layout.cast(X64)
    prog = build_program(Model(linear), Xm, y.astype(np.float32), inputs)
    rng = np.random.default_rng(0)
    draws = {"a": rng.normal(1, 0.01, (2, 10)), "b": rng.normal(2, 0.01, (2, 10, 1)),
             "sigma": np.full((2, 10), 0.5)}
    return FittedPosterior(prog, draws, layout, random_state=0), X


def test_posterior_predict_mean_is_linear_in_the_draws(posterior):
    pred, X = posterior
    scenario = pred.scenario(X[:5], {}, return_sites=("y",), outcome_stat="mean")
    out, axes = pred.predict(scenario, pred.key())
    assert out["y"].shape == (2, 10, 5) and axes["y"] == -1
    a, b = pred.draws["a"].reshape(2, 10, 1), pred.draws["b"].reshape(2, 10, 1)
    np.testing.assert_allclose(out["y"], a + b * X[:5, 0], rtol=1e-5)


def test_posterior_in_sample_requires_training_rows(posterior):
    pred, X = posterior
    with pytest.raises(ValueError, match="in_sample=True means X"):
        pred.predict(pred.scenario(X[::-1], {}, in_sample=True), pred.key())
    out, _ = pred.predict(pred.scenario(X, {}, in_sample=True), pred.key())
    assert out["y"].shape == (2, 10, 50)


def test_schema_builders_name_dims_from_plates():
    labels = Labels("obs", ["a", "b", "c"], site_plates={"theta": {"groups": -1}},
                    feature_names=["x1", "x2"])
    draws = {"theta": np.zeros((1, 4, 5)), "mu": np.zeros((1, 4, 3))}
    tree = posterior_tree(draws, labels, {"mu": -1}, observed=("y", np.zeros(3)))
    post = tree["posterior"]
    assert post["theta"].dims == ("chain", "draw", "groups")
    assert post["mu"].dims == ("chain", "draw", "obs")
    assert post["obs"].values.tolist() == ["a", "b", "c"]
    assert tree["observed_data"]["y"].dims == ("obs",)
    pred = predictive_tree(post.to_dataset(), {"y": np.zeros((1, 4, 3))}, labels, {"y": -1},
                           in_sample=False)
    assert set(pred.children) == {"posterior", "predictions"}
    assert "skimpact_version" in pred.attrs


# ------------------------------------------------------------------------- one way
def test_no_module_imports_a_private_name_of_another():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


@pytest.mark.slow
def test_set_params_after_fit_changes_no_prediction():
    X, y = seed_data(80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = ImpactRegressor(Model(linear), inference="svi", num_steps=300, num_samples=30,
                              random_state=0).fit(X, y)
    before = est.predict(X[:5]), est.log_likelihood(X[:5], y[:5])["log_likelihood"]["y"].values
    summary = est.summary()
    est.set_params(outcome="payments", inference="nuts", batch_size=1, random_state=1,
                   reparam={"b": LocScaleReparam(0)}, model=Model(linear, prior_scale=0.01))
    np.testing.assert_array_equal(est.predict(X[:5]), before[0])
    ll = est.log_likelihood(X[:5], y[:5])["log_likelihood"]["y"].values
    np.testing.assert_array_equal(ll, before[1])
    pd.testing.assert_frame_equal(est.summary(), summary)
