"""scikit-learn estimators on jaxbp's `fit`: `MLPClassifier` and `MLPRegressor`.

They take scikit-learn's parameter names, meanings and defaults wherever the meaning is the
same (`hidden_layer_sizes=(100,)`, relu, Adam 1e-3, `alpha=1e-4`, batches of min(200, n),
`max_iter=200`, `tol=1e-4`, `n_iter_no_change=10`, ...), stop as scikit-learn does, and pass
its estimator checks. Training is jaxbp's: each epoch one compiled `lax.scan` of the
hand-written backward pass. The differences:

- `warm_start=True` and `partial_fit` keep the optimizer's state (Adam's moments and step
  count, SGD's velocity, the 'adaptive' learning rate) and continue the epoch count, so that
  k calls of `partial_fit` train exactly as one fit of k epochs (scikit-learn#6091).
- `validation_loss_curve_`: with `early_stopping`, the validation loss of every epoch next to
  `validation_scores_` (scikit-learn#18507); the same loss as `loss_curve_`, without the L2
  term.
- `dropout` (inverted dropout on the hidden layers) and, for the classifier, `class_weight`
  (None, "balanced" or {class: weight}; scikit-learn#9113), applied as sample weights.
- Extra activations: "leaky_relu", "gelu", "softplus". The regressor has no `loss` parameter
  (squared error only).
- solver='lbfgs' is `jaxbp.lbfgs` (SciPy's L-BFGS-B as scikit-learn drives it, J and ∇J from
  the hand-written backward, compiled); its `loss_curve_` holds J after each iteration.
- Initialisation is jaxbp's (He for the relu family, else Glorot; zero biases) and the Adam
  and SGD arithmetic is torch's (`jaxbp.optim`).
- `to_sklearn()` returns the fitted model as scikit-learn's own MLP, `to_onnx(path)` as an
  ONNX graph (README, "Serving without JAX").
- The early-stopping split is stratified for every single-label classifier (scikit-learn
  stratifies binary problems only), and repeats on warm starts (it is drawn from the seed).

Computation is in float32, or float64 when `jax_enable_x64` is on; the fitted parameters are
NumPy arrays (`coefs_[l]` of shape (n_l, n_{l+1}) as scikit-learn's, i.e. W^{l+1}ᵀ), so the
estimators pickle like any other and predictions need no device state.
"""

import copy
import dataclasses
import functools
import inspect
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, check_random_state
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from jaxbp import backends, optim
from jaxbp import search as _search
from jaxbp.backprop import backward, forward
from jaxbp.fit import DivergenceError, Schedule
from jaxbp.fit import fit as _fit
from jaxbp.model import MLP, default_dtype
from jaxbp.search import PRETRAINED as _PRETRAINED
from jaxbp.search import GridSearchCV, RandomizedSearchCV

__all__ = ["GridSearchCV", "MLPClassifier", "MLPRegressor", "RandomizedSearchCV"]

# scikit-learn's activation names (and our extras) -> jaxbp's
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
               "leaky_relu": "leaky_relu", "gelu": "gelu", "softplus": "softplus"}
_OUT_NAMES = {"sigmoid": "logistic", "softmax": "softmax", "identity": "identity"}
_OUT_JAXBP = {v: k for k, v in _OUT_NAMES.items()}
_SEED_HIGH = 2**31 - 1
_SKLEARN_HIDDEN = ("identity", "logistic", "tanh", "relu")  # scikit-learn's MLP activations
# What to_sklearn() copies: scikit-learn's fitted attributes (and its label binarizer).
_FITTED = ("coefs_", "intercepts_", "n_features_in_", "feature_names_in_", "n_layers_",
           "n_outputs_", "out_activation_", "n_iter_", "t_", "loss_", "loss_curve_",
           "best_loss_", "validation_scores_", "best_validation_score_", "classes_",
           "_label_binarizer")


