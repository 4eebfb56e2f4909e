"""Intervention values without fitting: dtypes, validation, keys, broadcasting, shifts."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

from skimpact.interventions import (
    Intervention,
    apply_shift,
    apply_to_columns,
    apply_to_inputs,
    columns_of,
    describe,
    resolve_intervention,
    split_columns,
)
from skimpact.inspection import ModelInfo, inspect_model

N = 4
# y ~ Normal(mu, s), mu = a + X @ b + t + u; m2 holds 3 values per row (rows on axis -2).
INFO = ModelInfo(
    outcome_site="y",
    row_dim="obs",
    latent_sites=("a", "b", "u"),
    local_sites={"u": -1},
    deterministic_sites=("mu", "m2"),
    observed_sites=("y",),
    site_shapes={"a": (), "b": (2,), "u": (N,), "mu": (N,), "m2": (N, 3), "y": (N,)},
    site_row_axis={"a": None, "b": None, "u": -1, "mu": -1, "m2": -2, "y": -1},
)


def _resolve(intervention, columns=("x0", "x1"), n_rows=N, **kwargs):
    return resolve_intervention(
        intervention, info=INFO, input_names=("t",), columns=list(columns), n_rows=n_rows,
        **kwargs,
    )


def _frame():
    return pd.DataFrame(
        {"dose": np.array([1, 2, 3, 4], dtype=np.int64), "x": [0.1, 0.2, 0.3, 0.4]},
        index=pd.Index([10, 11, 12, 13]),
    )


# ------------------------------------------------------------------- dtypes of values
def test_float_value_on_an_integer_dataframe_column_is_not_truncated():
    X = _frame()
    out = apply_to_columns(X, {"dose": 0.5})
    assert out["dose"].dtype == np.float64
    np.testing.assert_array_equal(out["dose"], [0.5, 0.5, 0.5, 0.5])
    shifted = apply_to_columns(X, {"dose": lambda d: d + 0.5})
    np.testing.assert_array_equal(shifted["dose"], [1.5, 2.5, 3.5, 4.5])
    # X is untouched, the other column and the index are kept.
    np.testing.assert_array_equal(X["dose"], [1, 2, 3, 4])
    assert X["dose"].dtype == np.int64
    np.testing.assert_array_equal(out["x"], X["x"])
    assert out.index.equals(X.index)


def test_float_value_on_an_integer_array_promotes_the_array():
    X = np.arange(8, dtype=np.int64).reshape(4, 2)
    out = apply_to_columns(X, {1: lambda v: v + 0.5})
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[:, 1], [1.5, 3.5, 5.5, 7.5])
    np.testing.assert_array_equal(out[:, 0], [0, 2, 4, 6])
    np.testing.assert_array_equal(X[:, 1], [1, 3, 5, 7])
    assert apply_to_columns(X, {0: 0.5})[0, 0] == 0.5
    # An int value keeps an int array; a Python float keeps a float32 array float32.
    assert apply_to_columns(X, {0: 3}).dtype == np.int64
    X32 = X.astype(np.float32)
    out32 = apply_to_columns(X32, {0: 0.25})
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(out32[:, 0], 0.25)


def test_callable_gets_a_copy_of_the_column():
    X = _frame()

    def bump(values):
        values += 1
        return values

    out = apply_to_columns(X, {"dose": bump})
    np.testing.assert_array_equal(out["dose"], [2, 3, 4, 5])
    np.testing.assert_array_equal(X["dose"], [1, 2, 3, 4])


def test_float_value_on_an_integer_input_is_not_truncated():
    t = np.array([0, 1, 0, 1])
    X = _frame()
    resolved = Intervention(inputs={"t": 0.5}, columns={"dose": 0.5})
    X2, inputs = apply_to_inputs(resolved, X, {"t": t})
    np.testing.assert_array_equal(inputs["t"], [0.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(X2["dose"], 0.5)
    _, shifted = apply_to_inputs(Intervention(inputs={"t": lambda v: v + 0.5}), X, {"t": t})
    np.testing.assert_array_equal(shifted["t"], [0.5, 1.5, 0.5, 1.5])
    _, same = apply_to_inputs(Intervention(inputs={"t": 1}), X, {"t": t})
    assert same["t"].dtype == t.dtype
    np.testing.assert_array_equal(same["t"], 1)
    np.testing.assert_array_equal(t, [0, 1, 0, 1])


def test_shift_on_an_input_that_was_not_given_is_an_error():
    with pytest.raises(ValueError, match=r"input 't' needs the input's factual value; pass t="):
        apply_to_inputs(Intervention(inputs={"t": lambda v: v + 1}), _frame(), {})


# ----------------------------------------------------------------- value validation
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, [0.0, np.nan, 1.0, 2.0]])
@pytest.mark.parametrize("name, kind", [("x0", "column"), ("u", "site"), ("t", "input")])
def test_non_finite_values_are_errors_naming_the_name(bad, name, kind):
    with pytest.raises(ValueError, match=f"{kind} '{name}' contains NaN, infinite or missing"):
        _resolve({name: bad})


def test_missing_values_are_errors():
    with pytest.raises(ValueError, match="column 'x0' contains NaN, infinite or missing"):
        _resolve({"x0": [1.0, None, 2.0, 3.0]})
    with pytest.raises(ValueError, match="input 't' contains NaN, infinite or missing"):
        _resolve({"t": None})
    with pytest.raises(ValueError, match="site 'b' contains NaN"):
        _resolve({"b": [0.0, np.nan]})


def test_non_finite_results_of_host_shifts_are_errors():
    X = _frame()
    with pytest.raises(ValueError, match=r"shift .* for column 'dose' contains NaN"):
        apply_to_columns(X, {"dose": lambda d: np.where(d > 2, d, np.nan)})
    with pytest.raises(ValueError, match=r"shift .* for input 't' contains NaN"):
        apply_to_inputs(Intervention(inputs={"t": lambda v: v + np.inf}), X, {"t": np.zeros(N)})


def test_wrong_shapes_name_the_name_the_shape_and_the_expected_shape():
    X = _frame()
    with pytest.raises(ValueError, match=r"column 'x0' has shape \(3,\); expected a scalar or "
                                         r"shape \(4,\), one value per row"):
        _resolve({"x0": pd.Series([1.0, 2.0, 3.0])})
    with pytest.raises(ValueError, match=r"shift .* for column 'dose' returned shape \(2,\); "
                                         r"expected a scalar or shape \(4,\)"):
        apply_to_columns(X, {"dose": lambda d: d[:2]})
    with pytest.raises(ValueError, match=r"shift .* for input 't' returned shape \(3,\), which "
                                         r"does not broadcast to the input's shape \(4,\)"):
        apply_to_inputs(Intervention(inputs={"t": lambda v: v[:3]}), X, {"t": np.zeros(N)})
    with pytest.raises(ValueError, match=r"input 't' has shape \(2,\), which does not"):
        apply_to_inputs(Intervention(inputs={"t": [1.0, 2.0]}), X, {"t": np.zeros(N)})
    with pytest.raises(ValueError, match=r"site 'u' has shape \(3,\).*\(4,\) \(axis -1 holds"):
        _resolve({"u": np.zeros(3)})


def test_a_series_must_have_the_dataframes_index():
    X = _frame()
    aligned = pd.Series([5.0, 6.0, 7.0, 8.0], index=X.index)
    np.testing.assert_array_equal(apply_to_columns(X, {"dose": aligned})["dose"], aligned)
    for index in ([13, 12, 11, 10], [0, 1, 2, 3]):
        with pytest.raises(ValueError, match=r"column 'dose' is a Series whose index does not "
                                             r"match X's index.*to_numpy\(\).*reindex"):
            apply_to_columns(X, {"dose": pd.Series([5.0, 6.0, 7.0, 8.0], index=index)})
    # An array X has no index: a Series is taken by position.
    out = apply_to_columns(X.to_numpy(), {0: pd.Series([5.0, 6.0, 7.0, 8.0], index=[3, 2, 1, 0])})
    np.testing.assert_array_equal(out[:, 0], [5.0, 6.0, 7.0, 8.0])


def test_non_numeric_site_value_is_a_type_error():
    with pytest.raises(TypeError, match="site 'a' must be numeric"):
        _resolve({"a": "high"})


# ---------------------------------------------------------- meaningless interventions
@pytest.mark.parametrize(
    "value", [[], 0, 0.0, False, "", set(), (), ["x0"], "x0", [("t", 1.0)], np.zeros(2),
              pd.Series({"t": 1.0})],
)
def test_anything_but_a_dict_or_none_is_a_type_error(value):
    with pytest.raises(TypeError, match="must be a dict .* or None for no intervention"):
        _resolve(value)
    with pytest.raises(TypeError, match="must be a dict"):
        split_columns(value, ["x0"])
    with pytest.raises(TypeError, match="must be a dict"):
        describe(value)


def test_none_and_an_empty_dict_are_no_intervention():
    for value in (None, {}):
        assert _resolve(value).names == ()
        assert describe(value) == {}
        assert split_columns(value, ["x0"]) == ({}, {})


# ------------------------------------------------------------------------------- keys
def test_numpy_integer_keys_name_array_columns():
    resolved = _resolve({np.int64(1): 2.0, np.int32(0): lambda v: v}, columns=range(2))
    assert list(resolved.columns) == [1, 0]
    assert all(type(k) is int for k in resolved.columns)
    X = np.zeros((N, 2))
    X2, _ = apply_to_inputs(resolved, X, {})
    np.testing.assert_array_equal(X2[:, 1], 2.0)
    np.testing.assert_array_equal(apply_to_columns(X, {np.int64(0): 3.0})[:, 0], 3.0)


@pytest.mark.parametrize("key", [True, 1.0, np.float64(1.0), np.bool_(True)])
def test_bool_and_float_keys_name_no_int_position(key):
    kind = "bool" if isinstance(key, (bool, np.bool_)) else "float"
    with pytest.raises(TypeError, match=f"is a {kind}.*int position"):
        _resolve({key: 1.0}, columns=range(2))
    with pytest.raises(TypeError, match=f"is a {kind}"):
        apply_to_columns(np.zeros((N, 2)), {key: 1.0})
    # A DataFrame with int labels: still not a label.
    with pytest.raises(TypeError, match=f"is a {kind}"):
        apply_to_columns(pd.DataFrame(np.zeros((N, 2))), {key: 1.0})


def test_float_key_that_is_a_dataframe_label_works():
    X = pd.DataFrame(np.zeros((N, 2)), columns=[0.5, 1.0])
    resolved = _resolve({1.0: 2.0}, columns=columns_of(X))
    assert resolved.columns == {1.0: 2.0}
    np.testing.assert_array_equal(apply_to_columns(X, {1.0: 2.0})[1.0], 2.0)


def test_describe_is_json_safe():
    record = describe({
        np.int64(1): np.float32(0.5), "t": np.int64(2), "u": np.arange(N), 2.5: True,
        ("a", 1): "north", "s": np.exp,
    })
    assert record == {
        "1": 0.5, "t": 2, "u": "array of shape (4,)", "2.5": True, "('a', 1)": "north",
        "s": "shift exp",
    }
    assert all(type(v) in (str, int, float, bool) for v in record.values())
    assert json.loads(json.dumps(record, sort_keys=True)) == record


# -------------------------------------------------------------- scalars on vector sites
def test_scalar_on_a_vector_site_broadcasts_to_the_sites_shape():
    resolved = _resolve({"b": 0.0, "mu": 2.5, "m2": [1.0, 2.0, 3.0], "a": 1})
    np.testing.assert_array_equal(resolved.sites["b"], np.zeros(2))
    np.testing.assert_array_equal(resolved.fixed["mu"], np.full(N, 2.5))
    np.testing.assert_array_equal(resolved.fixed["m2"], np.tile([1.0, 2.0, 3.0], (N, 1)))
    assert resolved.sites["a"].shape == () and resolved.sites["a"] == 1.0
    assert resolved.sites["a"].dtype.kind == "f"
    # Per-row values broadcast along the other axes; other row counts than at fit work.
    per_row = _resolve({"m2": np.arange(7.0)[:, None]}, n_rows=7).fixed["m2"]
    np.testing.assert_array_equal(per_row, np.repeat(np.arange(7.0)[:, None], 3, axis=1))
    assert _resolve({"u": 0.0}, n_rows=7).sites["u"].shape == (7,)


def test_site_shapes_from_inspect_model():
    def model(X, y=None):
        b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with numpyro.plate("obs", X.shape[0]):
            mu = numpyro.deterministic("mu", X @ b)
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    X = np.ones((5, 2))
    info = inspect_model(model, X, "y", np.zeros(5), {})
    resolved = resolve_intervention(
        {"b": 1.0, "mu": 0.0}, info=info, input_names=(), columns=range(2), n_rows=3
    )
    np.testing.assert_array_equal(resolved.sites["b"], [1.0, 1.0])
    np.testing.assert_array_equal(resolved.fixed["mu"], [0.0, 0.0, 0.0])


# ------------------------------------------------------------------------ site shifts
def test_apply_shift_computes_and_broadcasts():
    np.testing.assert_allclose(apply_shift("u", lambda u: u + 1.0, jnp.arange(3.0)), [1, 2, 3])
    jitted = jax.jit(lambda f: apply_shift("u", lambda u: 2.0, f))
    np.testing.assert_array_equal(jitted(jnp.zeros(3)), [2.0, 2.0, 2.0])
    per_column = jax.jit(lambda f: apply_shift("m2", lambda m: m.sum(0), f))(jnp.ones((2, 3)))
    np.testing.assert_array_equal(per_column, [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])


def _uses_float(u):
    return u * float(u[0])


def _branches(u):
    return u if u[0] > 0 else -u


@pytest.mark.parametrize("fn", [np.exp, lambda u: np.asarray(u) + 1, _uses_float, _branches])
def test_numpy_in_a_site_shift_names_the_site_and_jax_numpy(fn):
    with pytest.raises(TypeError, match=r"site 'u'.*use operators and jax\.numpy functions"):
        jax.jit(lambda f: apply_shift("u", fn, f))(jnp.zeros(3))


def test_site_shift_of_the_wrong_shape_or_type():
    with pytest.raises(ValueError, match=r"site 'u' returned shape \(2,\), which does not "
                                         r"broadcast to the site's shape \(3,\)"):
        jax.jit(lambda f: apply_shift("u", lambda u: u[:2], f))(jnp.zeros(3))
    with pytest.raises(TypeError, match=r"site 'u' must return an array or a number; it "
                                        r"returned NoneType"):
        apply_shift("u", lambda u: None, jnp.zeros(3))


# ---------------------------------------------------------------- pipelines and names
def test_split_columns_takes_raw_columns():
    raw, rest = split_columns({"dose": 0.5, "t": 1.0, "u": 0.0}, columns_of(_frame()))
    assert raw == {"dose": 0.5}
    assert rest == {"t": 1.0, "u": 0.0}
    raw, rest = split_columns(
        {0: 1.0, np.int64(2): 2.0, 3: 3.0, -1: 4.0, True: 5.0, 1.5: 6.0, "u": 0.0}, range(3)
    )
    assert raw == {0: 1.0, 2: 2.0} and all(type(k) is int for k in raw)
    assert rest == {3: 3.0, -1: 4.0, True: 5.0, 1.5: 6.0, "u": 0.0}


def test_unknown_name_lists_raw_columns_and_the_outcome_is_refused():
    with pytest.raises(KeyError, match=r"Unknown intervention name 'nope'; raw columns of the "
                                       r"Pipeline's input: \['dose'\].*transformed X the final "
                                       r"estimator sees: \['x0', 'x1'\]"):
        _resolve({"nope": 1.0}, raw_columns=["dose"])
    with pytest.raises(KeyError, match=r"Model sites: \['a', 'b', 'm2', 'mu', 'u'\]; model "
                                       r"inputs: \['t'\]; columns of X: \['x0', 'x1'\]\.\"$"):
        _resolve({"nope": 1.0})
    with pytest.raises(KeyError, match=r"Unknown column 'nope' of X; its columns are"):
        apply_to_columns(_frame(), {"nope": 1.0})
    with pytest.raises(ValueError, match="Cannot intervene on the outcome site 'y'"):
        _resolve({"y": 1.0})


def test_resolve_sorts_names():
    def shift(u):
        return u + 1.0

    resolved = _resolve({"t": 1.0, "x1": 2.0, "u": shift, "mu": 0.0, "a": 0.0})
    assert resolved.inputs == {"t": 1.0}
    assert resolved.columns == {"x1": 2.0}
    assert resolved.shifts == (("u", shift),)
    assert list(resolved.fixed) == ["mu"] and list(resolved.sites) == ["a"]
