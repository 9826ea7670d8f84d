"""jaxbp.sklearn.GridSearchCV and RandomizedSearchCV: scikit-learn's search, its fits trained
as populations; every score, rank and choice equal to scikit-learn's own search over the same
jaxbp estimator."""

import threading
import warnings

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn import model_selection
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectKBest
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from jaxbp import datasets, population
from jaxbp import sklearn as jsk

RESULT_KEYS = ("params", "mean_test_score", "std_test_score", "rank_test_score",
               "mean_train_score")


def _same_search(ours, theirs, X):
    """Every key of cv_results_, rank for rank; the scores to rtol 1e-12 (float64). A member
    of a population equals `fit` alone to that tolerance, not always bit for bit: the vmapped
    program may round a last bit differently from `fit`'s on some CPUs (equal bit for bit on
    the AVX-512 Xeon, one ulp apart in one mean score on an AVX2 EPYC)."""
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    for k in RESULT_KEYS + tuple(k for k in theirs.cv_results_ if k.startswith("split")):
        if k not in theirs.cv_results_:
            continue
        if k in ("params", "rank_test_score"):
            assert list(ours.cv_results_[k]) == list(theirs.cv_results_[k]), k
        else:  # NaN (a failed fit's error_score) equals NaN here
            np.testing.assert_allclose(np.asarray(ours.cv_results_[k]),
                                       np.asarray(theirs.cv_results_[k]), rtol=1e-12,
                                       atol=1e-15, err_msg=k)
    assert (ours.best_params_, ours.best_index_) == (theirs.best_params_, theirs.best_index_)
    np.testing.assert_allclose(ours.best_score_, theirs.best_score_, rtol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.fixture
def counted(monkeypatch):
    """The fits run one by one (the estimator's `fit` path) and the populations trained."""
    calls = {"one_by_one": 0, "populations": [], "lookahead": []}
    one, pop = jsk._fit, population.fit_population

    def one_by_one(*args, **kwargs):
        calls["one_by_one"] += 1
        return one(*args, **kwargs)

    def populations(*args, **kwargs):
        calls["populations"].append(len(kwargs["keys"]))
        calls["lookahead"].append(kwargs["lookahead"])
        return pop(*args, **kwargs)

    monkeypatch.setattr(jsk, "_fit", one_by_one)
    monkeypatch.setattr("jaxbp.search.fit_population", populations)
    return calls


def test_grid_search_over_a_pipeline_equals_scikit_learns(counted):
    """A Pipeline (StandardScaler fitted per fold) ending in jaxbp's MLPClassifier with early
    stopping on its own validation rows: 2 × 2 candidates × 3 folds train as one population
    (the refit alone runs one by one), and the results equal scikit-learn's GridSearchCV."""
    ds = datasets.load("breast_cancer")
    X, y = ds.X, ds.y
    est = make_pipeline(StandardScaler(), jsk.MLPClassifier(
        hidden_layer_sizes=(6,), max_iter=15, random_state=0, early_stopping=True,
        n_iter_no_change=3))
    grid = {"mlpclassifier__alpha": [1e-4, 1.0], "mlpclassifier__learning_rate_init": [1e-3, 3e-2]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=cv, return_train_score=True).fit(X, y)
        assert counted == {"one_by_one": 1, "populations": [12], "lookahead": [8]}  # Adam
        theirs = model_selection.GridSearchCV(est, grid, cv=cv, return_train_score=True).fit(X, y)
    _same_search(ours, theirs, X)


def test_randomized_search_of_a_regressor_equals_scikit_learns(counted):
    """RandomizedSearchCV over jaxbp's MLPRegressor (no pipeline), batch sizes drawn too (two
    populations: the batch size is part of the compiled program), n_jobs=2 asked."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=120)
    est = jsk.MLPRegressor(hidden_layer_sizes=(5,), max_iter=10, random_state=1)
    space = {"alpha": loguniform(1e-5, 1e-1), "batch_size": [16, 32]}
    kw = dict(n_iter=4, cv=KFold(3, shuffle=True, random_state=0), random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.RandomizedSearchCV(est, space, n_jobs=2, **kw).fit(X, y)
        assert counted["one_by_one"] == 1 and sum(counted["populations"]) == 12
        theirs = model_selection.RandomizedSearchCV(est, space, **kw).fit(X, y)
    assert ours.n_jobs == 2
    _same_search(ours, theirs, X)


def test_a_grid_over_the_optimizers_settings_is_one_population(counted):
    """Adam's beta_1, beta_2 and epsilon, and SGD's momentum, vary inside one population
    each (traced values of the program): a grid over them trains 2 populations, not 8, and
    the results equal scikit-learn's search."""
    ds = datasets.load("breast_cancer")
    X, y = ds.X, ds.y
    est = make_pipeline(StandardScaler(), jsk.MLPClassifier(hidden_layer_sizes=(4,),
                                                            max_iter=6, random_state=0))
    grid = [{"mlpclassifier__beta_1": [0.9, 0.8], "mlpclassifier__beta_2": [0.999, 0.99],
             "mlpclassifier__epsilon": [1e-8, 1e-6]},
            {"mlpclassifier__solver": ["sgd"], "mlpclassifier__momentum": [0.9, 0.5]}]
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=cv).fit(X, y)
        assert sorted(counted["populations"]) == [4, 16]
        theirs = model_selection.GridSearchCV(est, grid, cv=cv).fit(X, y)
    _same_search(ours, theirs, X)


