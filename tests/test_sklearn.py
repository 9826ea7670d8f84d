"""jaxbp.sklearn: scikit-learn's own estimator checks, use in its tools (Pipeline, GridSearchCV,
cross_val_score), scikit-learn's semantics (stopping, L2, class_weight, labels), optimizer
state kept by warm_start and partial_fit, accuracy next to scikit-learn's MLP, bad input."""

import functools
import os
import pickle
import warnings
from unittest import SkipTest

import jax
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import parametrize_with_checks

import jaxbp
from jaxbp.sklearn import MLPClassifier, MLPRegressor

# Small, quick settings for scikit-learn's checks: 8 hidden units; lr 0.01 so that such a small
# net reaches the checks' accuracy and R² bars within max_iter=200.
CHECKED = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, random_state=0)
# For the tests below: small and quick to converge (tol 1e-3: no ConvergenceWarning).
QUICK = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, tol=1e-3, max_iter=500,
             random_state=0)


def expected_skips():
    """The checks the README says skip ("scikit-learn estimators": 126 pass; 3 skip: the 2
    array-API checks unless SCIPY_ARRAY_API is set, and the decision_function one)."""
    skips = {"check_classifiers_multilabel_output_format_decision_function"}
    if os.environ.get("SCIPY_ARRAY_API") != "1":  # scikit-learn's own condition
        skips.add("check_array_api_input")
    return skips


def check_name(check):
    return check.func.__name__ if isinstance(check, functools.partial) else check.__name__


# Many checks fit tiny or noisy data on which the loss still falls by more than `tol` after
# max_iter epochs; scikit-learn's own MLP emits its ConvergenceWarning there too, and the
# project's pytest config turns warnings into errors. Only that warning is ignored, only here.
# Each check must pass, except those the README names as skipped, which must skip (so that
# test_estimator_check_counts_match_the_readme can count without running them again).
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPClassifier(**CHECKED), MLPRegressor(**CHECKED)])
def test_scikit_learn_estimator_checks(estimator, check):
    skip = check_name(check) in expected_skips()
    try:
        check(estimator)
    except SkipTest:
        assert skip, f"{check_name(check)} skipped; the README counts it among the passing checks"
        raise
    assert not skip, f"{check_name(check)} ran; the README counts it among the skipped checks"


def test_estimator_check_counts_match_the_readme():
    """README: 126 checks pass and 3 skip, none xfail (with SCIPY_ARRAY_API=1 the 2 array-API
    checks run and pass: 128 and 1, measured with scikit-learn 1.9.1). The parameters pytest
    runs above are counted here; that test makes every check pass except the expected
    skips, which it makes skip, so the counts need no second run of the checks."""
    (mark,) = [m for m in test_scikit_learn_estimator_checks.pytestmark
               if m.name == "parametrize"]
    params = mark.args[1]
    assert not [p for p in params if getattr(p, "marks", ())]  # no xfail (or other) marks
    names = [check_name(getattr(p, "values", p)[1]) for p in params]
    skipped = sum(name in expected_skips() for name in names)
    readme = (126, 3) if os.environ.get("SCIPY_ARRAY_API") != "1" else (128, 1)
    assert (len(names) - skipped, skipped) == readme


@pytest.fixture(scope="module")
def cancer():
    """breast_cancer split 80/20 (stratified), standardised with the training rows."""
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def same(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(u, v)


# --- accuracy, and scikit-learn's tools ----------------------------------------------------------
def test_breast_cancer_accuracy_next_to_scikit_learn(cancer):
    """Default settings ((100,), relu, Adam 1e-3, 200 epochs), three seeds each: on this
    split of 114 test rows both land at 95-97% (one row is 0.9%)."""
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    Xtr, Xte, ytr, yte = cancer
    ours, theirs = [], []
    with warnings.catch_warnings():  # both run all 200 epochs: the loss still falls by > tol
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in range(3):
            ours.append(MLPClassifier(random_state=seed).fit(Xtr, ytr))
            theirs.append(SkMLPClassifier(random_state=seed).fit(Xtr, ytr))
    acc = [clf.score(Xte, yte) for clf in ours]
    sk_acc = [clf.score(Xte, yte) for clf in theirs]
    print(f"\nbreast_cancer held-out accuracy, seeds 0-2: jaxbp.sklearn "
          f"{' '.join(f'{a:.4f}' for a in acc)} (mean {np.mean(acc):.4f}); scikit-learn "
          f"{' '.join(f'{a:.4f}' for a in sk_acc)} (mean {np.mean(sk_acc):.4f})")
    assert np.mean(acc) >= 0.95 and min(acc) >= 0.94
    clf = ours[0]
    assert clf.predict_proba(Xte).shape == (len(yte), 2)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1 and clf.n_layers_ == 3
    assert [c.shape for c in clf.coefs_] == [(30, 100), (100, 1)]
    assert [b.shape for b in clf.intercepts_] == [(100,), (1,)]
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.t_ == clf.n_iter_ * len(ytr)
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_pipeline_cross_val_score_and_grid_search():
    X, y = load_iris(return_X_y=True)  # unscaled: the pipeline standardises
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**QUICK))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1.0]}, cv=3).fit(X, y)
    assert grid.best_params_["mlpclassifier__alpha"] in (1e-4, 1.0)
    assert grid.score(X, y) > 0.9


