"""Central differences in float64: a check of the gradients that uses no autodiff at all."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from oracle import oracle_cost

import jaxbp

H = 1e-6  # step: truncation error ~H²·|J'''| ≈ 1e-12, rounding ~eps·|J|/H ≈ 2e-10
# so a difference quotient is good to ~1e-9 absolute; 1e-7 (+ rtol 1e-6) leaves a margin.
ATOL, RTOL = 1e-7, 1e-6


def central_differences(net, params, X, Y):
    """(J(θ + h e_i) − J(θ − h e_i)) / 2h for every parameter i, evaluated in one vmap."""
    theta, unravel = ravel_pytree(params)
    J = jax.jit(lambda t: oracle_cost(net, unravel(t), X, Y))
    steps = H * jnp.eye(theta.size, dtype=theta.dtype)
    plus = jax.vmap(J)(theta[None, :] + steps)
    minus = jax.vmap(J)(theta[None, :] - steps)
    return unravel((plus - minus) / (2 * H))


@pytest.mark.parametrize(
    ("hidden", "output", "loss"),
    [
        ("tanh", "sigmoid", None),
        ("gelu", "softmax", None),
        ("softplus", "identity", None),
        ("sigmoid", "sigmoid", "mse"),
        ("relu", "softmax", None),
        ("leaky_relu", "sigmoid", None),
    ],
)
def test_backward_matches_central_differences(hidden, output, loss):
    net = jaxbp.MLP((4, 6, 5, 3), hidden=hidden, output=output, loss=loss)
    params = jaxbp.init(net, jax.random.key(1), scheme="torch", dtype="float64")
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.normal(size=(4, 9)))
    if net.loss == "cross_entropy":
        Y = jnp.asarray(np.eye(3)[:, rng.integers(0, 3, 9)])
    elif net.loss == "bce":
        Y = jnp.asarray(rng.integers(0, 2, (3, 9)).astype(float))
    else:
        Y = jnp.asarray(rng.normal(size=(3, 9)))
    _, cache = jaxbp.forward(net, params, X)
    if hidden in ("relu", "leaky_relu"):  # differences across a kink would mean nothing
        assert min(float(jnp.min(jnp.abs(Z))) for Z in cache.Z[1:]) > 10 * H
    _, grads = jaxbp.backward(net, params, cache, Y)
    want = central_differences(net, params, X, Y)
    for i, (g, w) in enumerate(zip(jax.tree.leaves(grads), jax.tree.leaves(want), strict=True)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=RTOL, atol=ATOL,
                                   err_msg=f"leaf {i}")
