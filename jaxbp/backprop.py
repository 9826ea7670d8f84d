"""The forward and backward passes, written by hand from the column-major batch equations.

One example per column: A^0 = X has shape (n_0, m). For l = 1..L:
    Z^l = W^l A^{l-1} + b^l                      forward
    A^l = g(Z^l)
    Δ^L = A^L − Y                                for the natural output/loss pairs
    Δ^l = W^{l+1}ᵀ Δ^{l+1} ⊙ g′(Z^l)              backward
    dW^l = (1/m) Δ^l A^{l-1}ᵀ,  db^l = (1/m) Δ^l 1

The 1/m of the mean cost is folded into Δ^L once (an (n_L, m) scaling) instead of into every
dW^l and db^l; the Δ^l below therefore carry it, and dW^l = Δ^l A^{l-1}ᵀ needs no further scale.
With example weights w the 1/m becomes w_i / Σw per column (a ragged batch padded with zero
weights is the same batch without the padding).

Inverted dropout on hidden layers multiplies A^l = g(Z^l) ⊙ M^l by a mask M^l whose entries
are 0 or 1/(1 − p); the chain rule then gives Δ^l = W^{l+1}ᵀ Δ^{l+1} ⊙ M^l ⊙ g′(Z^l).
L2 regularisation adds α/(2n) Σ_l ||W^l||² to J (n = Σw, the batch's weight) and (α/n) W^l
to dW^l; `objective` puts the three together (forward with masks, backward, L2): it is what
every training path differentiates, `train_step`, `fit`'s epoch, the per-sample steps, the
data-parallel step and L-BFGS.

Everything here is pure and unchecked: traced inside the callers' `jit`. The checked forms
(`jaxbp.forward`, `jaxbp.backward`) live in api.py.
"""

import jax
import jax.numpy as jnp

from jaxbp.activations import ACTIVATIONS, DERIVATIVES, OUTPUTS
from jaxbp.backends import matmul, transposed
from jaxbp.losses import LOSS_GRADIENTS, cost, example_scale
from jaxbp.model import Cache


def forward(net, params, X, masks=()):
    """(A^L, cache) for X (n_0, m); masks: (None, M^1, ..., M^{L-1}) from `dropout_masks`, or
    () for no dropout."""
    M = masks
    A, Z = [X], [None]
    for l, (W, b) in enumerate(params, start=1):
        g = OUTPUTS[net.output] if l == net.L else ACTIVATIONS[net.hidden]
        Z.append(matmul(net, W, A[l - 1]) + b)  # Z^l = W^l A^{l-1} + b^l     (n_l, m)
        A.append(g(Z[l]))  # A^l = g(Z^l)                                       (n_l, m)
        if M and l < net.L:
            A[l] = A[l] * M[l]  # A^l = g(Z^l) ⊙ M^l (inverted dropout)          (n_l, m)
    return A[net.L], Cache(tuple(A), tuple(Z), tuple(M))


def _output_delta(output, A_L, G):
    """Δ^L = ∂J/∂Z^L from G = ∂J/∂A^L, for pairs without the A^L − Y shortcut."""
    if output == "sigmoid":
        return G * A_L * (1.0 - A_L)  # g′ = σ(1 − σ), elementwise
    if output == "softmax":
        # The softmax Jacobian diag(a) − a aᵀ is symmetric, so Jᵀ G = a ⊙ (G − aᵀG), per column.
        return A_L * (G - jnp.sum(A_L * G, axis=0, keepdims=True))
    return G  # identity: g′ = 1