# --- scikit-learn's semantics ------------------------------------------------------------------
def test_string_labels_multiclass_softmax_and_probabilities():
    X, y = iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(**QUICK)
    clf.fit(X, labels)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert clf.out_activation_ == "softmax" and clf.n_outputs_ == 3
    assert clf.predict(X).dtype == labels.dtype and clf.score(X, labels) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-12)


def test_binary_labels_one_sigmoid_output_and_multilabel():
    X, y = iris()
    keep = y > 0
    binary = MLPClassifier(**QUICK)
    binary.fit(X[keep], np.where(y[keep] == 1, "no", "yes"))
    assert binary.out_activation_ == "logistic" and binary.n_outputs_ == 1
    assert binary.classes_.tolist() == ["no", "yes"]
    p = binary.predict_proba(X[keep])
    assert p.shape == (keep.sum(), 2)
    np.testing.assert_array_equal(binary.classes_[(p[:, 1] > 0.5).astype(int)],
                                  binary.predict(X[keep]))

    Xm, Ym = make_multilabel_classification(n_samples=120, n_features=5, n_classes=3,
                                            random_state=0)
    multi = MLPClassifier(**QUICK)
    multi.fit(Xm, Ym)
    assert multi.out_activation_ == "logistic" and multi.n_outputs_ == 3
    assert multi.predict(Xm).shape == Ym.shape and set(np.unique(multi.predict(Xm))) <= {0, 1}
    assert multi.predict_proba(Xm).shape == Ym.shape


@pytest.mark.parametrize(("fitted_on", "y"), [
    (["no", "yes"], ["yes", "no", "no"]),  # binary: one column, the second class's
    (["no", "yes"], ["no", "no"]),  # a batch of one class (partial_fit)
    ([2, 0, 1], [1, 0, 1]),  # classes given beyond a batch's: multiclass columns
    ([1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 3.0, 2.0]),
    ([False, True], [True, False]),
])
def test_labels_are_encoded_as_label_binarizer_encodes_them(fitted_on, y):
    from sklearn.preprocessing import LabelBinarizer

    from jaxbp.sklearn import _encoded

    lb = LabelBinarizer().fit(fitted_on)
    y = np.asarray(y)
    want = lb.transform(y)
    got = _encoded(lb, y)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_regressor_output_shapes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=80)
    reg = MLPRegressor(**QUICK).fit(X, y)
    assert reg.out_activation_ == "identity" and reg.n_outputs_ == 1
    assert reg.predict(X).shape == (80,) and reg.score(X, y) > 0.9
    Y2 = np.column_stack([y, -y])
    reg2 = MLPRegressor(**QUICK).fit(X, Y2)
    assert reg2.predict(X).shape == (80, 2) and reg2.n_outputs_ == 2


def test_l2_term_is_scikit_learns_after_padding():
    """loss_curve_[0] is the first batch's cost at the initial weights: the data loss plus
    α/(2n) Σ||W||² with n the real rows (here 100, padded by zero-weight rows to 128)."""
    X, y = iris()
    X, y = X[:100], y[:100]  # two classes: one sigmoid output
    alpha = 3.0
    with pytest.warns(ConvergenceWarning):
        clf = MLPClassifier((5,), alpha=alpha, max_iter=1, random_state=0).fit(X, y)
    net = jaxbp.MLP((4, 5, 1), hidden="relu", output="sigmoid")
    params = jaxbp.init(net, jax.random.fold_in(jax.random.key(clf._seed), 2**31 - 2))
    data_loss = jaxbp.evaluate(net, params, X, y)["cost"]
    l2 = alpha / (2 * len(y)) * sum(float(np.sum(np.asarray(W) ** 2)) for W, _ in params)
    np.testing.assert_allclose(clf.loss_curve_[0], data_loss + l2, rtol=1e-12)