def _bucket(m):
    """A row count rounded up to one of a few sizes, so that new data sizes seldom compile
    again: 64, 128, 256, then eight steps per doubling (at most 12.5% padding)."""
    if m <= 256:
        return max(64, 1 << (m - 1).bit_length())
    step = 1 << (m.bit_length() - 4)
    return -(-m // step) * step


@functools.partial(jax.jit, static_argnums=0)
def _output_logits(net, params, X):
    """Row-major X (m, n_0) -> Z^L row-major (m, n_L): the output layer before g."""
    _, cache = forward(net, params, X.T)
    return cache.Z[net.L].T


@functools.partial(jax.jit, static_argnums=0)
def _outputs_and_cost(net, params, X, Y, w):
    """A^L row-major (m, n_L) and the weighted mean cost Σ w ℓ / Σ w (no L2 term) for
    row-major X (m, n_0), column-major targets Y (n_L, m) and weights w (1, m)."""
    A_L, cache = forward(net, params, X.T)
    J, _, _ = backward(net, params, cache, Y, w)  # XLA drops the unused gradients
    return A_L.T, J


@dataclasses.dataclass(frozen=True)
class _EpochLR(Schedule):
    """The learning rate of each epoch, asked from the training run (for 'invscaling' and
    'adaptive', which depend on what happened so far)."""

    run: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __call__(self, lr, epoch, epochs, examples_seen):
        return self.run.lr()


def _check_sample_weight(sample_weight, m):
    """None, or float64 weights of shape (m,), finite and >= 0."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        w = np.full(m, float(sample_weight))
    else:
        w = check_array(sample_weight, ensure_2d=False, dtype=np.float64,
                        input_name="sample_weight", ensure_min_samples=0)
    if w.ndim != 1 or w.shape[0] != m:
        raise ValueError(f"sample_weight: expected shape ({m},), one weight per sample, got "
                         f"shape {w.shape}")
    if np.any(w < 0):
        raise ValueError(f"sample_weight: expected weights >= 0, got a negative weight "
                         f"({w.min():g})")
    return w


def _params_to_device(coefs, intercepts, dtype):
    """scikit-learn's layout (coefs_[l] = W^{l+1}ᵀ, intercepts_[l] 1-D) -> jaxbp's params."""
    return tuple((jnp.asarray(np.asarray(c, dtype).T), jnp.asarray(np.asarray(b, dtype)[:, None]))
                 for c, b in zip(coefs, intercepts, strict=True))


def _stochastic(est):
    """partial_fit's availability, as scikit-learn's: only with a stochastic solver."""
    if est.solver not in ("sgd", "adam"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                             f"{est.solver} is not stochastic.")
    return True


def _host(tree):
    """A NumPy copy of a pytree of (device) arrays."""
    return jax.tree.map(np.array, tree)


class _Run:
    """One call of fit/partial_fit: scikit-learn's end-of-epoch bookkeeping, run by jaxbp's
    `fit` through its `checkpoint` hook (which sees the parameters) and `callback` (stop)."""

    def __init__(self, est, net, m_train, validation):
        self.est, self.net, self.m_train, self.validation = est, net, m_train, validation
        self.stopped = False

    def lr(self):
        est = self.est
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            return est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est.solver == "sgd" and est.learning_rate == "adaptive":
            return est._lr
        return est.learning_rate_init

    def lr_changes(self):
        """Whether end_epoch changes the next epoch's learning rate: then fit must show it
        each epoch before dispatching the next; otherwise it may run ahead."""
        return self.est.solver == "sgd" and self.est.learning_rate in ("invscaling", "adaptive")

    def end_epoch(self, result, epoch):
        est = self.est
        loss = float(result.history["train_cost"][-1])
        est.n_iter_ += 1
        est._epoch += 1
        est.t_ += self.m_train
        est.loss_ = loss
        est.loss_curve_.append(loss)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.validation is not None:
            X_val, Y_val, w_val, Y_val_rows, w_val_rows = self.validation
            A, J = _outputs_and_cost(self.net, result.params, X_val, Y_val, w_val)
            score = est._score_outputs(np.asarray(A), Y_val_rows, w_val_rows, self.net.output)
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(float(J))
            if est.verbose:
                print(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_params = _host(result.params)
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.validation is not None else "Training loss"
            msg = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
            if est.solver == "sgd" and est.learning_rate == "adaptive" and est._lr > 1e-6:
                est._lr /= 5.0
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"{msg} Setting learning rate to {est._lr:f}")
            else:
                self.stopped = True
                if est.verbose:
                    small = (" Learning rate too small." if est.solver == "sgd" and
                             est.learning_rate == "adaptive" else "")
                    print(f"{msg}{small} Stopping.")

    def should_stop(self, record):
        return self.stopped


class _Prepared(NamedTuple):
    """A fit made ready (`_BaseMLP._prepare`): `fit(net, X, Y, **kwargs)` trains it."""

    net: Any
    X: Any
    Y: Any
    kwargs: dict
    run: Any
    output: str
    labels: Any


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, checks, the training call."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, ensemble=1):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.ensemble = ensemble

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified: the network multiplies dense matrices
        return tags

    # --- hyperparameters ---------------------------------------------------------------------
    def _check_params(self):
        """Check the hyperparameters (at fit time, as scikit-learn does); return the hidden
        layer sizes as a tuple."""
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = (hidden,)
        hidden = None if isinstance(hidden, (str, bytes)) or not hasattr(
            hidden, "__iter__") else tuple(hidden)
        if hidden is None or any(isinstance(h, bool) or not isinstance(h, numbers.Integral)
                                 or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes: expected a positive int or a sequence of "
                             f"positive ints, got {self.hidden_layer_sizes!r}")
        _choice("solver", self.solver, ("lbfgs", "sgd", "adam"))
        _integer("max_fun", self.max_fun, "an int >= 1")
        if self.solver == "lbfgs" and self.dropout:
            raise ValueError(f"dropout: expected 0.0 with solver='lbfgs' (its line search needs "
                             f"one objective, not a new dropout mask each evaluation), got "
                             f"{self.dropout!r}")
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {list(ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        _choice("learning_rate", self.learning_rate, ("constant", "invscaling", "adaptive"))
        _real("alpha", self.alpha, low=0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _integer("batch_size", self.batch_size, '"auto" or an int >= 1')
        _real("learning_rate_init", self.learning_rate_init, low=0.0, low_open=True)
        _real("power_t", self.power_t, low=0.0)
        _integer("max_iter", self.max_iter, "an int >= 1")
        _real("tol", self.tol, low=0.0)
        _real("momentum", self.momentum, low=0.0, high=1.0)
        _real("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
              low_open=bool(self.early_stopping), high_open=True)
        _real("beta_1", self.beta_1, low=0.0, high=1.0, high_open=True)
        _real("beta_2", self.beta_2, low=0.0, high=1.0, high_open=True)
        _real("epsilon", self.epsilon, low=0.0, low_open=True)
        if not (isinstance(self.n_iter_no_change, float) and self.n_iter_no_change == math.inf):
            _integer("n_iter_no_change", self.n_iter_no_change, "an int >= 1 or np.inf")
        _real("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        return tuple(int(h) for h in hidden)

    def _optimizer(self):
        # Every epoch's learning rate comes from the schedule (`_EpochLR`), so the optimizer's
        # own lr is a placeholder: estimators that differ only in learning_rate_init (a grid
        # search) share one compiled epoch.
        if self.solver == "sgd":
            return optim.sgd(1.0, momentum=float(self.momentum),
                             nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        return optim.adam(1.0, b1=float(self.beta_1), b2=float(self.beta_2),
                          eps=float(self.epsilon))

    # --- the fitted network --------------------------------------------------------------------
    def _net(self):
        sizes = (self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_))
        return MLP(sizes, hidden=self._hidden_activation,
                   output=_OUT_JAXBP[self.out_activation_])

    def _logits(self, X):
        """Validated X -> Z^L (m, n_L), the output layer before its activation, as a NumPy
        array in X's dtype. The network runs compiled; the rows are padded to a few sizes so
        that new sizes seldom compile."""
        check_is_fitted(self, "coefs_")
        backends.compilation_cache()  # as fit does: a process that only predicts loads too
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                          dtype=(np.float64, np.float32))
        if sparse.issparse(X):
            X = X.toarray()
        dtype = default_dtype()
        m = X.shape[0]
        X_pad = np.zeros((_bucket(m), X.shape[1]), dtype)
        X_pad[:m] = X
        params = _params_to_device(self.coefs_, self.intercepts_, dtype)
        Z = _output_logits(self._net(), params, jnp.asarray(X_pad))
        return np.asarray(Z)[:m].astype(X.dtype)

    # --- export ---------------------------------------------------------------------------------
    def to_sklearn(self):
        """This fitted model as a fitted `sklearn.neural_network.MLPClassifier` (or
        `MLPRegressor`): the same weights in scikit-learn's layout, the same classes, output
        activation and training record (n_iter_, t_, loss_, loss_curve_, ...), so its
        `predict` and `predict_proba` equal this model's up to float rounding, it pickles, and
        scikit-learn's own `partial_fit` can continue from it (with a fresh optimizer state:
        scikit-learn's solvers are its own). Parameters that scikit-learn lacks (dropout,
        class_weight) are dropped: they only change training. A hidden activation that
        scikit-learn's MLP lacks is refused."""
        self._single("to_sklearn()")
        check_is_fitted(self, "coefs_")
        if self.activation not in _SKLEARN_HIDDEN:
            raise ValueError(f"activation: scikit-learn's MLP has {list(_SKLEARN_HIDDEN)}, not "
                             f"{self.activation!r}, so to_sklearn() cannot represent this "
                             f"model; train it with one of those to export it")
        from sklearn import neural_network

        cls = getattr(neural_network, type(self).__name__)
        known = cls().get_params()
        est = cls(**{k: v for k, v in self.get_params().items() if k in known})
        for name in _FITTED:
            if hasattr(self, name):
                setattr(est, name, copy.deepcopy(getattr(self, name)))
        est._no_improvement_count = 0  # what scikit-learn's partial_fit reads on its next call
        return est

    def to_onnx(self, path=None):
        """This fitted model as an ONNX model (`onnx.ModelProto`, opset 17, float32 input "X"
        (N, n_features)), written to `path` if given: outputs "label" and "probabilities"
        for the classifier, "variable" (N, n_outputs) for the regressor, as skl2onnx names
        them (`jaxbp.export`). Needs `pip install "jaxbp[export]"`."""
        self._single("to_onnx()")
        check_is_fitted(self, "coefs_")
        from jaxbp import export

        params = [(np.asarray(c).T, b) for c, b in zip(self.coefs_, self.intercepts_,
                                                          strict=True)]
        labels = getattr(self, "_label_binarizer", None)
        model = export.onnx_model(
            self._net(), params, classes=None if labels is None else self.classes_,
            multilabel=labels is not None and labels.y_type_.startswith("multilabel"),
            feature_names=getattr(self, "feature_names_in_", None),
            doc=f"jaxbp.sklearn.{type(self).__name__}")
        if path is not None:
            export.save(model, path)
        return model

    # --- training ------------------------------------------------------------------------------
    def _batch_size(self, m):
        if isinstance(self.batch_size, str):
            return min(200, m)
        if self.batch_size > m:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=5)
        return min(int(self.batch_size), m)

    def _reset(self):
        """The state of a first fit (scikit-learn's `_initialize`)."""
        self._seed = int(check_random_state(self.random_state).randint(_SEED_HIGH))
        self._epoch = 0  # epochs trained over all calls: epoch e shuffles with fold_in(key, e)
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._opt = self._opt_state = self._best_params = None
        self._lr = float(self.learning_rate_init)
        if self.early_stopping:
            self.validation_scores_, self.validation_loss_curve_ = [], []
            self.best_validation_score_, self.best_loss_ = -np.inf, None
        else:
            self.validation_scores_ = self.validation_loss_curve_ = None
            self.best_validation_score_, self.best_loss_ = None, np.inf

    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None):
        _integer("ensemble", self.ensemble, "an int >= 1")
        if self.ensemble > 1:
            return self._fit_ensemble(X, y, sample_weight, incremental)
        self.__dict__.pop("estimators_", None)  # a fit of one network replaces an ensemble
        cached = _PRETRAINED.get(self, X, y, sample_weight) if not incremental else None
        if cached is not None:  # trained in a population by jaxbp.sklearn's searches
            return cached.restore(self)
        prepared = self._prepare(X, y, sample_weight, incremental, classes)
        if not isinstance(prepared, _Prepared):  # lbfgs: trained already
            return prepared
        try:
            result = _fit(prepared.net, prepared.X, prepared.Y, **prepared.kwargs)
        except DivergenceError as e:
            raise self._diverged(e) from e
        return self._finish(prepared, result, incremental)

    def _fit_ensemble(self, X, y, sample_weight, incremental):
        """ensemble=k: k members that differ only in their seed (drawn from random_state),
        each the fit `ensemble=1` would make with that seed, trained as one population
        (`jaxbp.sklearn`'s searches' `train`; lbfgs members one by one); kept in
        `estimators_`, their predictions averaged."""
        if incremental or self.warm_start:
            raise ValueError(f"ensemble: partial_fit and warm_start continue one network; "
                             f"expected ensemble=1 with them, got {self.ensemble!r}")
        seeds = check_random_state(self.random_state).randint(_SEED_HIGH, size=self.ensemble)
        members = [clone(self).set_params(ensemble=1, random_state=int(s)) for s in seeds]
        if self.solver == "lbfgs":
            for member in members:
                member.fit(X, y, sample_weight=sample_weight)
        else:
            fits = [(None, member, *_search.prepare(member, X, y, sample_weight))
                    for member in members]
            prepared = fits[0][2]
            trained_fits = _search.train(prepared.net, prepared.kwargs["epochs"], fits)
            for member, trained in zip(members, trained_fits, strict=True):
                trained.restore(member)
        for name in (*_FITTED, "validation_loss_curve_", "_opt", "_opt_state"):
            self.__dict__.pop(name, None)  # an ensemble's networks are its members'
        for name in ("n_features_in_", "feature_names_in_", "classes_", "_label_binarizer",
                     "n_outputs_", "n_layers_", "out_activation_"):
            if hasattr(members[0], name):
                setattr(self, name, getattr(members[0], name))
        self.estimators_ = members
        self.n_iter_ = max(member.n_iter_ for member in members)
        return self

    def _single(self, what):
        """Refuse `what` for an ensemble: it holds several networks."""
        if "estimators_" in self.__dict__:
            raise ValueError(f"{what}: this model is an ensemble of {len(self.estimators_)} "
                             f"networks (ensemble={self.ensemble}), and {what} takes one; "
                             f"use a member, estimators_[i].{what}")

    def _prepare(self, X, y, sample_weight, incremental, classes):
        """Everything up to the call of `fit`: the checked data, the network, the optimizer,
        the hold-out and the hooks (`_Prepared`); with solver='lbfgs', the fitted self."""
        hidden = self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, Y, strata, class_w, output, labels = self._validate_input(X, y, incremental,
                                                                     first_pass, classes)
        m, n_features = X.shape
        w = _check_sample_weight(sample_weight, m)
        if class_w is not None:
            w = class_w if w is None else w * class_w
        if w is not None and not np.any(w > 0):
            raise ValueError("sample_weight: all weights are zero (class_weight included); at "
                             "least one must be non-zero")
        net = MLP((n_features, *hidden, Y.shape[1]), hidden=ACTIVATIONS[self.activation],
                  output=output)
        opt = self._optimizer()
        if first_pass:
            self._reset()
            params = state = None
        else:
            params, state = self._continued(net, opt, default_dtype())
        self.n_iter_ = 0
        self._hidden_activation = net.hidden
        if self.solver == "lbfgs":
            return self._fit_lbfgs(net, X, Y, w, params, output, labels)
        X, Y, w, validation = self._hold_out(X, Y, w, strata, default_dtype())
        X_fit, Y_fit, w_fit, batch_size = self._padded(X, Y, w)
        run = _Run(self, net, X.shape[0], validation)
        kwargs = dict(opt=opt, epochs=1 if incremental else self.max_iter, batch_size=batch_size,
                      key=self._seed, params=params, opt_state=state, sample_weight=w_fit,
                      alpha=float(self.alpha), schedule=_EpochLR(run=run),
                      dropout=float(self.dropout), shuffle=bool(self.shuffle),
                      callback=run.should_stop, on_epoch_end=run.end_epoch, progress=False,
                      start_epoch=self._epoch, lookahead=None if run.lr_changes() else 8)
        return _Prepared(net, X_fit, Y_fit, kwargs, run, output, labels)

    def _diverged(self, e):
        return ValueError(f"{type(self).__name__}: training diverged ({e}). The input data may "
                          f"contain large values and need to be preprocessed (e.g. "
                          f"StandardScaler), or learning_rate_init is too large.")

    def _finish(self, prepared, result, incremental):
        """The fitted attributes from `fit`'s result, and scikit-learn's warning when it ran
        to max_iter without converging."""
        self._set_fitted(prepared.net, prepared.kwargs["opt"], result, prepared.output,
                         prepared.labels)
        if not incremental and not prepared.run.stopped and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          f"and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)
        return self

    def _fit_lbfgs(self, net, X, Y, w, params, output, labels):
        """solver='lbfgs': L-BFGS on all the rows (`jaxbp.lbfgs`), as scikit-learn's MLP:
        early_stopping and batch_size do not apply; n_iter_ and loss_ are L-BFGS's iterations
        and final J (L2 included), loss_curve_ its J after each iteration; a
        ConvergenceWarning when it stops at max_iter or max_fun."""
        from jaxbp import lbfgs

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", lbfgs.LbfgsConvergenceWarning)
            result = lbfgs.fit_lbfgs(net, X, Y, max_iter=int(self.max_iter),
                                     max_fun=int(self.max_fun), tol=float(self.tol),
                                     alpha=float(self.alpha), key=self._seed, params=params,
                                     sample_weight=w)
        self._set_fitted(net, None, result, output, labels)
        self.n_iter_ = result.epochs_run
        self.loss_ = float(result.history["train_cost"][-1])
        self.loss_curve_ = [*self.loss_curve_, *map(float, result.history["train_cost"])]
        for warning in caught:
            if issubclass(warning.category, lbfgs.LbfgsConvergenceWarning):
                warnings.warn(str(warning.message), ConvergenceWarning, stacklevel=4)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)
        return self

    def _continued(self, net, opt, dtype):
        """(params, opt_state) for a warm start or partial_fit: the fitted parameters, and the
        optimizer state unless it no longer fits `opt` (then None: a fresh start). Restarts
        the learning rate, and the early-stopping bookkeeping, where the settings changed."""
        if net.sizes != self._net().sizes:
            raise ValueError(f"warm_start/partial_fit: the fitted network has layer sizes "
                             f"{self._net().sizes}, but hidden_layer_sizes and these data "
                             f"ask for {net.sizes}")
        params = _params_to_device(self.coefs_, self.intercepts_, dtype)
        state = None
        if self._opt_state is not None and type(self._opt) is type(opt):
            state = jax.tree.map(
                lambda a: jnp.asarray(a, dtype if np.issubdtype(a.dtype, np.floating)
                                      else a.dtype), self._opt_state)
            try:
                optim.check(opt, state, params)
            except ValueError:  # e.g. momentum switched on: start the optimizer afresh
                state = None
        if state is None or self._lr_init != self.learning_rate_init:
            self._lr = float(self.learning_rate_init)  # the 'adaptive' rate starts again
        if self.early_stopping and self.validation_scores_ is None:
            self.validation_scores_, self.validation_loss_curve_ = [], []
            self.best_validation_score_ = -np.inf
        if not self.early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf
        return params, state

    def _hold_out(self, X, Y, w, strata, dtype):
        """(X, Y, w) of the training rows and, with early stopping, the validation rows as
        `_Run` wants them (on the device, and as rows for the score), else None."""
        validation = None
        if self.early_stopping:
            train, val = self._split(X.shape[0], strata)
            w_val = np.ones(len(val)) if w is None else w[val]
            if not np.any(w_val > 0):
                raise ValueError("early_stopping: the validation rows' weights are all zero; "
                                 "change random_state or validation_fraction")
            validation = (jnp.asarray(X[val], dtype), jnp.asarray(Y[val].T, dtype),
                          jnp.asarray(w_val[None, :], dtype), Y[val], w_val)
            X, Y, w = X[train], Y[train], None if w is None else w[train]
        if w is not None and not np.any(w > 0):
            raise ValueError("sample_weight: the training rows' weights are all zero; at least "
                             "one must be non-zero")
        return X, Y, w, validation

    def _set_fitted(self, net, opt, result, output, labels):
        """The fitted attributes from `fit`'s result (the best epoch's weights with early
        stopping), the optimizer state kept for warm starts."""
        params = result.params
        if self.early_stopping and self._best_params is not None:
            params = self._best_params  # restore the best epoch's weights
        params = _host(params)
        self.coefs_ = [np.ascontiguousarray(W.T) for W, _ in params]
        self.intercepts_ = [b[:, 0] for _, b in params]
        self._opt, self._opt_state = opt, _host(result.opt_state)
        self._lr_init = self.learning_rate_init
        self.n_outputs_ = net.sizes[-1]
        self.n_layers_ = len(net.sizes)
        self.out_activation_ = _OUT_NAMES[output]
        if labels is not None:  # set with the weights they belong to, after training
            self._label_binarizer, self.classes_ = labels, labels.classes_

    def _split(self, m, strata):
        """Indices (train, validation) for early stopping, drawn from the seed; stratified
        when the targets are single-label classes with at least two rows each."""
        idx = np.arange(m)
        kw = dict(test_size=self.validation_fraction)
        try:
            train, val = train_test_split(idx, stratify=strata,
                                          random_state=np.random.RandomState(self._seed), **kw)
        except ValueError:
            if strata is None:
                raise
            train, val = train_test_split(idx, random_state=np.random.RandomState(self._seed),
                                          **kw)
        if len(val) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return train, val

    def _padded(self, X, Y, w):
        """The rows, weights and batch size for jaxbp's `fit`.

        When all rows fit in one batch, rows of weight 0 pad it to one of a few sizes: the
        gradient and cost are unchanged (`fit` divides by the batch's weight, the L2 term
        too), and new data sizes seldom compile a new epoch.
        """
        m = X.shape[0]
        batch_size = self._batch_size(m)
        if batch_size < m or _bucket(m) == m:
            return X, Y, w, batch_size
        pad = _bucket(m) - m
        X = np.concatenate([X, np.zeros((pad, X.shape[1]), X.dtype)])
        Y = np.concatenate([Y, np.repeat(Y[:1], pad, axis=0)])  # valid targets, weight 0
        w = np.concatenate([np.ones(m) if w is None else w, np.zeros(pad)])
        return X, Y, w, m + pad


