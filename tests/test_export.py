"""Export: `to_sklearn()` gives a fitted scikit-learn MLP, and `to_onnx()` an ONNX file run by
ONNX Runtime, that predict as the jaxbp model does.

Tolerance: jaxbp computes in float32 (x64 off); scikit-learn, given the same float32 weights
and float64 X, computes in float64. Each output then differs by the float32 rounding of a
forward pass: a few eps32 (1.2e-7) per layer, relative to the values summed. The outputs here
are O(1) (probabilities; standardised targets), so rtol 1e-5 with atol 1e-6 holds with ~10×
margin (measured: 1.3e-7 at worst) and fails on any real difference (a wrong layout, bias or
activation moves outputs by 1e-2 or more). Labels are compared exactly: no example of these
fits is within 1e-5 of a tie.
"""

import functools
import pickle

import jax
import numpy as np
import pytest
from sklearn import neural_network
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_iris,
    make_multilabel_classification,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import jaxbp
from jaxbp import data
from jaxbp.model_file import SavedModel
from jaxbp.sklearn import MLPClassifier, MLPRegressor

RTOL, ATOL = 1e-5, 1e-6
SMALL = dict(hidden_layer_sizes=(12, 7), max_iter=30, learning_rate_init=0.01, random_state=0)


def problem(kind):
    if kind == "multiclass":
        X, y = load_iris(return_X_y=True)
        y = np.array(["setosa", "versicolor", "virginica"])[y]  # string labels
    elif kind == "binary":
        X, y = load_breast_cancer(return_X_y=True)
    elif kind == "multilabel":
        X, y = make_multilabel_classification(n_samples=150, n_features=6, n_classes=3,
                                              random_state=0)
    else:
        X, y = load_diabetes(return_X_y=True)
        y = (y - y.mean()) / y.std()
        if kind == "regression 2 outputs":
            y = np.stack([y, -0.5 * y + 0.1], axis=1)
    return StandardScaler().fit_transform(X), y


@functools.cache  # each fitted model serves the to_sklearn and the to_onnx tests
def fitted(kind, activation="relu"):
    X, y = problem(kind)
    cls = MLPRegressor if kind.startswith("regression") else MLPClassifier
    with pytest.warns(ConvergenceWarning):  # 30 epochs: a quick fit, not a converged one
        return cls(activation=activation, **SMALL).fit(X, y), X


