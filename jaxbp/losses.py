"""Costs J(A^L, Y) over a batch of m columns, their gradients ∂J/∂A^L, and the natural pairs.

All costs are means over the m examples (columns) and sums over the n_L outputs (rows):
    bce:           J = -(1/m) Σ_i Σ_k [y log a + (1 − y) log(1 − a)]
    cross_entropy: J = -(1/m) Σ_i Σ_k y log a
    mse:           J = (1/(2m)) Σ_i ||a_i − y_i||²
"""

import jax.numpy as jnp

from jaxbp.activations import log_softmax, softplus


def xlogy(Y, A):
    """y log a, taken as 0 where y = 0 (so a one-hot zero never meets log 0)."""
    return jnp.where(Y == 0, 0.0, Y * jnp.log(jnp.where(Y == 0, 1.0, A)))

# The output activation whose loss makes Δ^L = A^L − Y (the seeds' shortcut, valid only for
# these pairs: the Jacobian of g cancels the 1/(a(1−a)) or 1/a of ∂J/∂A).
NATURAL_LOSS = {"sigmoid": "bce", "softmax": "cross_entropy", "identity": "mse"}

# Losses that take logarithms of A^L need A^L inside (0, 1): these outputs guarantee it.
PROBABILITY_OUTPUTS = frozenset({"sigmoid", "softmax"})


def _bce(A, Y, m):
    return -jnp.sum(xlogy(Y, A) + xlogy(1.0 - Y, 1.0 - A)) / m


def _cross_entropy(A, Y, m):
    return -jnp.sum(xlogy(Y, A)) / m


def _mse(A, Y, m):
    return 0.5 * jnp.sum((A - Y) ** 2) / m


# name -> J(A, Y, m), a scalar
LOSSES = {"bce": _bce, "cross_entropy": _cross_entropy, "mse": _mse}

# name -> ∂J/∂A (A, Y, m), shape (n_L, m); the 1/m of the mean is already in it.
LOSS_GRADIENTS = {
    "bce": lambda A, Y, m: (A - Y) / (A * (1.0 - A)) / m,
    "cross_entropy": lambda A, Y, m: -Y / A / m,
    "mse": lambda A, Y, m: (A - Y) / m,
}


def _bce_from_logits(Z, Y, m):
    # -[y log σ(z) + (1−y) log(1−σ(z))] = softplus(z) − y z, which never takes log(0)
    return jnp.sum(softplus(Z) - Y * Z) / m


def _cross_entropy_from_logits(Z, Y, m):
    return -jnp.sum(Y * log_softmax(Z)) / m


# (output, loss) -> J(Z^L, Y, m): the numerically stable forms for the natural pairs.
LOSSES_FROM_LOGITS = {
    ("sigmoid", "bce"): _bce_from_logits,
    ("softmax", "cross_entropy"): _cross_entropy_from_logits,
}


def cost(output, loss, Z_L, A_L, Y, m):
    """J for the batch: from Z^L where a stable form exists, else from A^L."""
    from_logits = LOSSES_FROM_LOGITS.get((output, loss))
    if from_logits is not None:
        return from_logits(Z_L, Y, m)
    return LOSSES[loss](A_L, Y, m)
