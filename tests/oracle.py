"""The one oracle helper: `jax.grad` of a plain-jnp cost, written without any jaxbp code.

Tolerances by dtype, for gradients compared against the float64 oracle; every comparison is
|got − want| ≤ atol + rtol·|want| with atol = atol_scale · max(1, max|want|) over the array:
the errors come from sums of terms whose size is set by the activations and weights (O(1) in
these problems: inputs ~N(0, 1), weights ~1/√fan-in), so an entry that is small because its
terms cancel keeps an absolute error of the terms' size, not its own.
- float64: rtol 1e-10, atol_scale 1e-13 (eps 2.2e-16: a few layers of sums of ≤ 64 terms stay
  within ~1e-13 relative, so 1e-10 leaves room but would catch any wrong term; an entry that
  cancels to ~0 keeps up to ~64 eps ≈ 1.4e-14 of its terms' size: Hypothesis found 1.1e-14).
- float32: rtol 1e-4 (≈ 840 eps, eps 1.19e-7), atol_scale 1e-5 (≈ 84 eps). Measured over the
  oracle grid at m = 7 and 64 (every hidden activation × output × depth 1-4 and every
  output/loss pair, as a GPU computes it): worst relative error 5.4e-6 (45 eps) on entries
  above 1% of their array's max, worst absolute error 3.1e-7 · max(1, max|g|) (2.6 eps).
  So rtol and atol sit ~20-30x above what correct float32 code reaches, and far below the
  1.5e-4-3e-4 that TF32 matmuls produce (tests/test_gpu_paths.py) or a wrong term would.
"""

import jax
import jax.numpy as jnp
import numpy as np

HIDDEN_G = {
    "relu": jax.nn.relu,  # JAX's rule: relu'(0) = 0
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),  # derivative 0.01 at 0
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "softplus": jax.nn.softplus,
    "identity": lambda z: z,
}
OUTPUT_G = {
    "sigmoid": jax.nn.sigmoid,
    "softmax": lambda z: jax.nn.softmax(z, axis=0),
    "identity": lambda z: z,
}


def oracle_cost(net, params, X, Y, weights=None, masks=None, alpha=None):
    """J from the definitions: the plain forward pass, then the loss of A^L, plus
    scikit-learn's L2 term α/(2n) Σ_l ||W^l||² (n = Σ w_i, or m) when alpha is given.

    log a and log(1 − a) come from the logits for the two natural pairs (log_sigmoid,
    log_softmax), so a saturated output costs no precision; other pairs take logs of A^L as
    their definition says (and are non-finite where A^L reaches 0 or 1).
    weights (m,): J = Σ w_i ℓ_i / Σ w_i. masks: {l: M^l} multiplies A^l (dropout)."""
    if alpha is not None:
        n = X.shape[1] if weights is None else jnp.sum(weights)
        penalty = alpha / (2 * n) * sum(jnp.sum(W**2) for W, _ in params)
        return oracle_cost(net, params, X, Y, weights, masks) + penalty
    A = X
    for l, (W, b) in enumerate(params, start=1):
        g = OUTPUT_G[net.output] if l == net.L else HIDDEN_G[net.hidden]
        Z = W @ A + b
        A = g(Z)
        if masks is not None and l in masks:
            A = A * masks[l]
    m = X.shape[1]
    if weights is not None:  # the weighted mean as a sum over scaled columns
        s = weights / jnp.sum(weights)
        return sum(oracle_cost(net, params, X[:, i : i + 1], Y[:, i : i + 1], None,
                               None if masks is None else {k: v[:, i : i + 1]
                                                           for k, v in masks.items()}) * s[i]
                   for i in range(m))
    if net.loss == "mse":
        return 0.5 * jnp.sum((A - Y) ** 2) / m
    if (net.output, net.loss) == ("sigmoid", "bce"):
        log_a, log_1ma = jax.nn.log_sigmoid(Z), jax.nn.log_sigmoid(-Z)
    elif (net.output, net.loss) == ("softmax", "cross_entropy"):
        log_a, log_1ma = jax.nn.log_softmax(Z, axis=0), None
    else:
        log_a, log_1ma = jnp.log(A), jnp.log1p(-A)
    if net.loss == "cross_entropy":
        return -jnp.sum(jnp.where(Y > 0, Y * log_a, 0.0)) / m
    return -jnp.sum(jnp.where(Y > 0, log_a, log_1ma)) / m  # bce, Y in {0, 1}


def oracle(net, params, X, Y, weights=None, masks=None, alpha=None):
    """(J, grads) by jax.grad, at the highest matmul precision so TF32 can neither hide nor
    fake an error on a GPU."""
    with jax.default_matmul_precision("highest"):
        return _oracle_jit(net, params, X, Y, weights, masks, alpha)


_oracle_jit = jax.jit(jax.value_and_grad(oracle_cost, argnums=1), static_argnums=0)


def tolerances(dtype):
    return {"float64": (1e-10, 1e-13), "float32": (1e-4, 1e-5)}[np.dtype(dtype).name]


def assert_trees_close(got, want, dtype, what="grads", conditioning=1.0):
    """Same structure, shapes and dtype; values within the dtype's stated tolerance, its atol
    multiplied by `conditioning` where the problem amplifies rounding (see assert_matches)."""
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    rtol, atol_scale = tolerances(dtype)
    atol_scale *= conditioning
    for i, (g, w) in enumerate(zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)):
        assert g.shape == w.shape, f"{what} leaf {i}: shape {g.shape} != {w.shape}"
        assert g.dtype == np.dtype(dtype), f"{what} leaf {i}: dtype {g.dtype} != {dtype}"
        w = np.asarray(w, np.float64)
        atol = atol_scale * max(1.0, float(np.max(np.abs(w), initial=0.0)))
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=rtol, atol=atol,
                                   err_msg=f"{what} leaf {i}")


def assert_matches(got, want, dtype, conditioning=1.0):
    """`got` = (J, grads) from jaxbp in `dtype`; `want` = (J, grads) from the float64 oracle.

    `conditioning` ≥ 1 multiplies the atol where the problem itself amplifies rounding: a
    loss that takes log a or log(1 − a) of A^L (a pair without the logit form) turns the
    rounding of a into a relative error of 1 − a up to eps / min(a, 1 − a), so two correct
    programs may differ by that much more (`conditioning_of`)."""
    (J, grads), (J_want, grads_want) = got, want
    rtol, atol_scale = tolerances(dtype)
    atol = atol_scale * conditioning * max(1.0, abs(float(J_want)))
    np.testing.assert_allclose(float(J), float(J_want), rtol=rtol, atol=atol, err_msg="cost J")
    assert_trees_close(grads, grads_want, dtype, conditioning=conditioning)


def conditioning_of(net, A_L):
    """1 / min(a, 1 − a) over the outputs for a pair that takes log a or log(1 − a) of A^L
    (bce or cross_entropy without its natural output); 1 for every other pair."""
    if net.natural or net.loss == "mse":
        return 1.0
    A_L = np.asarray(A_L, np.float64)
    return 1.0 / max(float(min(A_L.min(), (1.0 - A_L).min())), np.finfo(np.float64).tiny)


def assert_matches_oracle(net, params, X, Y, backward_result):
    """`backward_result` = (J, grads) from jaxbp, in params' dtype, against the float64 oracle
    evaluated at the same numbers."""
    up = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)  # noqa: E731
    assert_matches(backward_result, oracle(net, up(params), up(X), up(Y)), params[0][0].dtype)
