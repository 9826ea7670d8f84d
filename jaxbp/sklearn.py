"""scikit-learn estimators: `MLPClassifier` and `MLPRegressor` on jaxbp's `fit`.

Parameter names, meanings and defaults follow scikit-learn's `neural_network` estimators
where they mean the same (hidden_layer_sizes=(100,), relu, adam 1e-3, alpha 1e-4, batch
min(200, n), max_iter 200, tol 1e-4, n_iter_no_change 10, validation_fraction 0.1). Beyond
them: `validation_loss_curve_` beside `validation_scores_`, `class_weight`, `dropout`, and
`warm_start`/`partial_fit` that keep the optimizer state (Adam's moments and step count).
Fitted parameters are stored as NumPy arrays, so the estimators pickle like any other.
"""

import warnings

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from jaxbp import optim
from jaxbp.fit import Schedule, fit, predict
from jaxbp.model import MLP, default_dtype

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "leaky_relu": "leaky_relu", "gelu": "gelu", "softplus": "softplus"}


class _BaseMLP(BaseEstimator):
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dropout=0.0):
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
        self.dropout = dropout

    # --- checks and building blocks -----------------------------------------------------------
    def _check_params(self):
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {list(_ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.solver not in ("sgd", "adam"):
            raise ValueError(f"solver: expected 'sgd' or 'adam' (jaxbp has no 'lbfgs'), got "
                             f"{self.solver!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"learning_rate: expected 'constant', 'invscaling' or "
                             f"'adaptive', got {self.learning_rate!r}")
        if not (isinstance(self.learning_rate_init, (int, float)) and
                self.learning_rate_init > 0):
            raise ValueError(f"learning_rate_init: expected a number > 0, got "
                             f"{self.learning_rate_init!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter: expected an int >= 1, got {self.max_iter!r}")
        hidden = self.hidden_layer_sizes
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        if any(not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes: expected positive ints, got "
                             f"{self.hidden_layer_sizes!r}")
        return hidden

    def _optimizer(self):
        if self.solver == "sgd":
            return optim.sgd(self.learning_rate_init, momentum=self.momentum,
                             nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return optim.adam(self.learning_rate_init, b1=self.beta_1, b2=self.beta_2,
                          eps=self.epsilon)

    def _key(self):
        rs = self.random_state
        if rs is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        elif isinstance(rs, (int, np.integer)):
            seed = int(rs)
        else:
            seed = int(rs.randint(2**31 - 1))
        return seed

    def _params_np(self, params):
        return tuple((np.asarray(W), np.asarray(b)) for W, b in params)

    def _train(self, X, Y, epochs, sample_weight, incremental):
        # Like scikit-learn's MLP, the estimators compute in float64 (jaxbp.fit and the CLI
        # default to float32 for speed).
        with jax.enable_x64(True):
            return self._train64(X, Y, epochs, sample_weight, incremental)

    def _train64(self, X, Y, epochs, sample_weight, incremental):
        hidden = self._check_params()
        n_outputs = self._n_outputs(Y)
        dtype = default_dtype()
        X = np.asarray(X, dtype)
        net = MLP((X.shape[1], *hidden, n_outputs), hidden=_ACTIVATIONS[self.activation],
                  output=self._output, loss=None)
        opt = self._optimizer()
        resume = (self.warm_start or incremental) and getattr(self, "net_", None) == net \
            and getattr(self, "_opt", None) == opt
        if not resume:
            self.loss_curve_, self.validation_scores_, self.validation_loss_curve_ = [], [], []
            self.n_iter_, self.t_, self.best_loss_ = 0, 0, np.inf
            self._params = self._state = None
            self._seed = self._key()
        self.net_, self._opt = net, opt
        early = self.early_stopping and not incremental
        to_jax = lambda t: None if t is None else jax.tree.map(jax.numpy.asarray, t)  # noqa: E731
        schedule = Schedule("invscaling", power_t=self.power_t) if (
            self.solver == "sgd" and self.learning_rate == "invscaling") else "constant"
        stop = _Stopper(self, early)
        result = fit(net, X, Y, opt=opt, epochs=epochs,
                     batch_size=None if self.batch_size == "auto" else int(self.batch_size),
                     key=self._seed, params=to_jax(self._params), opt_state=to_jax(self._state),
                     sample_weight=sample_weight,
                     validation_fraction=self.validation_fraction if early else 0.0,
                     early_stopping=False, alpha=float(self.alpha), schedule=schedule,
                     dropout=self.dropout, shuffle=self.shuffle, callback=stop,
                     progress=bool(self.verbose), start_epoch=self.n_iter_)
        params = result.params
        if early and stop.best_params is not None:
            params = stop.best_params
        self._params = self._params_np(params)
        self._state = jax.tree.map(np.asarray, result.opt_state)
        self.n_iter_ += result.epochs_run
        self.t_ += result.epochs_run * X.shape[0]
        self.coefs_ = [W.T for W, _ in self._params]
        self.intercepts_ = [b[:, 0] for _, b in self._params]
        self.n_layers_ = len(hidden) + 2
        self.n_outputs_ = n_outputs
        self.out_activation_ = {"sigmoid": "logistic", "softmax": "softmax",
                                "identity": "identity"}[self._output]
        if not stop.converged and not incremental and result.epochs_run == epochs:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          f"reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=3)
        return self

    def _forward(self, X):
        check_is_fitted(self, "_params")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with jax.enable_x64(True):
            params = jax.tree.map(jax.numpy.asarray, self._params)
            return np.asarray(predict(self.net_, params, X), np.float64)


class _Stopper:
    """scikit-learn's stopping rule as a `fit` callback: the training loss (or, with early
    stopping, the validation score) must improve by tol within n_iter_no_change epochs."""

    def __init__(self, est, early):
        self.est, self.early, self.waited = est, early, 0
        self.best_score, self.best_params, self.converged = -np.inf, None, False

    def __call__(self, record):
        est = self.est
        est.loss_curve_.append(record["train_cost"])
        if self.early:
            est.validation_scores_.append(record["val_score"])
            est.validation_loss_curve_.append(record["val_cost"])
            improved = record["val_score"] > self.best_score + est.tol
            if record["val_score"] > self.best_score:
                self.best_score = record["val_score"]
                est.best_validation_score_ = self.best_score
        else:
            improved = record["train_cost"] < est.best_loss_ - est.tol
        est.best_loss_ = min(est.best_loss_, record["train_cost"])
        self.waited = 0 if improved else self.waited + 1
        if self.waited > est.n_iter_no_change:
            self.converged = True
            return True
        return None


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier trained by jaxbp's hand-written backprop.

    Binary targets use one sigmoid output (bce), more classes a softmax (cross-entropy);
    labels may be any values (strings included), kept in `classes_`.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dropout=0.0,
                 class_weight=None):
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, n_iter_no_change=n_iter_no_change, dropout=dropout)
        self.class_weight = class_weight

    def _n_outputs(self, Y):
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _prepare(self, X, y, sample_weight, classes=None, reset=True):
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float64)
        check_classification_targets(y)
        if classes is not None or not hasattr(self, "classes_") or reset:
            self.classes_ = np.unique(y if classes is None else classes)
        if len(self.classes_) < 2:
            raise ValueError(f"y: expected at least 2 classes, got 1 class "
                             f"({self.classes_[0]!r})")
        self._output = "sigmoid" if len(self.classes_) == 2 else "softmax"
        ids = np.searchsorted(self.classes_, y)
        if np.any(ids >= len(self.classes_)) or np.any(self.classes_[np.minimum(
                ids, len(self.classes_) - 1)] != y):
            raise ValueError(f"y: labels outside classes {self.classes_.tolist()}")
        w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        if self.class_weight is not None:
            cw = compute_sample_weight(self.class_weight, y)
            w = cw if w is None else w * cw
        return X, ids, w

    def fit(self, X, y, sample_weight=None):
        X, ids, w = self._prepare(X, y, sample_weight)
        return self._train(X, ids, self.max_iter, w, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch on (X, y), continuing from the current weights and optimizer state."""
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes: expected the list of all classes on the first "
                             "call to partial_fit")
        X, ids, w = self._prepare(X, y, sample_weight, classes=classes if first else None,
                                  reset=first)
        return self._train(X, ids, 1, w, incremental=True)

    def predict_proba(self, X):
        A = self._forward(X)  # (m, n_L)
        return np.hstack([1 - A, A]) if A.shape[1] == 1 else A

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor (identity output, squared error) trained by jaxbp."""

    _output = "identity"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (m, k): k identity outputs
        return tags

    def _n_outputs(self, Y):
        return 1 if Y.ndim == 1 else Y.shape[1]

    def _prepare(self, X, y, reset=True):
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float64, multi_output=True,
                             y_numeric=True)
        return X, np.asarray(y, np.float64)

    def fit(self, X, y, sample_weight=None):
        X, y = self._prepare(X, y)
        return self._train(X, y, self.max_iter, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on (X, y), continuing from the current weights and optimizer state."""
        X, y = self._prepare(X, y, reset=not hasattr(self, "_params"))
        return self._train(X, y, 1, sample_weight, incremental=True)

    def predict(self, X):
        A = self._forward(X)
        return A[:, 0] if self.n_outputs_ == 1 else A