def test_stopping_rule_and_convergence_warning():
    X, y = iris()
    clf = MLPClassifier((8,), learning_rate_init=0.01, max_iter=1000, tol=1e-3,
                        n_iter_no_change=5, random_state=0).fit(X, y)
    assert clf.n_iter_ < 1000  # stopped by tol, so no warning
    # scikit-learn's rule: stop after n_iter_no_change + 1 epochs in a row that do not beat
    # the best loss so far by tol
    loss = clf.loss_curve_
    assert all(loss[j] > min(loss[:j]) - 1e-3 for j in range(len(loss) - 6, len(loss)))
    assert loss[-7] <= min(loss[:-7]) - 1e-3
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)


def test_early_stopping_curves_and_best_weights():
    X, y = iris()
    clf = MLPClassifier((8,), learning_rate_init=0.01, early_stopping=True,
                        validation_fraction=0.2, n_iter_no_change=5, max_iter=500,
                        random_state=0).fit(X, y)
    n = clf.n_iter_
    assert len(clf.loss_curve_) == len(clf.validation_scores_) == n
    assert len(clf.validation_loss_curve_) == n and np.all(np.isfinite(clf.validation_loss_curve_))
    assert clf.best_validation_score_ == max(clf.validation_scores_) and clf.best_loss_ is None
    # the weights kept are the best epoch's: they score best_validation_score_ on the held-out
    # rows (the stratified split drawn from the estimator's seed)
    _, val = clf._split(len(y), y)
    assert len(val) == 30 and np.all(np.bincount(y[val]) == 10)
    assert clf.score(X[val], y[val]) == clf.best_validation_score_
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        clf.partial_fit(X, y)


