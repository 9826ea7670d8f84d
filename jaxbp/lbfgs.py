"""L-BFGS on the full batch: scikit-learn's third solver, for small datasets.

The objective is `fit`'s, over all rows at once (n = Σ w, the rows' weight):

    J(θ)  = Σ_i w_i ℓ(a_i, y_i) / n + α/(2n) Σ_l ||W^l||²      (biases not penalised)
    ∇J(θ) = the hand-written backward's dW^l, db^l, plus (α/n) W^l

on θ, the parameters as one vector (W^1, b^1, W^2, b^2, ... each raveled row by row). The
method is scikit-learn's (SciPy's L-BFGS-B without bounds, as its MLP calls it): directions
from the last 10 pairs (s, y) by the two-loop recursion scaled by sᵀy / yᵀy, steps meeting the
strong Wolfe conditions (c1 = 1e-3, c2 = 0.9), the first step 1/||d||; it stops when every
|∂J/∂θ_i| <= tol (SciPy's gtol), when J falls by less than 2.2e-9 relatively (SciPy's ftol),
or at max_iter iterations or max_fun evaluations. All of it runs as one compiled
`lax.while_loop` on the device (`minimize`): no round trip to the host per evaluation, which
is what SciPy's driver costs (measured in the README: "scikit-learn estimators"). Its first
iterations equal SciPy's to rounding (the unit step is accepted); where a line search has to
interpolate, the two take other points of the same conditions.
"""

import functools
import math
import time
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import backends, validate
from jaxbp.backends import flat  # θ as one vector, in ravel_pytree's order (W^1, b^1, ...)
from jaxbp.backprop import objective
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



def _value_and_gradient_of(net, theta, X, Y, w, alpha):
    """(J, ∇J as a vector) at θ for column-major X (n_0, m), Y (n_L, m), weights w (1, m)."""
    J, grads, _ = objective(net, _unravel(net, theta), X, Y, w, alpha=alpha)
    return J, flat(grads)


_value_and_gradient = jax.jit(_value_and_gradient_of, static_argnums=0)


# --- L-BFGS with a strong-Wolfe line search, as one compiled program -------------------------
MEMORY = 10  # pairs (s, y) kept: SciPy's L-BFGS-B default (maxcor)
C1, C2 = 1e-3, 0.9  # sufficient decrease and curvature constants: L-BFGS-B's line search
FTOL = 2.220446049250313e-09  # SciPy's default ftol: stop when J falls by less, relatively
MAX_LINE_SEARCH = 20  # evaluations per line search (L-BFGS-B's limit)


class _Search(NamedTuple):
    """A strong-Wolfe line search in progress (Nocedal & Wright, Algorithms 3.5 and 3.6): the
    step a to evaluate next, the bracket's low end (lowest J that meets the decrease
    condition; a = 0 at first) and high end, as (a, J, J', ∇J), and how it stands."""

    a: jax.Array
    lo: tuple
    hi: tuple
    zooming: jax.Array
    done: jax.Array
    evals: jax.Array


def _two_loop(g, S, Y, rho, head, count):
    """−H g for the L-BFGS inverse-Hessian H of the kept pairs (newest at head − 1), scaled by
    sᵀy / yᵀy of the newest pair."""
    memory = S.shape[0]

    def newest_first(j, carry):
        q, alphas = carry
        i = (head - 1 - j) % memory
        a = jnp.where(j < count, rho[i] * (S[i] @ q), 0.0)
        return q - a * Y[i], alphas.at[i].set(a)

    q, alphas = jax.lax.fori_loop(0, memory, newest_first, (g, jnp.zeros_like(rho)))
    last = (head - 1) % memory
    gamma = jnp.where(count > 0, (S[last] @ Y[last]) / (Y[last] @ Y[last]), 1.0)

    def oldest_first(j, r):
        i = (head - count + j) % memory
        b = rho[i] * (Y[i] @ r)
        return r + jnp.where(j < count, alphas[i] - b, 0.0) * S[i]

    return -jax.lax.fori_loop(0, memory, oldest_first, gamma * q)


