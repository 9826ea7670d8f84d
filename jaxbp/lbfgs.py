"""L-BFGS on the full batch: scikit-learn's third solver, for small datasets.

The objective is `fit`'s, over all rows at once (n = Σ w, the rows' weight; m rows):

    J(θ)  = Σ_i w_i ℓ(a_i, y_i) / n + α/(2n) Σ_l ||W^l||²      (biases not penalised)
    ∇J(θ) = the hand-written backward's dW^l, db^l, plus (α/n) W^l

evaluated by one compiled program on the device (`_value_and_gradient`), on θ, the parameters
as one vector (W^1, b^1, W^2, b^2, ... each raveled row by row). SciPy's L-BFGS-B drives it as
scikit-learn's MLP does (`scipy.optimize.minimize(..., method="L-BFGS-B", jac=True)` with
maxiter = max_iter, maxfun = max_fun, gtol = tol): one round trip to the host per
evaluation, in float64 on the host whatever the network's dtype.
"""

import functools
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import backends, validate
from jaxbp.backprop import _backprop, _forward
from jaxbp.model import MLP, init


class LbfgsConvergenceWarning(UserWarning):
    """L-BFGS stopped at max_iter or max_fun (scikit-learn's estimators raise its
    ConvergenceWarning instead)."""


def _unravel(net, theta):
    """θ -> ((W^1, b^1), ..., (W^L, b^L)) with the shapes of `net`."""
    params, offset = [], 0
    for shapes in net.param_shapes():
        pair = []
        for shape in shapes:
            size = math.prod(shape)
            pair.append(theta[offset:offset + size].reshape(shape))
            offset += size
        params.append(tuple(pair))
    return tuple(params)


def _ravel(params):
    return jnp.concatenate([x.reshape(-1) for pair in params for x in pair])


@functools.partial(jax.jit, static_argnums=0)
def _value_and_gradient(net, theta, X, Y, w, alpha):
    """(J, ∇J as a vector) at θ for column-major X (n_0, m), Y (n_L, m), weights w (1, m)."""
    params = _unravel(net, theta)
    _, cache = _forward(net, params, X)
    J, grads, _ = _backprop(net, params, cache, Y, w)
    n = jnp.sum(w)
    J = J + 0.5 * alpha / n * sum(jnp.sum(W * W) for W, _ in params)
    grads = tuple((dW + (alpha / n) * W, db) for (dW, db), (W, _) in zip(grads, params,
                                                                           strict=True))
    return J, _ravel(grads)


def minimize(net, params, X, Y, w, alpha=0.0, *, max_iter=200, max_fun=15000, tol=1e-4,
             on_iteration=None):
    """Minimise J from `params` with SciPy's L-BFGS-B. X (n_0, m), Y (n_L, m) and w (1, m)
    are checked device arrays in the parameters' dtype. `on_iteration(J)` is called after
    each iteration. Returns (params, SciPy's OptimizeResult: nit, nfev, fun, status,
    message)."""
    import scipy.optimize

    dtype = validate.param_dtype(params)
    alpha = jnp.asarray(alpha, dtype)

    def fun(theta):
        J, g = _value_and_gradient(net, jnp.asarray(theta, dtype), X, Y, w, alpha)
        return float(J), np.asarray(g, np.float64)

    def callback(intermediate_result):  # SciPy passes the result so far by this name
        if on_iteration is not None:
            on_iteration(float(intermediate_result.fun))

    theta0 = np.asarray(_ravel(params), np.float64)
    res = scipy.optimize.minimize(fun, theta0, method="L-BFGS-B", jac=True, callback=callback,
                                  options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol})
    return _unravel(net, jnp.asarray(res.x, dtype)), res


def fit_lbfgs(net, X, y, *, max_iter=200, max_fun=15000, tol=1e-4, alpha=0.0, key=0,
              params=None, sample_weight=None, progress=None):
    """Train `net` on row-major data with L-BFGS on the full batch (scikit-learn's
    solver='lbfgs'; see this module's docstring for the objective).

    Arguments as `jaxbp.fit`'s where they share a name (X (m, n_0), y labels or targets, key
    for the initial weights when `params` is None, sample_weight, alpha as scikit-learn's),
    plus: max_iter (iterations), max_fun (evaluations of J and ∇J), tol (stop when every
    component of the projected gradient is at most tol: SciPy's gtol).

    Returns a `jaxbp.FitResult` whose history has "iteration" and "train_cost" (J, L2 term
    included, after each iteration) and whose epochs_run is the number of iterations; it
    warns with `LbfgsConvergenceWarning` when it stopped at max_iter or max_fun."""
    from jaxbp.fit import FitResult, _training_rows

    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a jaxbp.MLP, got {type(net).__name__}")
    backends.compilation_cache()
    max_iter = validate.positive_int("max_iter", max_iter)
    max_fun = validate.positive_int("max_fun", max_fun)
    for name, v in (("tol", tol), ("alpha", alpha)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{name}: expected a number >= 0, got {v!r}")
    key = validate.prng_key(key)
    X, Y, w = _training_rows(net, X, y, sample_weight)
    params = validate.params(net, init(net, jax.random.fold_in(key, 2**31 - 2))
                             if params is None else params)
    dtype = validate.param_dtype(params)
    Xc = validate.inputs(net, params, X.T)
    Yc = validate.targets(net, params, Y, m=X.shape[0])
    history = {"iteration": [], "train_cost": [], "seconds": []}
    with _progress(progress, max_iter) as record:
        params, res = minimize(net, params, Xc, Yc, jnp.asarray(w[None, :], dtype), alpha,
                               max_iter=max_iter, max_fun=max_fun, tol=tol,
                               on_iteration=lambda J: record(history, J))
    if res.status == 1:  # a limit reached (SciPy: "STOP: TOTAL NO. OF ITERATIONS ...")
        warnings.warn(convergence_message(res, max_iter), LbfgsConvergenceWarning, stacklevel=2)
    return FitResult(params, None, history, min(res.nit, max_iter), None, False, key)


def convergence_message(res, max_iter):
    """scikit-learn's words for an L-BFGS run that stopped at a limit."""
    return (f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}): "
            f"{res.message}. Increase the number of iterations (max_iter={max_iter}) or "
            f"max_fun, or scale the data (e.g. sklearn.preprocessing.StandardScaler).")


class _progress:
    """A context whose value records an iteration (and updates a tqdm bar when `progress`,
    by default when stderr is a terminal)."""

    def __init__(self, progress, total):
        import sys

        self.bar = None
        if sys.stderr.isatty() if progress is None else progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="lbfgs", unit="it", leave=True)
        self.t_last = time.perf_counter()

    def __enter__(self):
        return self.record

    def record(self, history, J):
        now = time.perf_counter()
        history["iteration"].append(len(history["iteration"]))
        history["train_cost"].append(J)
        history["seconds"].append(now - self.t_last)
        self.t_last = now
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(train_cost=f"{J:.4g}")

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
