"""`train_step`: forward, hand-written backward and an optimizer update in one jitted call."""

import itertools

import jax
import jax.numpy as jnp

from jaxbp import optim, validate
from jaxbp.backprop import _backprop, _forward, in_place


def _step(net, opt, params, state, X, Y, weights=None):
    _, cache = _forward(net, params, X)  # Z^l, A^l for l = 1..L
    J, grads, deltas = _backprop(net, params, cache, Y, weights)  # J, (dW^l, db^l), Δ^l
    grads = in_place(grads, J, deltas)  # in a scan: W^l overwritten, not copied, each step
    params, state = opt.update(grads, state, params)
    return params, state, J


train_step_jit = jax.jit(_step, static_argnums=(0, 1), donate_argnums=(2, 3))
train_step_jit.__doc__ = """The step without `train_step`'s checks, for callers that validated
their data (and for the body of a `lax.scan`): (params, state, J). `weights`, if given, has
shape (1, m). Same arguments as `train_step` otherwise; params and state are donated."""


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
    params, state, J = _step(net, opt, params, state, X, Y, weights)
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
