"""`train_step`: forward, hand-written backward and an optimizer update in one jitted call."""

import functools

import jax

from jaxbp import optim, validate
from jaxbp.backprop import _backprop, _forward, in_place


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def train_step_jit(net, opt, params, state, X, Y, weights=None):
    """The unchecked jitted step behind `train_step`, for callers that validated their data.
    `weights`, if given, has shape (1, m)."""
    _, cache = _forward(net, params, X)  # Z^l, A^l for l = 1..L
    J, grads, deltas = _backprop(net, params, cache, Y, weights)  # J, (dW^l, db^l), Δ^l
    grads = in_place(grads, J, deltas)  # in a scan: W^l overwritten, not copied, each step
    params, state = opt.update(grads, state, params)
    return params, state, J


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

    Arguments are checked here, outside `jit` (shapes every call, values once per JAX array);
    the work itself is `train_step_jit`, compiled once per (net, opt, shapes, dtypes).
    """
    params = validate.params(net, params)
    optim.check(opt, state, params)
    X = validate.inputs(net, params, X)
    Y = validate.targets(net, params, Y, m=X.shape[1])
    weights = validate.sample_weight(params, sample_weight, m=X.shape[1])
    return train_step_jit(net, opt, params, state, X, Y, weights)
