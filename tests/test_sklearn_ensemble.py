"""The estimators' `ensemble=k`: k networks from k seeds trained as one population, each
member the model `ensemble=1` fits alone with its seed, the predictions their average."""

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_multilabel_classification
from sklearn.model_selection import GridSearchCV as SkGridSearchCV

from jaxbp.sklearn import GridSearchCV, MLPClassifier, MLPRegressor

SEED_HIGH = 2**31 - 1  # the documented contract: member i's random_state is the i-th draw
# Short fits stop at max_iter: members and the fits alone warn as scikit-learn's MLP does.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def member_seeds(random_state, k):
    return np.random.RandomState(random_state).randint(SEED_HIGH, size=k)


def assert_same_network(got, want):
    """Two fitted estimators of one fit: weights and loss curve to rtol 1e-12 (float64 under
    the tests' x64; a population member equals `fit` alone to that: test_population.py)."""
    assert got.n_iter_ == want.n_iter_
    for a, b in zip(got.coefs_ + got.intercepts_, want.coefs_ + want.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.loss_curve_, want.loss_curve_, rtol=1e-12)


def test_an_ensemble_is_its_members_alone_averaged():
    """ensemble=3 with early stopping (each member holds out its own validation rows and
    stops on its own epoch): each member equals MLPClassifier(random_state=its seed) fitted
    alone; predict_proba is their mean, predict the class of the largest mean."""
    X, y = make_classification(120, 6, n_informative=4, n_classes=3, random_state=0)
    kw = dict(hidden_layer_sizes=(8,), max_iter=40, early_stopping=True, n_iter_no_change=3,
              learning_rate_init=1e-2)
    ens = MLPClassifier(ensemble=3, random_state=0, **kw).fit(X, y)
    alone = [MLPClassifier(random_state=int(s), **kw).fit(X, y) for s in member_seeds(0, 3)]
    assert len(ens.estimators_) == 3 and len({m.n_iter_ for m in alone}) > 1
    for got, want in zip(ens.estimators_, alone, strict=True):
        assert_same_network(got, want)
    P = np.mean([m.predict_proba(X) for m in alone], axis=0)
    np.testing.assert_allclose(ens.predict_proba(X), P, rtol=1e-12)
    np.testing.assert_array_equal(ens.predict(X), ens.classes_[np.argmax(P, axis=1)])
    assert ens.score(X, y) == np.mean(ens.predict(X) == y)
    assert ens.n_iter_ == max(m.n_iter_ for m in alone) and not hasattr(ens, "coefs_")


def test_a_regressor_ensemble_and_a_multilabel_one_average_their_members():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=80)
    kw = dict(hidden_layer_sizes=(6,), max_iter=15, learning_rate_init=1e-2)
    ens = MLPRegressor(ensemble=2, random_state=3, **kw).fit(X, y)
    alone = [MLPRegressor(random_state=int(s), **kw).fit(X, y) for s in member_seeds(3, 2)]
    np.testing.assert_allclose(ens.predict(X), np.mean([m.predict(X) for m in alone], axis=0),
                               rtol=1e-12)
    Xm, Ym = make_multilabel_classification(60, 5, n_classes=3, random_state=0)
    ens = MLPClassifier(ensemble=2, random_state=1, **kw).fit(Xm, Ym)
    alone = [MLPClassifier(random_state=int(s), **kw).fit(Xm, Ym) for s in member_seeds(1, 2)]
    P = np.mean([m.predict_proba(Xm) for m in alone], axis=0)
    np.testing.assert_allclose(ens.predict_proba(Xm), P, rtol=1e-12)
    np.testing.assert_array_equal(ens.predict(Xm), (P > 0.5).astype(int))


def test_an_ensemble_fitted_with_sample_weights_is_its_members_fitted_with_them():
    rng = np.random.default_rng(1)
    X, y = make_classification(90, 5, n_informative=3, random_state=1)
    w = rng.uniform(0.0, 3.0, size=len(y))
    kw = dict(hidden_layer_sizes=(5,), max_iter=8, learning_rate_init=1e-2)
    ens = MLPClassifier(ensemble=2, random_state=4, **kw).fit(X, y, sample_weight=w)
    alone = [MLPClassifier(random_state=int(s), **kw).fit(X, y, sample_weight=w)
             for s in member_seeds(4, 2)]
    for got, want in zip(ens.estimators_, alone, strict=True):
        assert_same_network(got, want)


def test_what_an_ensemble_refuses_and_a_refit_of_one_network():
    X, y = make_classification(60, 4, random_state=0)
    with pytest.raises(ValueError, match=r"^ensemble: expected an int >= 1, got 0"):
        MLPClassifier(ensemble=0).fit(X, y)
    ens = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, ensemble=2, random_state=0)
    with pytest.raises(ValueError, match=r"^ensemble: partial_fit and warm_start continue one "
                                         r"network; expected ensemble=1 with them, got 2"):
        ens.partial_fit(X, y, classes=[0, 1])
    ens.fit(X, y)
    for export in ("to_sklearn", "to_onnx"):
        with pytest.raises(ValueError, match=rf"^{export}\(\): this model is an ensemble of 2 "
                                             rf"networks \(ensemble=2\)"):
            getattr(ens, export)()
    one = ens.set_params(ensemble=1).fit(X, y)  # back to one network: no members left over
    assert not hasattr(one, "estimators_") and one.to_sklearn().coefs_[0].shape == (4, 4)


def test_a_search_over_ensembles_equals_scikit_learns():
    """jaxbp's GridSearchCV trains ensembles one by one (each is a population of its own):
    the same scores as scikit-learn's GridSearchCV over the same estimator."""
    X, y = make_classification(80, 4, random_state=1)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=8, ensemble=2, random_state=0)
    grid = {"alpha": [1e-4, 1e-1]}
    ours = GridSearchCV(est, grid, cv=2).fit(X, y)
    theirs = SkGridSearchCV(est, grid, cv=2).fit(X, y)
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"],
                               theirs.cv_results_["mean_test_score"], rtol=1e-12)