def test_rates_set_by_the_estimators_hooks_are_not_run_ahead(counted):
    """SGD's 'invscaling' and 'adaptive' rates are set for the next epoch by the estimator's
    end-of-epoch hook (the examples seen so far; a stalled loss dividing the rate by 5), so
    their population runs no epoch ahead of the one read back: the results equal
    scikit-learn's search, which fits them one by one."""
    ds = datasets.load("breast_cancer")
    X, y = ds.X, ds.y
    est = make_pipeline(StandardScaler(), jsk.MLPClassifier(
        hidden_layer_sizes=(4,), solver="sgd", max_iter=10, tol=0.05, n_iter_no_change=2,
        random_state=0))
    grid = {"mlpclassifier__learning_rate": ["invscaling", "adaptive"],
            "mlpclassifier__learning_rate_init": [0.05, 0.5]}
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=cv).fit(X, y)
        assert counted["populations"] == [8] and counted["lookahead"] == [1]  # hooks' rates
        theirs = model_selection.GridSearchCV(est, grid, cv=cv).fit(X, y)
    _same_search(ours, theirs, X)


def test_what_no_population_trains_runs_one_by_one(counted):
    """solver='lbfgs' candidates run one by one beside the adam ones' population; a
    candidate whose fits diverge fails as in scikit-learn (error_score, FitFailedWarning)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = 1e3 * X[:, 0]  # unscaled targets: SGD at a rate of 10 diverges
    est = jsk.MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    grid = [{"solver": ["lbfgs"]}, {"solver": ["sgd"], "learning_rate_init": [1e-4, 10.0]}]
    cv = KFold(2, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=cv, error_score=np.nan).fit(X, y)
        assert counted == {"one_by_one": 0, "populations": [4], "lookahead": [8]}
        theirs = model_selection.GridSearchCV(est, grid, cv=cv, error_score=np.nan).fit(X, y)
    assert np.isnan(ours.cv_results_["mean_test_score"][2])  # diverged: the error path
    _same_search(ours, theirs, X)
    raised = {}  # with error_score='raise': the error of the estimator's own fit, word for word
    for name, search in (("ours", jsk.GridSearchCV), ("theirs", model_selection.GridSearchCV)):
        with pytest.raises(ValueError, match="training diverged") as e, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search(est, grid[1], cv=cv, error_score="raise").fit(X, y)
        raised[name] = str(e.value)
    assert raised["ours"] == raised["theirs"]


def test_a_grid_over_a_supervised_preprocessing_step_equals_scikit_learns(counted):
    """A three-step Pipeline whose first step uses y (SelectKBest): the grid varies its k
    and the middle step's with_std; each split's preprocessing is fitted per setting of the
    steps (two widths of input: two populations), and the results equal scikit-learn's
    search."""
    ds = datasets.load("breast_cancer")
    X, y = ds.X, ds.y
    est = Pipeline([("select", SelectKBest(k=10)), ("scale", StandardScaler()),
                    ("mlp", jsk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=6,
                                              random_state=0))])
    grid = {"select__k": [3, 12], "scale__with_std": [True, False]}
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=cv).fit(X, y)
        assert counted == {"one_by_one": 1, "populations": [4, 4], "lookahead": [8, 8]}
        theirs = model_selection.GridSearchCV(est, grid, cv=cv).fit(X, y)
    _same_search(ours, theirs, X)


def test_fits_of_the_same_rows_with_other_labels_are_told_apart(counted):
    """Two splits whose training rows are equal byte for byte but whose labels differ (the
    second half of X repeats the first with every label flipped): a fit is known by its y as
    well as its X, so each split gets its own trained network, as in scikit-learn's search."""
    rng = np.random.default_rng(0)
    X0 = rng.normal(size=(24, 3))
    X, y0 = np.concatenate([X0, X0]), (X0[:, 0] > 0).astype(int)
    y = np.concatenate([y0, 1 - y0])
    halves = [(np.arange(24), np.arange(24, 48)), (np.arange(24, 48), np.arange(24))]
    est = jsk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, learning_rate_init=0.05,
                            random_state=0)
    grid = {"alpha": [1e-4, 1e-1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=halves, refit=False).fit(X, y)
        assert counted == {"one_by_one": 0, "populations": [4], "lookahead": [8]}
        theirs = model_selection.GridSearchCV(est, grid, cv=halves, refit=False).fit(X, y)
    for k in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_allclose(ours.cv_results_[k], theirs.cv_results_[k], rtol=1e-12,
                                   err_msg=k)


def _blobs(m=60, seed=0):
    """A small 3-class problem: X (m, 4), y in {0, 1, 2}, the classes in blocks (unshuffled
    KFold splits differ from StratifiedKFold's)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), m // 3)
    return rng.normal(size=(m, 4)) + y[:, None], y


def test_fit_parameters_or_data_that_is_no_array_run_one_by_one(counted):
    """A search given fit parameters (sample_weight) or X as a list trains no population: its
    fits run one by one, as scikit-learn's, with the same results."""
    X, y = _blobs()
    est = jsk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=4, random_state=0)
    grid, cv = {"alpha": [1e-4, 1e-1]}, KFold(2, shuffle=True, random_state=0)
    w = np.linspace(0.5, 2.0, len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=cv).fit(X, y, sample_weight=w)
        assert counted == {"one_by_one": 5, "populations": [], "lookahead": []}
        theirs = model_selection.GridSearchCV(est, grid, cv=cv).fit(X, y, sample_weight=w)
        _same_search(ours, theirs, X)
        counted["one_by_one"] = 0
        ours = jsk.GridSearchCV(est, grid, cv=cv).fit(X.tolist(), y)
        assert counted == {"one_by_one": 5, "populations": [], "lookahead": []}
        theirs = model_selection.GridSearchCV(est, grid, cv=cv).fit(X.tolist(), y)
    _same_search(ours, theirs, X)