def backward(net, params, cache, Y, weights=None):
    """(J, grads, deltas) for targets Y (n_L, m) and optional example weights (1, m): J the
    cost, grads shaped like params, deltas = (None, Δ^1, ..., Δ^L), each carrying the 1/m (the
    unused Δs cost nothing under jit: XLA drops what no output needs)."""
    A, Z, M, L = cache.A, cache.Z, cache.M, net.L
    s = example_scale(Y.shape[1], weights)  # 1/m, or w_i / Σw per column        (1, m)
    J = cost(net.output, net.loss, Z[L], A[L], Y, s)
    if net.natural:
        delta = (A[L] - Y) * s  # Δ^L = A^L − Y, with the cost's 1/m folded in      (n_L, m)
    else:
        G = LOSS_GRADIENTS[net.loss](A[L], Y) * s  # ∂J/∂A^L, 1/m included           (n_L, m)
        delta = _output_delta(net.output, A[L], G)  # Δ^L = ∂J/∂A^L ⊙ g′(Z^L)    (n_L, m)
    g, g_prime = ACTIVATIONS[net.hidden], DERIVATIVES[net.hidden]
    grads, deltas = [None] * L, [None] * (L + 1)
    for l in range(L, 0, -1):
        deltas[l] = delta
        W = params[l - 1][0]
        dW = matmul(net, delta, A[l - 1].T)  # dW^l = (1/m) Δ^l A^{l-1}ᵀ            (n_l, n_{l-1})
        db = jnp.sum(delta, axis=1, keepdims=True)  # db^l = (1/m) Δ^l 1             (n_l, 1)
        grads[l - 1] = (dW.astype(W.dtype), db.astype(W.dtype))
        if l > 1:  # Δ^0 is never needed: X is data, not a parameter
            back = matmul(net, transposed(net, W), delta)  # W^lᵀ Δ^l               (n_{l-1}, m)
            if M:  # A^{l-1} holds g(Z^{l-1}) ⊙ M^{l-1}: g′ needs g(Z^{l-1}) itself
                back = back * M[l - 1]
                delta = back * g_prime(Z[l - 1], g(Z[l - 1]))  # Δ^{l-1}: ⊙ M ⊙ g′(Z^{l-1})
            else:
                delta = back * g_prime(Z[l - 1], A[l - 1])  # Δ^{l-1} = W^lᵀ Δ^l ⊙ g′(Z^{l-1})
    grads = jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(grads))
    return J, grads, tuple(deltas)


def dropout_masks(net, key, p, m, dtype):
    """(None, M^1, ..., M^{L-1}) for inverted dropout with probability p: M^l (n_l, m) holds
    0 or 1/(1 − p), drawn from `key`; () when p = 0. p may be traced (a population's members
    each their own p > 0)."""
    if not isinstance(p, jax.Array) and p == 0.0:
        return ()
    keys = jax.random.split(key, net.L)
    # Uniforms in the network's float type (float32 at least): a Python float p would draw
    # float64 ones when 64-bit types are on, so the masks would depend on that global flag.
    keep_p = jnp.asarray(1.0 - p, jnp.float64 if dtype == jnp.float64 else jnp.float32)
    keep = [jax.random.bernoulli(keys[l], keep_p, (net.sizes[l], m)) for l in range(1, net.L)]
    return (None, *[k.astype(dtype) / (1.0 - p) for k in keep])


def objective(net, params, X, Y, weights=None, masks=(), alpha=None):
    """(J, grads, deltas): the regularised cost of the batch X (n_0, m), Y (n_L, m) and its
    gradient, with dropout masks (from `dropout_masks`) and scikit-learn's L2 penalty when
    alpha is given (None: no penalty term at all, not even + 0).

        J  = Σ_i s_i ℓ_i + α/(2n) Σ_l ||W^l||²,   n = Σ_i w_i (m without weights)
        dW^l = (1/m) Δ^l A^{l-1}ᵀ + (α/n) W^l,    db^l = (1/m) Δ^l 1  (biases not penalised)
    """
    _, cache = forward(net, params, X, masks)  # Z^l, A^l for l = 1..L
    J, grads, deltas = backward(net, params, cache, Y, weights)  # J, (dW^l, db^l), Δ^l
    if alpha is None:
        return J, grads, deltas
    n = X.shape[1] if weights is None else jnp.sum(weights)
    n = jnp.where(n > 0, n, 1.0)  # a batch of zero weight: no division by 0
    J = J + 0.5 * alpha / n * sum(jnp.sum(W * W) for W, _ in params)
    grads = tuple((dW + (alpha / n) * W, db) for (dW, db), (W, _) in zip(grads, params,
                                                                           strict=True))
    return J, grads, deltas