KINDS = ["multiclass", "binary", "multilabel", "regression", "regression 2 outputs"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_to_sklearn_predicts_as_the_jaxbp_model(kind, activation):
    model, X = fitted(kind, activation)
    exported = model.to_sklearn()
    expected_class = getattr(neural_network, type(model).__name__)
    assert type(exported) is expected_class
    for name in ("n_layers_", "n_outputs_", "out_activation_", "n_iter_", "loss_",
                 "n_features_in_"):
        assert getattr(exported, name) == getattr(model, name), name
    if kind.startswith("regression"):
        np.testing.assert_allclose(exported.predict(X), model.predict(X), rtol=RTOL, atol=ATOL)
        assert exported.predict(X).shape == model.predict(X).shape
        return
    np.testing.assert_array_equal(exported.classes_, model.classes_)
    np.testing.assert_allclose(exported.predict_proba(X), model.predict_proba(X), rtol=RTOL,
                               atol=ATOL)
    np.testing.assert_array_equal(exported.predict(X), model.predict(X))


def test_the_exported_model_is_independent_pickles_and_continues_in_sklearn():
    model, X = fitted("multiclass")
    _, y = problem("multiclass")
    exported = model.to_sklearn()
    exported.coefs_[0][:] = 0.0  # a copy: the jaxbp model keeps its weights
    assert np.any(model.coefs_[0] != 0.0)
    exported = pickle.loads(pickle.dumps(model.to_sklearn()))
    np.testing.assert_array_equal(exported.predict(X), model.predict(X))
    before = [c.copy() for c in exported.coefs_]
    exported.partial_fit(X, y)  # one epoch of scikit-learn's own solver
    assert all(c.shape == b.shape for c, b in zip(exported.coefs_, before, strict=True))
    assert any(np.any(c != b) for c, b in zip(exported.coefs_, before, strict=True))
    assert np.isfinite(exported.loss_)


@pytest.mark.parametrize("activation", ["gelu", "leaky_relu", "softplus"])
def test_to_sklearn_refuses_what_sklearn_cannot_represent(activation):
    model, _ = fitted("binary", activation)
    with pytest.raises(ValueError, match=f"^activation: scikit-learn's MLP has .*'{activation}'"):
        model.to_sklearn()


def test_to_sklearn_needs_a_fitted_model():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MLPClassifier().to_sklearn()


def run_onnx(model, X):
    """{output name: array} of ONNX Runtime on float32 rows X."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": np.asarray(X, np.float32)}), strict=True))


# scikit-learn's activations on every kind; jaxbp's extras on three (CI time)
ONNX_CASES = [(k, a) for k in KINDS for a in ("relu", "tanh", "logistic", "identity")] + [
    (k, a) for k in ("multiclass", "multilabel", "regression 2 outputs")
    for a in ("gelu", "leaky_relu", "softplus")]


@pytest.mark.parametrize(("kind", "activation"), ONNX_CASES)
def test_to_onnx_predicts_as_the_jaxbp_model(kind, activation, tmp_path):
    model, X = fitted(kind, activation)
    X = X.astype(np.float32)  # the graph's input type; the same rows for both
    path = tmp_path / "model.onnx"
    proto = model.to_onnx(path)
    out = run_onnx(proto, X)
    assert path.read_bytes() == proto.SerializeToString()
    if kind.startswith("regression"):
        assert list(out) == ["variable"]
        expected = model.predict(X).reshape(len(X), -1)
        np.testing.assert_allclose(out["variable"], expected, rtol=RTOL, atol=ATOL)
        return
    assert list(out) == ["label", "probabilities"]  # skl2onnx's names and order
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X), rtol=RTOL,
                               atol=ATOL)
    np.testing.assert_array_equal(out["label"], model.predict(X))


def test_a_cli_models_graph_standardises_and_maps_targets_back():
    """A regression SavedModel (as `jaxbp train` writes): inputs standardised and outputs
    mapped back to the target's units inside the graph, raw rows in."""
    net = jaxbp.MLP((3, 6, 2), hidden="tanh", output="identity")
    params = jaxbp.init(net, jax.random.key(1))
    rows = np.random.default_rng(0).normal(size=(40, 3)) * [1, 10, 100] + [0, 5, -50]
    targets = np.random.default_rng(1).normal(size=(40, 2)) * [3, 0.5] + [100, -2]
    model = SavedModel(net, params, task="regression", feature_names=["a", "b", "c"],
                       standardizer=data.Standardizer().fit(rows),
                       target_standardizer=data.Standardizer().fit(targets))
    proto = model.to_onnx()
    assert {p.key: p.value for p in proto.metadata_props} == {"feature_names": "a,b,c"}
    rows = rows.astype(np.float32)
    got = run_onnx(proto, rows)["variable"]
    # float32 standardising in the graph (float64 in load_model) on O(100) targets: 1e-5
    # relative to the target's scale
    np.testing.assert_allclose(got, model.predict(rows), rtol=1e-5, atol=1e-5 * 3)


def test_an_activation_without_an_onnx_form_is_refused():
    from jaxbp import activations
    from jaxbp.export import onnx_model

    jaxbp.register_activation("cube_for_export_test", lambda Z: Z**3, lambda Z: 3 * Z**2)
    try:
        net = jaxbp.MLP((2, 3, 1), hidden="cube_for_export_test", output="identity")
        with pytest.raises(ValueError, match=r"^net\.hidden: no ONNX form for the activation "
                                             r"'cube_for_export_test'"):
            onnx_model(net, jaxbp.init(net, jax.random.key(0)))
    finally:
        activations.ACTIVATIONS.pop("cube_for_export_test")
        activations.DERIVATIVES.pop("cube_for_export_test")
