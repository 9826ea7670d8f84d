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
`_forward` and `_backward` are pure and unchecked; `forward` and `backward` check their
arguments outside `jit` and then call the jitted versions.
"""

import jax
import jax.numpy as jnp

from jaxbp import validate
from jaxbp.activations import ACTIVATIONS, DERIVATIVES, OUTPUTS
from jaxbp.losses import LOSS_GRADIENTS, cost, example_scale
from jaxbp.model import PRECISIONS, Cache


def matmul(net, P, Q):
    """P @ Q under the net's compute policy, the one place jaxbp multiplies matrices: the
    operands' own dtype at the net's precision (true float32 unless `precision="tf32"`), or
    bfloat16 operands with float32 accumulation."""
    if net.matmul_dtype is None:
        return jnp.matmul(P, Q, precision=PRECISIONS[net.precision])
    bf16 = jnp.bfloat16
    return jnp.matmul(P.astype(bf16), Q.astype(bf16), precision="default",
                      preferred_element_type=jnp.float32)


def transposed(net, W):
    """W^lᵀ for the backward matmul Δ^{l-1} = W^lᵀ Δ^l: on CPU as its own row-major array.

    XLA's CPU backend multiplies a transposed left operand (contracting W's rows) far slower
    than a plain one: 280-320 vs 430-460 GFLOP/s (float32) on our 2-core benchmark machine.
    Materialising Wᵀ first (an O(n_l n_{l-1}) copy, against the O(n_l n_{l-1} m) matmul) and
    keeping XLA from folding it back into the dot with an optimization barrier recovers most
    of that. GPUs transpose inside the matmul for free, so there W is used as it is. The
    branch follows the platform the program is compiled for (`lax.platform_dependent`), not
    the process's default backend: a program exported for CUDA from a CPU host has no barrier.
    """
    dtype = W.dtype if net.matmul_dtype is None else jnp.dtype(net.matmul_dtype)

    def on_cpu(W):
        return jax.lax.optimization_barrier(W.T.astype(dtype))

    return jax.lax.platform_dependent(W, cpu=on_cpu, default=lambda W: W.T.astype(dtype))


def after(tree, *values):
    """`tree` unchanged, but computed after `values`: a zero that depends on them is added to
    it. The zero is 0·[v = v] (a comparison, so it is 0 even for an infinite or NaN v)."""
    seen = sum((jnp.ravel(v)[0] == jnp.ravel(v)[0]).astype(jnp.float32) for v in values)
    return jax.tree.map(lambda x: x + (0.0 * seen).astype(x.dtype), tree)


IN_PLACE_MIN = 1 << 16  # parameters: below this, copying them is cheaper than the ordering


def in_place(grads, J, deltas):
    """The gradients, ordered so that a loop of training steps updates W^l in place.

    Inside a loop (a `lax.scan` of steps) XLA overwrites the carried W^l only if it can
    prove every read of the old W^l comes first. Two reads feed nothing the update of W^l
    needs: W^lᵀ Δ^l (it makes Δ^{l-1}) and the cost J (XLA recomputes Z^L inside the cost's
    fusion). Left unordered, they make XLA copy W^l every step: 16 MiB a step for a 2048 ×
    2048 layer. Making the gradients wait for J and Δ^1..Δ^{L-1} (`after`) orders them; the
    numbers are the same. Below IN_PLACE_MIN parameters the copy is cheap and the ordering
    measured slower (2-core CPU, epochs of Adam steps: 30-64-32-1 (4k parameters) 3.7 ms
    ordered against 2.0 ms copied, 20k and 51k parameters slower too; 85k, 270k, 289k and
    5.8M parameters 4-13% faster), so small nets keep the copy.
    """
    if sum(g.size for g in jax.tree.leaves(grads)) < IN_PLACE_MIN:
        return grads
    return after(grads, J, *deltas[1:-1])


def _forward(net, params, X, M=()):
    A, Z = [X], [None]
    for l, (W, b) in enumerate(params, start=1):
        g = OUTPUTS[net.output] if l == net.L else ACTIVATIONS[net.hidden]
        Z.append(matmul(net, W, A[l - 1]) + b)  # Z^l = W^l A^{l-1} + b^l     (n_l, m)
        A.append(g(Z[l]))  # A^l = g(Z^l)                                       (n_l, m)
        if M and l < net.L:
            A[l] = A[l] * M[l]  # A^l = g(Z^l) ⊙ M^l (inverted dropout)          (n_l, m)
    return A[net.L], Cache(tuple(A), tuple(Z), tuple(M))


def _output_delta(output, Z_L, A_L, G):
    """Δ^L = ∂J/∂Z^L from G = ∂J/∂A^L, for pairs without the A^L − Y shortcut."""
    if output == "sigmoid":
        return G * A_L * (1.0 - A_L)  # g′ = σ(1 − σ), elementwise
    if output == "softmax":
        # The softmax Jacobian diag(a) − a aᵀ is symmetric, so Jᵀ G = a ⊙ (G − aᵀG), per column.
        return A_L * (G - jnp.sum(A_L * G, axis=0, keepdims=True))
    return G  # identity: g′ = 1


def _backward(net, params, cache, Y, weights=None):
    J, grads, _ = _backprop(net, params, cache, Y, weights)
    return J, grads


def _backprop(net, params, cache, Y, weights=None):
    """(J, grads, deltas) with deltas = (None, Δ^1, ..., Δ^L), each carrying the 1/m; the
    unused Δs cost nothing under jit (XLA drops what no output needs)."""
    A, Z, M, L = cache.A, cache.Z, cache.M, net.L
    s = example_scale(Y.shape[1], weights)  # 1/m, or w_i / Σw per column        (1, m)
    J = cost(net.output, net.loss, Z[L], A[L], Y, s)
    if net.natural:
        delta = (A[L] - Y) * s  # Δ^L = A^L − Y, with the cost's 1/m folded in      (n_L, m)
    else:
        G = LOSS_GRADIENTS[net.loss](A[L], Y) * s  # ∂J/∂A^L, 1/m included           (n_L, m)
        delta = _output_delta(net.output, Z[L], A[L], G)  # Δ^L = ∂J/∂A^L ⊙ g′(Z^L)    (n_L, m)
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


_forward_jit = jax.jit(_forward, static_argnums=0)
_backward_jit = jax.jit(_backward, static_argnums=0)


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
    return _forward_jit(net, params, X)


def backward(net, params, cache, Y, sample_weight=None):
    """The backward pass: the cost and its gradient with respect to every parameter.

    Arguments:
        net, params: as for `forward`.
        cache: the `Cache` that `forward(net, params, X)` returned.
        Y: targets, shape (n_L, m): {0, 1} for bce, one-hot columns for cross_entropy.
        sample_weight: optional weights w ≥ 0 of shape (m,): J = Σ_i w_i ℓ_i / Σ_i w_i.

    Returns:
        (J, grads): the scalar cost and a pytree with the structure, shapes and dtypes of
        `params`, holding (dW^l, db^l) for l = 1..L.
    """
    params = validate.params(net, params)
    cache = validate.cache(net, cache)
    Y = validate.targets(net, params, Y, m=cache.A[0].shape[1])
    weights = validate.sample_weight(params, sample_weight, m=Y.shape[1])
    return _backward_jit(net, params, cache, Y, weights)