def _choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def _real(name, value, low=None, high=None, low_open=False, high_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name}: expected a number {' and '.join(filter(None, (lo, hi)))}, "
                         f"got {value!r}")


def _integer(name, value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected {what}, got {value!r}")


def _signature_with(init, **extra):
    """`init`'s signature with keyword-only parameters `extra` (name=default) added."""
    signature = inspect.signature(init)
    added = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
             for k, v in extra.items()]
    return signature.replace(parameters=[*signature.parameters.values(), *added])


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained by jaxbp's hand-written backprop.

    Targets as scikit-learn's MLPClassifier: labels of any type (kept in `classes_`); two
    classes train one sigmoid output (binary cross-entropy), more a softmax (cross-entropy),
    and a multilabel indicator matrix one sigmoid per label.

    Parameters are scikit-learn's (see `sklearn.neural_network.MLPClassifier`), plus:
        dropout: inverted-dropout probability on the hidden layers during training.
        ensemble: k >= 2 trains k networks that differ only in their seed (drawn from
            random_state) as one population and averages their probabilities; the members
            are in `estimators_`, each the model ensemble=1 would fit with its seed.
        class_weight: None, "balanced" or {class: weight}; multiplies the sample weights
            (for multilabel targets, as `sklearn.utils.class_weight.compute_sample_weight`).

    Attributes: classes_, coefs_, intercepts_, loss_, loss_curve_, best_loss_,
    validation_scores_, validation_loss_curve_, best_validation_score_, n_iter_ (epochs of
    the last call), t_ (training samples seen), n_features_in_, n_layers_, n_outputs_,
    out_activation_.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, class_weight=None,
                 **params):
        super().__init__(hidden_layer_sizes, activation, **params)
        self.class_weight = class_weight

    # scikit-learn reads an estimator's parameters from its __init__'s signature: the shared
    # ones (_BaseMLP's, each named) and class_weight, written once here instead of repeated.
    __init__.__signature__ = _signature_with(_BaseMLP.__init__, class_weight=None)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and labels y (n_samples,) or a multilabel
        indicator matrix (n_samples, n_labels); returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.
        `classes` (all the labels to expect) is required on the first call."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True, classes=classes)

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=first_pass)
        X, y = _dense_rows(X, y)
        check_classification_targets(y)
        multilabel = type_of_target(y).startswith("multilabel")
        if first_pass:
            lb = LabelBinarizer()
            if incremental and not multilabel:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to "
                                     "partial_fit.")
                lb.fit(classes)
            else:
                lb.fit(y)
            if len(lb.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes "
                                 f"in the data, but the data contains only one class: "
                                 f"{lb.classes_.tolist()[0]!r}")
        else:
            lb = self._label_binarizer
        if not first_pass and incremental and classes is not None and not np.array_equal(
                unique_labels(classes), lb.classes_):
            raise ValueError(f"classes: expected the classes of the first call to "
                             f"partial_fit, {lb.classes_.tolist()}, got "
                             f"{unique_labels(classes).tolist()}")
        if not first_pass and self.warm_start and not incremental and not multilabel and (
                set(unique_labels(y)) != set(lb.classes_)):
            raise ValueError(f"warm_start can only be used where `y` has the same classes as "
                             f"in the previous call to fit. Previously got {lb.classes_}, "
                             f"`y` has {unique_labels(y)}")
        if not multilabel:
            unknown = np.setdiff1d(unique_labels(y), lb.classes_)
            if len(unknown):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {lb.classes_}. 'y' has {unique_labels(y)}.")
        Y = _encoded(lb, y)
        output = "softmax" if lb.y_type_ == "multiclass" else "sigmoid"
        ids = None if multilabel else (np.argmax(Y, axis=1) if Y.shape[1] > 1 else
                                       Y[:, 0].astype(int))
        return X, Y, ids, self._class_weights(y, Y, ids, lb.classes_, incremental), output, lb

    def _class_weights(self, y, Y, ids, classes, incremental):
        cw = self.class_weight
        if cw is None:
            return None
        if not (isinstance(cw, Mapping) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight: expected None, 'balanced' or a dict "
                             f"{{class: weight}}, got {cw!r}")
        if ids is None:  # multilabel: one weight per (label, value), multiplied over labels
            return compute_sample_weight(cw, Y.astype(int))
        if isinstance(cw, str):
            if incremental:
                raise ValueError(
                    "class_weight='balanced' is not supported for partial_fit: one call's "
                    "class frequencies are not the data's. Compute the weights once with "
                    "sklearn.utils.class_weight.compute_class_weight('balanced', "
                    "classes=classes, y=y_all) and pass them as class_weight={class: weight}.")
            weights = compute_class_weight("balanced", classes=classes, y=y)
        else:
            unknown = [c for c in cw if c not in set(classes.tolist())]
            if unknown:
                raise ValueError(f"class_weight: classes {unknown} are not in "
                                 f"classes_ {classes.tolist()}")
            weights = np.array([float(cw.get(c, 1.0)) for c in classes.tolist()])
            if not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError(f"class_weight: expected finite weights >= 0, got {cw!r}")
        return weights[ids]

    def _score_outputs(self, A, Y, w, output):
        """Accuracy of outputs A against encoded targets Y (both (m, n_L)), weighted by w;
        subset accuracy for multilabel targets, as `accuracy_score`."""
        if output == "softmax":
            correct = np.argmax(A, axis=1) == np.argmax(Y, axis=1)
        else:
            correct = np.all((A > 0.5) == (Y > 0.5), axis=1)
        return float(np.average(correct, weights=w))

    def predict(self, X):
        """Class labels (n_samples,), or an indicator matrix for multilabel targets (an
        ensemble: of the members' mean probabilities)."""
        if "estimators_" in self.__dict__:
            P = self.predict_proba(X)
            if self._label_binarizer.y_type_.startswith("multilabel"):
                return self._label_binarizer.inverse_transform(P)
            return self.classes_[np.argmax(P, axis=1)]
        Z = self._logits(X)
        P = scipy.special.softmax(Z, axis=1) if self.out_activation_ == "softmax" else (
            scipy.special.expit(Z))
        return self._label_binarizer.inverse_transform(P)

    def predict_proba(self, X):
        """Probabilities (n_samples, n_classes), columns in the order of `classes_` (for
        multilabel targets, each label's probability); an ensemble's: its members' mean."""
        if "estimators_" in self.__dict__:
            return np.mean([m.predict_proba(X) for m in self.estimators_], axis=0)
        Z = self._logits(X)
        if self.out_activation_ == "softmax":
            return scipy.special.softmax(Z, axis=1)
        if self.n_outputs_ == 1:  # σ(−z) rather than 1 − σ(z): no cancellation to 0
            return np.hstack([scipy.special.expit(-Z), scipy.special.expit(Z)])
        return scipy.special.expit(Z)

    def predict_log_proba(self, X):
        """log(predict_proba(X)): -inf where a probability underflows to 0."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor (identity output, squared error ½‖a − y‖²) trained by
    jaxbp's hand-written backprop. y of shape (n_samples,) gives 1-D predictions, y of shape
    (n_samples, k) k outputs.

    Parameters are scikit-learn's (see `sklearn.neural_network.MLPRegressor`), without
    `loss`, plus `dropout` and `ensemble` (k networks from k seeds, predictions averaged;
    as `MLPClassifier`'s). Attributes as `MLPClassifier`'s, without
    classes_. For k > 1 outputs the loss sums the k squared errors (scikit-learn averages
    them), so loss_curve_ is k times scikit-learn's; validation_scores_ are R² averaged over
    the outputs, as `r2_score`.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and targets y (n_samples,) or (n_samples, k);
        returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, first_pass, classes):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=first_pass)
        X, y = _dense_rows(X, y)
        Y = np.asarray(y, np.float64).reshape(len(y), -1)
        return X, Y, None, None, "identity", None

    def _score_outputs(self, A, Y, w, output):
        return float(r2_score(Y, A, sample_weight=w))

    def predict(self, X):
        """Predictions (n_samples,) for 1-D training targets, else (n_samples, k); an
        ensemble's: its members' mean."""
        if "estimators_" in self.__dict__:
            return np.mean([m.predict(X) for m in self.estimators_], axis=0)
        Z = self._logits(X)  # identity output: A^L = Z^L
        return Z[:, 0] if self.n_outputs_ == 1 else Z


def _encoded(lb, y):
    """`lb.transform(y)` as float64 (n_samples, n_L): class labels compared with the classes
    directly (one column for two classes: the second's), as LabelBinarizer encodes them
    without its checks of y, made by `_validate_input` already (they take ~4 ms a call, a
    search prepares dozens of fits); multilabel targets by LabelBinarizer."""
    if y.ndim == 1 and lb.y_type_ in ("binary", "multiclass"):
        Y = y[:, None] == lb.classes_[None, :]
        return np.asarray(Y[:, 1:] if len(lb.classes_) == 2 else Y, np.float64)
    Y = lb.transform(y)
    return np.asarray(Y.toarray() if sparse.issparse(Y) else Y, np.float64)


def _dense_rows(X, y):
    """X and y as dense arrays (scikit-learn's sparse input densified), a one-column y as 1-D
    (with scikit-learn's DataConversionWarning)."""
    if sparse.issparse(X):
        X = X.toarray()
    if sparse.issparse(y):
        y = y.toarray()
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return X, y
