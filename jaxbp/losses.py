"""Costs J(A^L, Y) over a batch of m columns, their gradients ∂J/∂A^L, and the natural pairs.

Each loss is an elementwise table ℓ(a, y) of shape (n_L, m); the cost sums it over the outputs
and takes the (weighted) mean over the examples:
    bce:           ℓ = −[y log a + (1 − y) log(1 − a)]
    cross_entropy: ℓ = −y log a
    mse:           ℓ = ½ (a − y)²
    J = Σ_i s_i Σ_k ℓ_ki,   with s_i = 1/m, or s_i = w_i / Σ_j w_j for example weights w.
"""

import jax.numpy as jnp

from jaxbp.activations import log_softmax, softplus

# The output activation whose loss makes Δ^L = A^L − Y (the seeds' shortcut, valid only for
# these pairs: the Jacobian of g cancels the 1/(a(1−a)) or 1/a of ∂J/∂A).
NATURAL_LOSS = {"sigmoid": "bce", "softmax": "cross_entropy", "identity": "mse"}

# Losses that take logarithms of A^L need A^L inside (0, 1): these outputs guarantee it.
PROBABILITY_OUTPUTS = frozenset({"sigmoid", "softmax"})


def xlogy(Y, A):
    """y log a, taken as 0 where y = 0 (so a one-hot zero never meets log 0)."""
    return jnp.where(Y == 0, 0.0, Y * jnp.log(jnp.where(Y == 0, 1.0, A)))


# name -> ℓ(A, Y), elementwise, shape (n_L, m)
LOSSES = {
    "bce": lambda A, Y: -(xlogy(Y, A) + xlogy(1.0 - Y, 1.0 - A)),
    "cross_entropy": lambda A, Y: -xlogy(Y, A),
    "mse": lambda A, Y: 0.5 * (A - Y) ** 2,
}

# name -> ∂ℓ/∂A (A, Y), elementwise, shape (n_L, m); the cost's weights s_i are applied after.
LOSS_GRADIENTS = {
    "bce": lambda A, Y: (A - Y) / (A * (1.0 - A)),
    "cross_entropy": lambda A, Y: -Y / A,
    "mse": lambda A, Y: A - Y,
}

# name -> what the targets Y hold: the value check `validate` runs on them, and what labels
# become ("one_hot": class ids 0..n_L−1 become one-hot columns).
#   "binary": values in {0, 1}   "one_hot": one-hot columns   "finite": any finite value
TARGETS = {"bce": "binary", "cross_entropy": "one_hot", "mse": "finite"}

# The losses that take log(A^L): they need an output in PROBABILITY_OUTPUTS.
LOG_LOSSES = frozenset({"bce", "cross_entropy"})

# (output, loss) -> ℓ(Z^L, Y): numerically stable forms for the natural pairs with logs.
LOSSES_FROM_LOGITS = {
    # −[y log σ(z) + (1−y) log(1−σ(z))] = softplus(z) − y z, which never takes log(0)
    ("sigmoid", "bce"): lambda Z, Y: softplus(Z) - Y * Z,
    ("softmax", "cross_entropy"): lambda Z, Y: -Y * log_softmax(Z),
}


def example_scale(m, weights=None):
    """s of shape (1, m): 1/m each, or w / Σw for example weights w of shape (1, m) (all 0
    when Σw = 0, as for a batch whose examples all weigh 0: it then contributes nothing)."""
    if weights is None:
        return 1.0 / m
    total = jnp.sum(weights)
    return jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), 0.0)


def cost(output, loss, Z_L, A_L, Y, scale):
    """J = Σ_i s_i Σ_k ℓ_ki: from Z^L where a stable form exists, else from A^L."""
    from_logits = LOSSES_FROM_LOGITS.get((output, loss))
    table = from_logits(Z_L, Y) if from_logits is not None else LOSSES[loss](A_L, Y)
    return jnp.sum(table * scale)