def test_sgd_invscaling_equals_jaxbp_fit(cancer):
    """The estimator's epochs are jaxbp.fit's: same key, init, batches, L2 and schedule."""
    Xtr, _, ytr, _ = cancer
    kw = dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, power_t=0.25,
              batch_size=64, alpha=1e-3)
    with pytest.warns(ConvergenceWarning):
        clf = MLPClassifier((6,), max_iter=3, random_state=1, **kw).fit(Xtr, ytr)
    net = jaxbp.MLP((30, 6, 1), hidden="relu", output="sigmoid")
    ref = jaxbp.fit(net, Xtr, ytr, opt=jaxbp.optim.sgd(0.5, momentum=0.9, nesterov=True),
                    epochs=3, batch_size=64, key=clf._seed, alpha=1e-3,
                    schedule=jaxbp.Schedule("invscaling", power_t=0.25), progress=False)
    for (W, b), coef, intercept in zip(ref.params, clf.coefs_, clf.intercepts_, strict=True):
        np.testing.assert_allclose(coef, np.asarray(W).T, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(intercept, np.asarray(b)[:, 0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(clf.loss_curve_, ref.history["train_cost"], rtol=1e-12)


def test_sgd_adaptive_divides_the_rate_by_5(capsys):
    X, y = iris()
    clf = MLPClassifier((8,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.01,
                        tol=10.0, n_iter_no_change=1, max_iter=100, verbose=True,
                        random_state=0).fit(X, y)  # tol 10: no epoch counts as improving
    out = capsys.readouterr().out
    # from epoch 3 on (the first always improves on inf), every second epoch is the second in
    # a row without improvement (> n_iter_no_change): the rate goes 0.01 -> 0.002 -> ... ->
    # 6.4e-7 in epochs 3..13, and at <= 1e-6 training stops (epoch 15), as in scikit-learn
    assert out.count("Setting learning rate to") == 6 and "Setting learning rate to 0.002000" in out
    assert out.count("Learning rate too small. Stopping.") == 1
    np.testing.assert_allclose(clf._lr, 0.01 / 5.0**6, rtol=1e-12)
    assert clf.n_iter_ == 15 and len(clf.loss_curve_) == 15


# --- optimizer state across calls (scikit-learn#6091) --------------------------------------------
@pytest.mark.parametrize("shuffle", [False, True])
def test_two_partial_fits_equal_a_two_epoch_fit(cancer, shuffle):
    """Adam's moments and step count carry over between partial_fit calls, and the epoch count
    (which keys the shuffle) continues: two calls are one 2-epoch fit, bit for bit."""
    Xtr, _, ytr, _ = cancer
    kw = dict(hidden_layer_sizes=(8,), batch_size=64, shuffle=shuffle, random_state=3)
    with pytest.warns(ConvergenceWarning):
        whole = MLPClassifier(max_iter=2, **kw).fit(Xtr, ytr)
    parts = MLPClassifier(**kw)
    parts.partial_fit(Xtr, ytr, classes=[0, 1])
    parts.partial_fit(Xtr, ytr)
    same(whole, parts)
    assert parts._opt_state.count == whole._opt_state.count == 2 * 8  # 8 batches an epoch
    assert parts.loss_curve_ == whole.loss_curve_ and parts.t_ == whole.t_ == 2 * len(ytr)
    # with Adam restarted in between (what scikit-learn's warm_start fit does) it differs
    restarted = MLPClassifier(**kw).partial_fit(Xtr, ytr, classes=[0, 1])
    restarted._opt_state = None
    restarted.partial_fit(Xtr, ytr)
    assert not np.allclose(restarted.coefs_[0], whole.coefs_[0])


def test_partial_fit_batches_may_miss_classes():
    X, y = iris()
    labels = np.array(["a", "b", "c"])[y]
    clf = MLPClassifier((8,), random_state=0)
    for rows in [*np.array_split(np.flatnonzero(y < 2), 3), np.flatnonzero(y == 2)]:
        clf.partial_fit(X[rows], labels[rows], classes=["c", "b", "a"])
    assert clf.classes_.tolist() == ["a", "b", "c"] and clf.out_activation_ == "softmax"
    assert clf.n_iter_ == 1 and clf.t_ == len(y) and len(clf.loss_curve_) == 4
    assert clf.predict_proba(X).shape == (150, 3)
    with pytest.raises(ValueError, match="classes: expected the classes of the first call"):
        clf.partial_fit(X, labels, classes=["a", "b"])
    with pytest.raises(ValueError, match=r"`y` has classes not in `self\.classes_`"):
        clf.partial_fit(X, np.where(y == 0, "d", labels))


def test_warm_start_continues_and_survives_pickle(cancer):
    Xtr, _, ytr, _ = cancer
    kw = dict(hidden_layer_sizes=(8,), n_iter_no_change=np.inf, random_state=0)
    with pytest.warns(ConvergenceWarning):
        whole = MLPClassifier(max_iter=6, **kw).fit(Xtr, ytr)
        warm = MLPClassifier(max_iter=3, warm_start=True, **kw).fit(Xtr, ytr)
        warm = pickle.loads(pickle.dumps(warm)).fit(Xtr, ytr)
    same(whole, warm)
    assert warm.n_iter_ == 3 and len(warm.loss_curve_) == 6
    np.testing.assert_array_equal(warm.predict_proba(Xtr), whole.predict_proba(Xtr))


# --- weights ----------------------------------------------------------------------------------
def test_class_weight_balanced_is_the_equivalent_sample_weight(cancer):
    Xtr, _, ytr, _ = cancer
    kw = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    with pytest.warns(ConvergenceWarning):
        a = MLPClassifier(class_weight="balanced", **kw).fit(Xtr, ytr)
    with pytest.warns(ConvergenceWarning):
        b = MLPClassifier(**kw).fit(Xtr, ytr, sample_weight=compute_sample_weight("balanced",
                                                                                   ytr))
    same(a, b)
    with pytest.warns(ConvergenceWarning):
        c = MLPClassifier(**kw).fit(Xtr, ytr)
    assert not np.allclose(a.coefs_[0], c.coefs_[0])
    with pytest.warns(ConvergenceWarning):
        d = MLPClassifier(class_weight={0: 3.0}, **kw).fit(Xtr, ytr)
    with pytest.warns(ConvergenceWarning):
        e = MLPClassifier(**kw).fit(Xtr, ytr, sample_weight=np.where(ytr == 0, 3.0, 1.0))
    same(d, e)
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(Xtr, ytr, classes=[0, 1])
    with pytest.raises(ValueError, match=r"class_weight: classes \[7\] are not in classes_"):
        MLPClassifier(class_weight={7: 1.0}).fit(Xtr, ytr)


def test_dropout_is_inverted_dropout_in_training_and_off_at_inference(cancer):
    """One epoch of two batches with dropout and plain SGD equals two hand-computed steps whose
    masks are drawn here as jaxbp.fit documents them (epoch key fold_in(key, 0), split into
    shuffle and dropout keys; batch i: fold_in(dropout key, i), one key per layer; keep with
    probability 1 − p, scale by 1/(1 − p)); without dropout the weights differ; predictions
    are the plain forward pass of coefs_ (no mask). float64, same arithmetic: 1e-12."""
    Xtr, Xte, ytr, _ = cancer
    X, y = Xtr[:100], ytr[:100]
    p, lr = 0.3, 0.1
    kw = dict(hidden_layer_sizes=(16,), solver="sgd", momentum=0.0, learning_rate_init=lr,
              alpha=0.0, batch_size=50, shuffle=False, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning):
        drop = MLPClassifier(dropout=p, **kw).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        plain = MLPClassifier(**kw).fit(X, y)
    assert not np.allclose(drop.coefs_[0], plain.coefs_[0], rtol=1e-3)

    net = jaxbp.MLP((30, 16, 1), hidden="relu", output="sigmoid")
    key = jax.random.key(drop._seed)
    params = jaxbp.init(net, jax.random.fold_in(key, 2**31 - 2))
    _, k_drop = jax.random.split(jax.random.fold_in(key, 0))
    for i, rows in enumerate((slice(0, 50), slice(50, 100))):
        k1 = jax.random.split(jax.random.fold_in(k_drop, i), net.L)[1]
        masks = (None, jax.random.bernoulli(k1, 1 - p, (16, 50)).astype(np.float64) / (1 - p))
        _, cache = jaxbp.backprop.forward(net, params, jax.numpy.asarray(X[rows].T), masks)
        _, grads = jaxbp.backward(net, params, cache, y[None, rows].astype(np.float64))
        params = jax.tree.map(lambda a, g: a - lr * g, params, grads)
    for (W, b), coef, intercept in zip(params, drop.coefs_, drop.intercepts_, strict=True):
        np.testing.assert_allclose(coef, np.asarray(W).T, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(intercept, np.asarray(b)[:, 0], rtol=1e-12, atol=1e-14)

    hidden = np.maximum(Xte @ drop.coefs_[0] + drop.intercepts_[0], 0.0)
    z = (hidden @ drop.coefs_[1] + drop.intercepts_[1])[:, 0]
    np.testing.assert_allclose(drop.predict_proba(Xte)[:, 1], 1 / (1 + np.exp(-z)),
                               rtol=1e-12, atol=1e-15)


def test_float32_unless_x64():
    X, y = iris()
    with jax.enable_x64(False):
        with pytest.warns(ConvergenceWarning):
            clf = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
        assert clf.coefs_[0].dtype == np.float32
        assert clf.predict_proba(X).dtype == np.float64  # X's dtype, as scikit-learn
    with pytest.warns(ConvergenceWarning):
        clf = MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
    assert clf.coefs_[0].dtype == np.float64  # x64 is on in the tests (conftest.py)


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "message"), [
    ({"solver": "newton"}, r"solver: expected one of \['lbfgs', 'sgd', 'adam'\], got 'newton'"),
    ({"max_fun": 0}, "max_fun: expected an int >= 1, got 0"),
    ({"activation": "swish"}, r"activation: expected one of .*'logistic'.*, got 'swish'"),
    ({"learning_rate_init": -0.1}, "learning_rate_init: expected a number > 0, got -0.1"),
    ({"learning_rate": "cyclic"}, "learning_rate: expected one of"),
    ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes: expected a positive int"),
    ({"alpha": -1.0}, "alpha: expected a number >= 0, got -1.0"),
    ({"batch_size": 0}, 'batch_size: expected "auto" or an int >= 1, got 0'),
    ({"momentum": 1.5}, "momentum: expected a number >= 0 and <= 1, got 1.5"),
    ({"validation_fraction": 1.0}, "validation_fraction: expected a number >= 0 and < 1"),
    ({"validation_fraction": 0.0, "early_stopping": True},
     "validation_fraction: expected a number > 0 and < 1, got 0.0"),
    ({"dropout": 1.0}, "dropout: expected a number >= 0 and < 1, got 1.0"),
    ({"class_weight": "auto"}, "class_weight: expected None, 'balanced' or a dict"),
])
def test_bad_parameters_are_named(params, message):
    X, y = iris()
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**params).fit(X, y)


def test_bad_data_messages():
    X, y = iris()
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier().fit(np.where(X > 1.5, np.nan, X), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier().fit(X, y[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        MLPRegressor().fit(X[:0], y[:0])
    with pytest.raises(ValueError, match=r"at least 2 classes .* only one class: 'a'"):
        MLPClassifier().fit(X, np.full(len(y), "a"))
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, y + 0.5)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(150,\)"):
        MLPClassifier().fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight: all weights are zero"):
        MLPClassifier().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="X has 3 features, but MLPRegressor is expecting 4"):
        with pytest.warns(ConvergenceWarning):
            reg = MLPRegressor((4,), max_iter=1).fit(X, y)
        reg.predict(X[:, :3])
    with pytest.raises(ValueError, match="training diverged"):
        MLPRegressor((4,), solver="sgd", learning_rate_init=10.0).fit(X * 1e3, y * 1e3)