def test_cv_as_a_number_splits_as_scikit_learns_search(counted):
    """cv=3 for a classifier is scikit-learn's StratifiedKFold(3) (check_cv): the population
    trains the very fits scikit-learn's search asks for (only the refit runs alone)."""
    X, y = _blobs()
    est = jsk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=4, random_state=0)
    grid = {"alpha": [1e-4, 1e-1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=3).fit(X, y)
        assert counted == {"one_by_one": 1, "populations": [6], "lookahead": [8]}
        theirs = model_selection.GridSearchCV(est, grid, cv=3).fit(X, y)
    _same_search(ours, theirs, X)


def test_a_split_whose_fit_fails_leaves_the_other_splits_to_the_population(counted):
    """The first split's training rows hold one class only (the estimator's fit raises, and
    scikit-learn's search scores it error_score): the second split's fits still train as one
    population, and the results equal scikit-learn's."""
    X, y = _blobs()
    one_class = np.flatnonzero(y == 0)
    splits = [(one_class, np.flatnonzero(y != 0)),
              (np.arange(0, 60, 2), np.arange(1, 60, 2))]
    est = jsk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=4, random_state=0)
    grid = {"alpha": [1e-4, 1e-1]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = jsk.GridSearchCV(est, grid, cv=splits, error_score=np.nan).fit(X, y)
        assert counted == {"one_by_one": 1, "populations": [2], "lookahead": [8]}
        theirs = model_selection.GridSearchCV(est, grid, cv=splits,
                                              error_score=np.nan).fit(X, y)
    assert np.all(np.isnan(ours.cv_results_["split0_test_score"]))
    _same_search(ours, theirs, X)


def test_the_fits_warnings_are_scikit_learns_searchs(counted):
    """Each fit that stops at max_iter warns (ConvergenceWarning) when scikit-learn's search
    calls it, with the message and category its own fit gives, in the same order."""
    X, y = _blobs()
    est = jsk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    grid, cv = {"alpha": [1e-4, 1e-1]}, KFold(2, shuffle=True, random_state=0)
    given = {}
    for name, search in (("ours", jsk.GridSearchCV), ("theirs", model_selection.GridSearchCV)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            search(est, grid, cv=cv).fit(X, y)
        given[name] = [(w.category, str(w.message)) for w in caught
                       if issubclass(w.category, ConvergenceWarning)]
    assert counted["populations"] == [4]
    assert len(given["theirs"]) == 5 and given["ours"] == given["theirs"]
    assert given["ours"][0] == (ConvergenceWarning, "Stochastic Optimizer: Maximum iterations "
                                "(3) reached and the optimization hasn't converged yet.")


def test_an_estimator_fits_in_a_thread_that_never_searched():
    """The searches' trained fits are kept per thread; a thread that never ran a search
    finds none and fits as usual."""
    X, y = _blobs()
    fitted = {}

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted["est"] = jsk.MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)

    thread = threading.Thread(target=fit)
    thread.start()
    thread.join()
    assert fitted["est"].n_iter_ == 2


def test_a_grid_over_dropout_and_shuffling_equals_scikit_learns(counted, capfd):
    """jaxbp's dropout and scikit-learn's shuffle, varied by the grid (one population whose
    members form four groups: dropout on or off and shuffling on or off shape the compiled
    program), give the results of scikit-learn's search; a search draws no progress bar."""
    X, y = _blobs()
    est = jsk.MLPClassifier(hidden_layer_sizes=(6,), max_iter=4, random_state=0)
    grid = {"dropout": [0.0, 0.3], "shuffle": [True, False]}
    cv = KFold(2, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = jsk.GridSearchCV(est, grid, cv=cv).fit(X, y)
        assert counted["populations"] == [8]
        assert capfd.readouterr().err == ""
        theirs = model_selection.GridSearchCV(est, grid, cv=cv).fit(X, y)
    _same_search(ours, theirs, X)