def _line_search(F, x, f0, g0, p, a0, max_evals):
    """A step along p meeting the strong Wolfe conditions; (a, J, ∇J, evaluations, found)."""
    d0 = g0 @ p
    zero = jnp.zeros((), f0.dtype)
    start = _Search(a0, (zero, f0, d0, g0), (zero, f0, d0, g0), jnp.bool_(False),
                    jnp.bool_(False), jnp.int32(0))

    def step(s):
        f, g = F(x + s.a * p)
        d = g @ p
        now = (s.a, f, d, g)
        too_high = (f > f0 + C1 * s.a * d0) | (f >= s.lo[1]) & (s.zooming | (s.evals > 0))
        flat = jnp.abs(d) <= -C2 * d0
        # bracketing: a too high -> zoom in [lo, a]; rising -> zoom in [a, lo]; else go on
        # zooming: a too high -> hi = a; else lo = a (and hi = old lo if the slope says so)
        rising = jnp.where(s.zooming, d * (s.hi[0] - s.lo[0]) >= 0, d >= 0)
        lo = _pick(too_high, s.lo, now)
        hi = _pick(too_high, now, _pick(rising, s.lo, s.hi))
        zooming = s.zooming | too_high | rising
        done = ~too_high & flat
        a_next = jnp.where(zooming, _cubic_step(lo, hi), 2.0 * s.a)
        return _Search(a_next, _pick(done, now, lo), hi, zooming, done, s.evals + 1)

    def cond(s):
        return ~s.done & (s.evals < max_evals)

    s = jax.lax.while_loop(cond, step, start)
    a, f, _, g = s.lo
    return a, f, g, s.evals, s.done | (a > 0)


def _pick(which, a, b):
    return jax.tree.map(lambda u, v: jnp.where(which, u, v), a, b)


def _cubic_step(lo, hi):
    """The minimiser of the cubic through (a, J, J') at both ends, kept 10% inside the
    bracket (its midpoint where the cubic has none)."""
    (a1, f1, d1, _), (a2, f2, d2, _) = lo, hi
    d_1 = d1 + d2 - 3 * (f1 - f2) / (a1 - a2)
    root = d_1 * d_1 - d1 * d2
    d_2 = jnp.sign(a2 - a1) * jnp.sqrt(jnp.maximum(root, 0.0))
    a = a2 - (a2 - a1) * (d2 + d_2 - d_1) / (d2 - d1 + 2 * d_2)
    low, high = jnp.minimum(a1, a2), jnp.maximum(a1, a2)
    margin = 0.1 * (high - low)
    ok = (root >= 0) & jnp.isfinite(a)
    return jnp.clip(jnp.where(ok, a, 0.5 * (a1 + a2)), low + margin, high - margin)


