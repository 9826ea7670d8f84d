"""`jaxbp.sklearn.GridSearchCV` and `RandomizedSearchCV`: scikit-learn's searches, with the
fits of a jaxbp estimator (or of a Pipeline ending in one) trained as populations.

Before scikit-learn's search runs, every (candidate, split) fit is prepared as the estimator's
own `fit` prepares it: the pipeline's preprocessing fitted on the split's training rows, then
the estimator's checks, hold-out and end-of-epoch hooks (`_BaseMLP._prepare`). The prepared
fits that share a network, an optimizer and an epoch count train as one `fit_population`
(each member is `fit` alone: see population.py), and each result is kept under the key of the
`fit` call it answers: the estimator's parameters and the bytes of its X, y and sample
weights. Then scikit-learn's search runs exactly as it always does (cloning, fitting,
scoring, refitting, `cv_results_`); when it calls the estimator's `fit` with one of those
arguments, the estimator takes the trained state instead of training again. A fit no
population trained (solver='lbfgs', warm_start, data that is not a NumPy array, fit
parameters, splits or candidates drawn anew by an unseeded random state) runs one by one, as
in scikit-learn, with the same results.
"""

import copy
import hashlib
import threading
import warnings

import numpy as np
from sklearn import model_selection
from sklearn.base import clone, is_classifier
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
from sklearn.pipeline import Pipeline

from jaxbp.fit import DivergenceError
from jaxbp.population import fit_population, optimizer_kind


class _Trained:
    """A fit done in a population: the estimator's fitted state and the warnings its fit
    gave (or the error it raised), handed over when scikit-learn's search calls `fit`."""

    def __init__(self, state=None, caught=(), error=None):
        self.state, self.caught, self.error = state, list(caught), error

    def restore(self, est):
        if self.error is not None:
            raise self.error
        est.__dict__.update(copy.deepcopy(self.state))
        for w in self.caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return est


class _Pretrained:
    """The fits a search trained in populations, by the key of the `fit` call each answers;
    empty outside a search (and in other threads)."""

    def __init__(self):
        self._local = threading.local()

    def get(self, est, X, y, sample_weight):
        entries = getattr(self._local, "entries", None)
        return None if not entries else entries.get(key(est, X, y, sample_weight))

    def using(self, entries):
        self._local.entries = entries


PRETRAINED = _Pretrained()


def _digest(a):
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return a.shape, str(a.dtype), hashlib.sha1(a.tobytes()).hexdigest()


def _digests():
    """`_digest`, once per array object (kept alive meanwhile, so no id is reused): the
    candidates of a split share the array of its training rows, hashed once."""
    seen = {}

    def digest(a):
        if id(a) not in seen:
            seen[id(a)] = (a, _digest(a))
        return seen[id(a)][1]
    return digest


def key(est, X, y, sample_weight, digest=_digest):
    """What identifies a `fit` call: the estimator's class and parameters, and its data."""
    if not isinstance(X, np.ndarray):
        return None
    params = tuple(sorted((k, repr(v)) for k, v in est.get_params(deep=False).items()))
    return (type(est).__name__, params, digest(X), _digest(np.asarray(y)),
            _digest(sample_weight))


def _prepared_fits(estimator, X, y, candidates, splits):
    """[(key, final estimator, its `_Prepared`)] for each (candidate, split) a population can
    train: a jaxbp estimator (or a Pipeline ending in one), stochastic, not warm-started."""
    fits, transformed, digest = [], {}, _digests()
    for params in candidates:
        for split, (train, _) in enumerate(splits):
            est = clone(estimator).set_params(**params)
            final = est[-1] if isinstance(est, Pipeline) else est
            if not hasattr(final, "_prepare") or final.solver == "lbfgs" or final.warm_start \
                    or final.ensemble != 1:  # an ensemble is a population of its own
                continue
            X_train, y_train = X[train], y[train]
            if final is not est:  # the pipeline's preprocessing, fitted on this split: once
                # per split and setting of the steps (a step that draws at random without a
                # seed gives other data in scikit-learn's own fits: those fall back to one by one)
                steps = (split, repr(sorted(est[:-1].get_params(deep=True).items())))
                if steps not in transformed:
                    transformed[steps] = est[:-1].fit_transform(X_train, y_train)
                X_train = transformed[steps]
            fit_key = key(final, X_train, y_train, None, digest)
            if fit_key is None:
                continue
            try:
                fits.append((fit_key, final, *prepare(final, X_train, y_train, None)))
            except Exception:  # its own fit raises it again, as scikit-learn's search sees it
                continue
    return fits


