"""The scikit-learn estimators: scikit-learn's own estimator checks, and use in its tools."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from jaxbp.sklearn import MLPClassifier, MLPRegressor

# Several checks fit on purpose with too few iterations to converge; scikit-learn's own MLP
# warns then too (ConvergenceWarning), which the project's pytest config turns into errors.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = dict(hidden_layer_sizes=(16,), max_iter=200, learning_rate_init=0.01, random_state=0)


@parametrize_with_checks([MLPClassifier(**SMALL), MLPRegressor(**SMALL)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def scaled_split():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def test_pipeline_grid_search_and_cross_val_score():
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3).fit(X, y)
    assert grid.best_params_["mlpclassifier__alpha"] in (1e-4, 1e-1)
    assert grid.score(X, y) > 0.9


def test_breast_cancer_next_to_sklearn():
    from sklearn.neural_network import MLPClassifier as SkMLP

    Xtr, Xte, ytr, yte = scaled_split()
    ours = make_pipeline(StandardScaler(), MLPClassifier(random_state=0)).fit(Xtr, ytr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = make_pipeline(StandardScaler(), SkMLP(random_state=0)).fit(Xtr, ytr)
    print(f"jaxbp {ours.score(Xte, yte):.4f}, scikit-learn {theirs.score(Xte, yte):.4f}")
    assert ours.score(Xte, yte) >= 0.95


def test_string_labels_proba_and_curves():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(**SMALL, early_stopping=True).fit(X, labels)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X)) <= set(clf.classes_) and clf.score(X, labels) > 0.8
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert len(clf.loss_curve_) == clf.n_iter_ == len(clf.validation_scores_)
    assert len(clf.validation_loss_curve_) == clf.n_iter_
    assert [c.shape for c in clf.coefs_] == [(4, 16), (16, 3)]


def test_partial_fit_keeps_the_optimizer_state():
    """Two partial_fit epochs equal one fit of two epochs (shuffle off): Adam's moments and
    step count carry over, unlike scikit-learn's."""
    Xtr, _, ytr, _ = scaled_split()
    Xtr = StandardScaler().fit_transform(Xtr)
    kw = dict(hidden_layer_sizes=(8,), shuffle=False, random_state=3, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        two = MLPClassifier(max_iter=2, tol=-np.inf, **kw).fit(Xtr, ytr)
    inc = MLPClassifier(**kw)
    inc.partial_fit(Xtr, ytr, classes=[0, 1])
    inc.partial_fit(Xtr, ytr)
    for a, b in zip(two.coefs_ + two.intercepts_, inc.coefs_ + inc.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert inc.n_iter_ == 2


def test_class_weight_is_sample_weight():
    Xtr, _, ytr, _ = scaled_split()
    Xtr = StandardScaler().fit_transform(Xtr)
    a = MLPClassifier(max_iter=20, class_weight="balanced", shuffle=False, random_state=0)
    w = len(ytr) / (2 * np.bincount(ytr))[ytr]
    b = MLPClassifier(max_iter=20, shuffle=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(Xtr, ytr)
        b.fit(Xtr, ytr, sample_weight=w)
    for u, v in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"solver": "lbfgs"}, "jaxbp has no 'lbfgs'"),
    ({"activation": "swish"}, "activation: expected one of"),
    ({"learning_rate_init": -1.0}, "learning_rate_init: expected a number > 0"),
    ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes: expected positive ints"),
])
def test_bad_parameters(kwargs, fragment):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=fragment):
        MLPClassifier(**kwargs).fit(X, y)


def test_bad_data():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier().fit(np.where(X > 5, np.nan, X), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier().fit(X, y[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        MLPRegressor().fit(X[:0], y[:0])
