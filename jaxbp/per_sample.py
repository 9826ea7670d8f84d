"""Per-sample (stochastic, one example at a time) forms of backprop, for the benchmarks.

Seed 000 works with one example as a column vector x of shape (n_0, 1); that is the batch code
with m = 1. Three ways to run it:
    (a) `sgd_epoch_loop`: a Python loop over a jitted single-example step (one dispatch each),
    (b) `sgd_epoch_scan`: the same epoch as one `lax.scan` over the examples, compiled once,
    (c) `per_example_grads`: `vmap` of the single-example backward; its mean over the m
        examples equals the batch gradient of `backward`.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxbp import optim, validate
from jaxbp.backprop import objective


def _example_grads(net, params, x, y):
    J, grads, _ = objective(net, params, x, y)  # x (n_0, 1): one example, m = 1
    return J, grads  # that one example's loss and its gradients


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def _example_step(net, opt, params, state, X, Y, i):
    x = lax.dynamic_slice_in_dim(X, i, 1, axis=1)  # column i of X                   (n_0, 1)
    y = lax.dynamic_slice_in_dim(Y, i, 1, axis=1)  # column i of Y                   (n_L, 1)
    J, grads = _example_grads(net, params, x, y)
    params, state = opt.update(grads, state, params)
    return params, state, J


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def _epoch_scan(net, opt, params, state, X, Y):
    def one_example(carry, xy):
        params, state = carry
        x, y = xy  # (n_0,), (n_L,)
        J, grads = _example_grads(net, params, x[:, None], y[:, None])
        params, state = opt.update(grads, state, params)
        return (params, state), J

    (params, state), costs = lax.scan(one_example, (params, state), (X.T, Y.T))
    return params, state, costs


@functools.partial(jax.jit, static_argnums=0)
def _per_example_grads(net, params, X, Y):
    def one(x, y):  # x (n_0,), y (n_L,)
        return _example_grads(net, params, x[:, None], y[:, None])

    return jax.vmap(one, in_axes=1)(X, Y)


def _checked(net, opt, params, state, X, Y):
    params = validate.params(net, params)
    if opt is not None:
        optim.check(opt, state, params)
    X = validate.inputs(net, params, X)
    Y = validate.targets(net, params, Y, m=X.shape[1])
    return params, X, Y


def sgd_epoch_loop(net, opt, params, state, X, Y):
    """One epoch of per-example updates, examples in column order, as a Python loop of jitted
    single-example steps. Returns (params, state, costs) with costs[i] the loss of example i
    before its update, shape (m,)."""
    params, X, Y = _checked(net, opt, params, state, X, Y)
    costs = []
    for i in range(X.shape[1]):
        params, state, J = _example_step(net, opt, params, state, X, Y, i)
        costs.append(J)
    return params, state, jnp.stack(costs)


def sgd_epoch_scan(net, opt, params, state, X, Y):
    """The same epoch as `sgd_epoch_loop`, compiled as one `lax.scan` over the columns of X."""
    params, X, Y = _checked(net, opt, params, state, X, Y)
    return _epoch_scan(net, opt, params, state, X, Y)


def per_example_grads(net, params, X, Y):
    """Each example's own loss and gradients, by `vmap` of the single-example backward.

    Returns (losses, grads): losses of shape (m,), and grads shaped like params with a leading
    axis of m (dW^l: (m, n_l, n_{l-1}), db^l: (m, n_l, 1)). Their mean over axis 0 is the batch
    gradient that `backward` returns.
    """
    params, X, Y = _checked(net, None, params, None, X, Y)
    return _per_example_grads(net, params, X, Y)