def prepare(est, X, y, sample_weight):
    """(the estimator's `_Prepared` fit of X, y, the warnings preparing it gave), kept to be
    given again when the fit is handed over (`_Trained.restore`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = est._prepare(X, y, sample_weight, False, None)
    return prepared, caught


def _programs(fits):
    """The prepared fits grouped by what one population shares: the net, the epochs and the
    kind of optimizer (its values of beta_1, beta_2, epsilon, momentum may differ)."""
    groups = {}
    for fit in fits:
        prepared = fit[2]
        program = (prepared.net, prepared.kwargs["epochs"], optimizer_kind(prepared.kwargs["opt"]))
        groups.setdefault(program, []).append(fit)
    return groups


def _stacked_data(prepared):
    """(X, Y, rows): the fits' data stacked once per distinct (X, Y) pair, and each fit's
    rows of it: the candidates of one split share their rows (the population then reads
    one copy of them, which stays in cache, instead of a copy per candidate)."""
    at, blocks, rows, start, digest = {}, [], [], 0, _digests()
    for p in prepared:
        data = (digest(p.X), digest(p.Y))
        if data not in at:
            at[data] = start
            blocks.append(p)
            start += len(p.X)
        rows.append(np.arange(at[data], at[data] + len(p.X)))
    return (np.concatenate([p.X for p in blocks]), np.concatenate([p.Y for p in blocks]),
            rows)


def _lookahead(asked):
    """The fits' lookahead as one population's: 1 if any fit's hooks change its learning
    rate (a fit asking None), else the smallest asked."""
    return 1 if None in asked else min(asked)


def train(net, epochs, fits):
    """One population for the prepared fits [(key, estimator, `_Prepared`, warnings)] of one
    net and epoch count; returns each member's result finished by its estimator (a
    `_Trained`: the fitted state, or the error its own fit would have raised), in order."""
    X, Y, rows = _stacked_data([prepared for _, _, prepared, _ in fits])
    w = np.zeros((len(fits), len(X)))
    for i, (_, _, prepared, _) in enumerate(fits):
        given = prepared.kwargs["sample_weight"]
        w[i, rows[i]] = 1.0 if given is None else given
    kwargs = [prepared.kwargs for _, _, prepared, _ in fits]

    def each(name):
        return [kw[name] for kw in kwargs]

    res = fit_population(
        net, X, Y, keys=each("key"), opt=each("opt"),
        alpha=each("alpha"), dropout=each("dropout"), schedule=each("schedule"),
        batch_size=each("batch_size"), shuffle=each("shuffle"), callback=each("callback"),
        on_epoch_end=each("on_epoch_end"), epochs=epochs, sample_weight=w, progress=False,
        rows=rows, lookahead=_lookahead(each("lookahead")))
    trained = []
    for i, (_, final, prepared, caught) in enumerate(fits):
        try:
            result = res.member(i)
        except DivergenceError as e:
            trained.append(_Trained(error=final._diverged(e)))
            continue
        with warnings.catch_warnings(record=True) as more:
            warnings.simplefilter("always")
            final._finish(prepared, result, False)
        trained.append(_Trained(final.__dict__, caught + more))
    return trained


def _search(search, fit, X, y, params, candidates):
    """scikit-learn's `fit` of the search, after training what populations can train."""
    if params or y is None or not isinstance(X, np.ndarray):
        return fit(X, y, **params)
    y = np.asarray(y)
    cv = check_cv(search.cv, y, classifier=is_classifier(search.estimator))
    splits = list(cv.split(X, y))
    entries = {}
    for program, fits in _programs(_prepared_fits(search.estimator, X, y, candidates,
                                                  splits)).items():
        entries |= zip([fit[0] for fit in fits], train(*program[:2], fits), strict=True)
    n_jobs, search.n_jobs = search.n_jobs, None  # the trained fits are in this process
    PRETRAINED.using(entries)
    try:
        return fit(X, y, **params)
    finally:
        PRETRAINED.using(None)
        search.n_jobs = n_jobs


class GridSearchCV(model_selection.GridSearchCV):
    """scikit-learn's `GridSearchCV` (same parameters, attributes and results), with the fits
    of a jaxbp `MLPClassifier` or `MLPRegressor` (or a Pipeline ending in one) trained as
    populations: the candidates that share a network, optimizer and max_iter train together,
    every fold of each as one member (`jaxbp.fit_population`). n_jobs does not apply to the
    fits (they run as populations in this process)."""

    def fit(self, X, y=None, **params):
        return _search(self, super().fit, X, y, params, list(ParameterGrid(self.param_grid)))


class RandomizedSearchCV(model_selection.RandomizedSearchCV):
    """scikit-learn's `RandomizedSearchCV`, its fits trained as populations as in
    `GridSearchCV`. The candidates are drawn as scikit-learn draws them; with
    random_state=None they are drawn anew by scikit-learn's search, so its fits run one by
    one."""

    def fit(self, X, y=None, **params):
        candidates = list(ParameterSampler(self.param_distributions, self.n_iter,
                                           random_state=self.random_state))
        return _search(self, super().fit, X, y, params, candidates)
