"""solver='lbfgs' (jaxbp.lbfgs): the same iterates as scikit-learn's lbfgs from the same
weights, scores within a point of it, and scikit-learn's rules (partial_fit unavailable, a
ConvergenceWarning at max_iter or max_fun).

Tolerance of the iterate comparison: scikit-learn runs SciPy's L-BFGS-B, jaxbp the same method
on the device (jaxbp/lbfgs.py); while each line search accepts its first trial step they take
the same steps, and only the order of floating-point sums differs (~1e-16 relative per
evaluation). Measured in float64 from these starts: parameters within 4e-14 of scikit-learn's
(relative to their largest) after 1-20 iterations, both converging at the same iteration; they
part (1e-3 after 40 iterations on diabetes) once a line search interpolates, where the two
searches pick other points meeting the same conditions. rtol 1e-9 leaves room for rounding and
fails on any difference in the objective (an L2 term off by a factor of 2 moves the first
iterate by ~1e-3).
"""

import warnings

import jax
import numpy as np
import pytest
from sklearn import neural_network
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import jaxbp
from jaxbp.lbfgs import LbfgsConvergenceWarning, fit_lbfgs
from jaxbp.sklearn import MLPClassifier, MLPRegressor

RTOL = 1e-9


def problem(name):
    X, y = {"breast_cancer": load_breast_cancer, "digits": load_digits,
            "diabetes": load_diabetes}[name](return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if name == "diabetes":
        y = (y - y.mean()) / y.std()
    return X, y


def started(est, X, y, start):
    """`est` set up by a one-iteration fit, then given the weights `start` (warm_start=True:
    its next fit continues from them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_params(max_iter=1, warm_start=True).fit(X, y)
    est.coefs_ = [c.copy() for c in start[0]]
    est.intercepts_ = [b.copy() for b in start[1]]
    return est


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "diabetes"])
def test_iterates_equal_scikit_learns_from_the_same_weights(name):
    X, y = problem(name)
    ours, theirs = ((MLPRegressor, neural_network.MLPRegressor) if name == "diabetes" else
                    (MLPClassifier, neural_network.MLPClassifier))
    settings = dict(hidden_layer_sizes=(16,), solver="lbfgs", alpha=1e-3, random_state=0)
    n_out = 10 if name == "digits" else 1
    rng = np.random.default_rng(0)
    start = ([rng.normal(size=(X.shape[1], 16)) * 0.3, rng.normal(size=(16, n_out)) * 0.3],
             [rng.normal(size=16) * 0.1, rng.normal(size=n_out) * 0.1])
    for iterations in (1, 3, 10):
        a = started(ours(**settings), X, y, start).set_params(max_iter=iterations)
        b = started(theirs(**settings), X, y, start).set_params(max_iter=iterations)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            a.fit(X, y)
            b.fit(X, y)
        assert a.n_iter_ == b.n_iter_ == iterations
        np.testing.assert_allclose(a.loss_, b.loss_, rtol=RTOL)
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
            np.testing.assert_allclose(p, q, rtol=0, atol=RTOL * np.abs(q).max())


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "diabetes"])
def test_scores_are_within_a_point_of_scikit_learns(name):
    """Mean test score over random_state 0, 1, 2 (each estimator from its own initialisation:
    jaxbp's He, scikit-learn's Glorot uniform), 75/25 split (stratified for classes).
    Classifiers at the defaults (100 relu units, alpha 1e-4, max_iter 200); the regressor
    with 8 units and alpha 10, since at the defaults both overfit diabetes to a negative R².
    Measured (float64): breast_cancer 0.956 / 0.956, digits 0.973 / 0.971, diabetes R²
    0.336 / 0.338."""
    X, y = problem(name)
    regression = name == "diabetes"
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0,
                                              stratify=None if regression else y)
    ours, theirs = ((MLPRegressor, neural_network.MLPRegressor) if regression else
                    (MLPClassifier, neural_network.MLPClassifier))
    settings = dict(hidden_layer_sizes=(8,), alpha=10.0) if regression else {}
    means = []
    for cls in (ours, theirs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            means.append(np.mean([cls(solver="lbfgs", random_state=seed, **settings)
                                  .fit(X_tr, y_tr).score(X_te, y_te) for seed in range(3)]))
    assert means[0] >= means[1] - 0.01, means


def test_partial_fit_is_not_available_with_lbfgs():
    X, y = problem("breast_cancer")
    for cls in (MLPClassifier, MLPRegressor):
        est = cls(solver="lbfgs")
        assert not hasattr(est, "partial_fit") and hasattr(cls(), "partial_fit")
        with pytest.raises(AttributeError, match=f"^This '{cls.__name__}' has no attribute "
                                                 f"'partial_fit'") as caught:
            est.partial_fit(X, y)  # as scikit-learn's (available_if), with its reason
        assert str(caught.value.__cause__) == ("partial_fit is only available for stochastic "
                                               "optimizers. lbfgs is not stochastic.")


def test_limits_stop_it_with_a_convergence_warning():
    X, y = problem("digits")
    with pytest.warns(ConvergenceWarning, match=r"^lbfgs failed to converge after 3 "
                                                r"iteration\(s\) \(status=1\): stopped: max_iter"):
        est = MLPClassifier((8,), solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert est.loss_ == est.loss_curve_[-1] < est.loss_curve_[0]
    with pytest.warns(ConvergenceWarning, match="^lbfgs failed to converge"):
        est = MLPClassifier((8,), solver="lbfgs", max_fun=5, random_state=0).fit(X, y)
    assert 1 <= est.n_iter_ <= 5  # one evaluation an iteration here: 5 at most
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        est = MLPClassifier((8,), solver="lbfgs", tol=1e-2, random_state=0).fit(X, y)
    assert est.n_iter_ < 200


def test_dropout_is_refused_with_lbfgs():
    X, y = problem("breast_cancer")
    with pytest.raises(ValueError, match=r"^dropout: expected 0\.0 with solver='lbfgs'"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(X, y)


def test_a_weight_of_two_is_a_row_twice():
    """fit_lbfgs with integer sample weights runs the same iterates as the rows repeated: the
    objective Σ w ℓ / Σ w (and its L2 term over Σ w) is the same function (float64; the sums'
    order differs, hence rtol 1e-9 as above)."""
    X, y = problem("breast_cancer")
    X, y = X[:120], y[:120]
    w = np.random.default_rng(0).integers(0, 3, size=len(y))
    net = jaxbp.MLP((X.shape[1], 8, 1), output="sigmoid")
    kw = dict(max_iter=15, alpha=1e-2, key=jax.random.key(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LbfgsConvergenceWarning)
        weighted = fit_lbfgs(net, X, y, sample_weight=w, **kw)
        repeated = fit_lbfgs(net, np.repeat(X, w, axis=0), np.repeat(y, w), **kw)
    assert weighted.epochs_run == repeated.epochs_run >= 10
    np.testing.assert_allclose(weighted.history["train_cost"], repeated.history["train_cost"],
                               rtol=RTOL)
    for a, b in zip(jax.tree.leaves(weighted.params), jax.tree.leaves(repeated.params),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * np.abs(b).max())


def test_fit_lbfgs_checks_its_arguments():
    X, y = problem("breast_cancer")
    net = jaxbp.MLP((X.shape[1], 4, 1), output="sigmoid")
    for kw, message in ((dict(max_iter=0), "^max_iter: expected an int >= 1, got 0"),
                        (dict(max_fun=1.5), "^max_fun: expected an int >= 1, got 1.5"),
                        (dict(tol=-1.0), "^tol: expected a number >= 0, got -1.0"),
                        (dict(alpha="big"), "^alpha: expected a number >= 0, got 'big'")):
        with pytest.raises(ValueError, match=message):
            fit_lbfgs(net, X, y, **kw)
    with pytest.raises(ValueError, match=r"^X: expected row-major shape"):
        fit_lbfgs(net, X.T, y)