class _Run(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    S: jax.Array
    Y: jax.Array
    rho: jax.Array
    head: jax.Array
    count: jax.Array
    k: jax.Array
    nfev: jax.Array
    reason: jax.Array  # 0 running, else the key of REASONS
    costs: jax.Array  # J after each iteration


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _on_device(net, theta, X, Y, w, alpha, max_iter, max_fun, tol):
    """L-BFGS from θ, all on the device: (θ, J, iterations, evaluations, reason, J per
    iteration)."""
    F = functools.partial(_value_and_gradient_of, net, X=X, Y=Y, w=w, alpha=alpha)
    f, g = F(theta)
    n, dtype = theta.shape[0], theta.dtype
    run = _Run(theta, f, g, jnp.zeros((MEMORY, n), dtype), jnp.zeros((MEMORY, n), dtype),
               jnp.zeros(MEMORY, dtype), jnp.int32(0), jnp.int32(0), jnp.int32(0),
               jnp.int32(1), jnp.where(jnp.max(jnp.abs(g)) <= tol, 1, 0).astype(jnp.int32),
               jnp.zeros(max_iter, dtype))

    def iteration(r):
        p = _two_loop(r.g, r.S, r.Y, r.rho, r.head, r.count)
        a0 = jnp.where(r.k == 0, jnp.minimum(1.0, 1.0 / jnp.linalg.norm(p)), 1.0).astype(dtype)
        a, f, g, evals, found = _line_search(F, r.x, r.f, r.g, p, a0,
                                             jnp.minimum(MAX_LINE_SEARCH, max_fun - r.nfev))
        s, y = a * p, g - r.g
        sy = s @ y
        keep = found & (sy > jnp.finfo(dtype).eps * (y @ y))
        i = r.head % MEMORY
        S = jnp.where(keep, r.S.at[i].set(s), r.S)
        Yk = jnp.where(keep, r.Y.at[i].set(y), r.Y)
        rho = jnp.where(keep, r.rho.at[i].set(1.0 / sy), r.rho)
        k, nfev = r.k + found.astype(jnp.int32), r.nfev + evals
        x = jnp.where(found, r.x + s, r.x)
        reason = jnp.select(
            [~found & (nfev >= max_fun), ~found, jnp.max(jnp.abs(g)) <= tol,
             (r.f - f) <= FTOL * jnp.maximum(jnp.maximum(jnp.abs(r.f), jnp.abs(f)), 1.0),
             k >= max_iter, nfev >= max_fun], [4, 5, 1, 2, 3, 4], 0).astype(jnp.int32)
        kept = keep.astype(jnp.int32)
        return _Run(x, jnp.where(found, f, r.f), jnp.where(found, g, r.g), S, Yk, rho,
                    r.head + kept, jnp.minimum(r.count + kept, MEMORY), k, nfev, reason,
                    r.costs.at[r.k].set(jnp.where(found, f, r.f)))

    r = jax.lax.while_loop(lambda r: r.reason == 0, iteration, run)
    return r.x, r.f, r.k, r.nfev, r.reason, r.costs


# Why it stopped, and the status SciPy's L-BFGS-B gives for it (0 converged, 1 a limit, 2 an
# abnormal end of the line search), which scikit-learn's messages show.
REASONS = {1: ("converged: every |∂J/∂θ_i| <= tol", 0),
           2: ("converged: J fell by less than ftol", 0),
           3: ("stopped: max_iter iterations", 1), 4: ("stopped: max_fun evaluations", 1),
           5: ("stopped: the line search found no step that lowers J enough", 2)}


class Result(NamedTuple):
    """`minimize`'s account, named as SciPy's OptimizeResult: fun (the final J),
    nit, nfev, status (SciPy's: 0 converged, 1 max_iter or max_fun, 2 no step found),
    message (why, in words: `REASONS`), and costs (J after each iteration)."""

    fun: float
    nit: int
    nfev: int
    status: int
    message: str
    costs: np.ndarray


def minimize(net, params, X, Y, w, alpha=0.0, *, max_iter=200, max_fun=15000, tol=1e-4):
    """Minimise J from `params` (X (n_0, m), Y (n_L, m) and w (1, m): checked device arrays
    in the parameters' dtype). Every iteration (the two-loop recursion over the last `MEMORY`
    pairs, a strong-Wolfe line search) runs in one compiled `lax.while_loop` on the device,
    with no round trip to the host. Returns (params, Result)."""
    dtype = validate.param_dtype(params)
    x, f, k, nfev, status, costs = _on_device(net, flat(params), X, Y, w,
                                              jnp.asarray(alpha, dtype), int(max_iter),
                                              int(max_fun), jnp.asarray(tol, dtype))
    k, (message, status) = int(k), REASONS[int(status)]
    return _unravel(net, x), Result(float(f), k, int(nfev), status, message,
                                    np.asarray(costs)[:k])


def fit_lbfgs(net, X, y, *, max_iter=200, max_fun=15000, tol=1e-4, alpha=0.0, key=0,
              params=None, sample_weight=None):
    """Train `net` on row-major data with L-BFGS on the full batch (scikit-learn's
    solver='lbfgs'; see this module's docstring for the objective).

    Arguments as `jaxbp.fit`'s where they share a name (X (m, n_0), y labels or targets, key
    for the initial weights when `params` is None, sample_weight, alpha as scikit-learn's),
    plus: max_iter (iterations), max_fun (evaluations of J and ∇J), tol (stop when every
    component of the projected gradient is at most tol: SciPy's gtol).

    Returns a `jaxbp.FitResult` whose history has "iteration" and "train_cost" (J, L2 term
    included, after each iteration; the starting J if it stopped before the first) and
    "seconds" (the run's time spread evenly: it runs as one program), and whose epochs_run is
    the number of iterations. Warns with `LbfgsConvergenceWarning` (scikit-learn's estimators:
    its ConvergenceWarning) unless it converged: stopped at max_iter or max_fun, or by a line
    search that found no lower J."""
    from jaxbp.fit import FitResult, _training_rows

    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a jaxbp.MLP, got {type(net).__name__}")
    backends.compilation_cache()
    max_iter = validate.positive_int("max_iter", max_iter)
    max_fun = validate.positive_int("max_fun", max_fun)
    validate.non_negative("tol", tol)
    validate.non_negative("alpha", alpha)
    key = validate.prng_key(key)
    X, Y, w = _training_rows(net, X, y, sample_weight)
    params = validate.params(net, init(net, jax.random.fold_in(key, 2**31 - 2))
                             if params is None else params)
    dtype = validate.param_dtype(params)
    Xc = validate.inputs(net, params, X.T)
    Yc = validate.targets(net, params, Y, m=X.shape[0])
    t0 = time.perf_counter()
    params, res = minimize(net, params, Xc, Yc, jnp.asarray(w[None, :], dtype), alpha,
                           max_iter=max_iter, max_fun=max_fun, tol=tol)
    costs = res.costs.tolist() if res.nit else [res.fun]
    history = {"iteration": list(range(len(costs))), "train_cost": costs,
               "seconds": [(time.perf_counter() - t0) / len(costs)] * len(costs)}
    if res.status != 0:
        warnings.warn(convergence_message(res, max_iter), LbfgsConvergenceWarning, stacklevel=2)
    return FitResult(params, None, history, res.nit, None, False, key)


def convergence_message(res, max_iter):
    """scikit-learn's words for an L-BFGS run that stopped before converging."""
    return (f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}): "
            f"{res.message}. Increase the number of iterations (max_iter={max_iter}) or "
            f"max_fun, or scale the data (e.g. sklearn.preprocessing.StandardScaler).")
