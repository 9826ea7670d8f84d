"""The engine's public boundary: check the arguments, then call the compiled, pure code.

Each function here checks its arguments with `validate` (the argument named in every error:
structure, shapes and dtypes, and values where they are on the host) and calls a program
compiled from the pure passes (backprop.py), the step (step.py) or `fit`'s evaluation. They
compute nothing themselves. `fit` (fit.py) is the other entry point; `jaxbp.parallel` and
`jaxbp.per_sample` check their own extra arguments (a mesh) the same way, through `validate`.

    forward(net, params, X)               -> (A^L, cache)
    backward(net, params, cache, Y, w)    -> (J, grads)
    train_step(net, opt, params, state, X, Y, w) -> (params, state, J), never waiting
    evaluate(net, params, X, y), predict(net, params, X)   on row-major data
"""

import itertools

import jax
import jax.numpy as jnp

from jaxbp import backprop, optim, validate
from jaxbp.fit import _evaluate
from jaxbp.step import step

# jax.jit(function), not a decoration: mutation testing cannot mutate decorated functions.
_forward = jax.jit(backprop.forward, static_argnums=0)


def _cost_and_gradients(net, params, cache, Y, weights=None):
    J, grads, _ = backprop.backward(net, params, cache, Y, weights)  # the Δ^l: not returned
    return J, grads


_backward = jax.jit(_cost_and_gradients, static_argnums=0)


def forward(net, params, X):
    """The forward pass for a batch.

    Arguments:
        net: an `MLP` with sizes (n_0, ..., n_L).
        params: a tuple of (W^l, b^l) pairs, W^l (n_l, n_{l-1}), b^l (n_l, 1), as from `init`.
        X: inputs, shape (n_0, m): one example per column. Cast to the parameters' dtype.

    Returns:
        (A^L, cache): the outputs, shape (n_L, m), and a `Cache` of every Z^l and A^l.
    """
    params = validate.params(net, params)
    X = validate.inputs(net, params, X)
    return _forward(net, params, X)


def backward(net, params, cache, Y, sample_weight=None):
    """The backward pass: the cost and its gradient with respect to every parameter.

    Arguments:
        net, params: as for `forward`.
        cache: the `Cache` that `forward(net, params, X)` returned.
        Y: targets, shape (n_L, m): {0, 1} for bce, one-hot columns for cross_entropy.
        sample_weight: optional weights w ≥ 0 of shape (m,): J = Σ_i w_i ℓ_i / Σ_i w_i.

    Returns:
        (J, grads): the scalar cost and a pytree with the structure, shapes and dtypes of
        `params`, holding (dW^l, db^l) for l = 1..L. (`jaxbp.backprop.backward`, unchecked,
        also returns the Δ^l.)
    """
    params = validate.params(net, params)
    cache = validate.cache(net, cache)
    Y = validate.targets(net, params, Y, m=cache.A[0].shape[1])
    weights = validate.sample_weight(params, sample_weight, m=Y.shape[1])
    return _backward(net, params, cache, Y, weights)


def _checked_program(net, opt, params, state, X, Y, sample_weight):
    """`train_step`'s program: (params, state, J, flags). The argument checks run while it
    is traced, once per signature (structure, shapes, dtypes): a call whose signature was
    traced before passed them. The value checks run inside it, on every call: flags holds
    them, and J is NaN if one failed."""
    validate.params(net, params)
    optim.check(opt, state, params)
    X = validate.inputs(net, params, X)
    Y = validate.targets(net, params, Y, m=X.shape[1])
    weights = validate.sample_weight(params, sample_weight, m=X.shape[1])
    flags = validate.value_flags(net, X, Y, weights)
    params, state, J = step(net, opt, params, state, X, Y, weights)
    return params, state, jnp.where(jnp.all(flags), J, jnp.nan), flags


# jax.jit(function), not a decoration: mutation testing cannot mutate decorated functions.
_checked_step = jax.jit(_checked_program, static_argnums=(0, 1), donate_argnums=(2, 3))


_CALLS = itertools.count(1)


class _Call(int):
    """The number of a train_step call, as error messages name it (formatted only then)."""

    def __str__(self):
        return f"train_step call {int(self)}"


def train_step(net, opt, params, state, X, Y, sample_weight=None):
    """One step of training on the batch X: returns (params, state, J).

    Arguments:
        net: an `MLP` (static: each distinct net compiles once).
        opt: an optimizer from `jaxbp.optim` (static).
        params: (W^l, b^l) pairs as from `init`; donated, so the arrays passed in are consumed.
        state: `opt.init(params)` or the state a previous step returned; donated.
        X: inputs (n_0, m), one example per column; Y: targets (n_L, m).
        sample_weight: optional weights (m,) ≥ 0; the cost becomes Σ w_i ℓ_i / Σ w_i.

    Returns:
        The updated params and state, and the cost J of the batch before the update.

    Checks that never wait for the device: the structure, shapes and dtypes of every
    argument when the step is compiled for them (a call shaped like an earlier one passed
    them), before anything runs. Values (finite X, Y valid for the loss, weights ≥ 0): NumPy
    data on the host, at once; JAX arrays inside the compiled step. If one of those fails,
    that call's J is NaN and a later call raises the ValueError naming the argument and the
    call, as soon as the check's result is on the host; `jaxbp.check_pending()` waits for it.
    Compiled once per (net, opt, shapes, dtypes); `train_step_jit` is the step without checks.
    """
    validate.raise_failed()
    validate.mlp(net)
    optim.check_is_optimizer(opt)  # before jit hashes opt as a static argument
    if not all(isinstance(a, jax.Array) for a in (X, Y, sample_weight) if a is not None):
        params = validate.params(net, params)  # host data: checked here, values included
        X = validate.inputs(net, params, X)
        Y = validate.targets(net, params, Y, m=X.shape[1])
        sample_weight = validate.sample_weight(params, sample_weight, m=X.shape[1])
    params, state, J, flags = _checked_step(net, opt, params, state, X, Y, sample_weight)
    validate.defer(flags, net, sample_weight is not None, _Call(next(_CALLS)))
    return params, state, J


def check_pending():
    """Wait for the value checks that `train_step` ran inside its compiled calls and raise
    ValueError, naming the argument and the call, if one failed."""
    validate.raise_failed(wait=True)


def evaluate(net, params, X, y):
    """Mean cost and score (accuracy, or R² for an identity output) on row-major data."""
    params = validate.params(net, params)
    X = validate.inputs(net, params, validate.rows("X", X, net.sizes[0]).T)
    Y = validate.targets(net, params, validate.targets_from_labels(net, y), m=X.shape[1])
    J, score = _evaluate(net, params, X, Y)
    return {"cost": float(J), "score": float(score)}


def predict(net, params, X):
    """A^L for row-major X, returned row-major: shape (m, n_L)."""
    params = validate.params(net, params)
    X = validate.inputs(net, params, validate.rows("X", X, net.sizes[0]).T)
    return _forward_rows(net, params, X)


def _outputs_as_rows(net, params, X):
    return backprop.forward(net, params, X)[0].T


_forward_rows = jax.jit(_outputs_as_rows, static_argnums=0)
