"""The training step: the objective's gradient, then the optimizer's update, as one function.

    J, ∇J = objective(θ)        forward (with dropout masks), hand-written backward, L2
    θ, s  = opt.update(∇J, s, θ)

`step` is pure; `train_step_jit` compiles it (net and opt static, params and state donated).
The checked `train_step` is in api.py. `fit`'s epoch runs the same three lines on the
parameters laid out as one vector (`backends.flat`).
"""

import jax

from jaxbp.backends import in_place
from jaxbp.backprop import objective


def step(net, opt, params, state, X, Y, weights=None, masks=(), alpha=None, lr=None):
    """(params, state, J): one update on the batch X (n_0, m), Y (n_L, m); weights (1, m),
    dropout masks and L2's alpha as for `objective`; lr overrides the optimizer's."""
    J, grads, deltas = objective(net, params, X, Y, weights, masks, alpha)
    grads = in_place(grads, J, deltas)  # in a scan: W^l overwritten, not copied, each step
    params, state = opt.update(grads, state, params, lr=lr)
    return params, state, J


train_step_jit = jax.jit(step, static_argnums=(0, 1), donate_argnums=(2, 3))
train_step_jit.__doc__ = """The step without `train_step`'s checks, for callers that validated
their data (and for the body of a `lax.scan`): (params, state, J). `weights`, if given, has
shape (1, m). Same arguments as `train_step` otherwise; params and state are donated."""
