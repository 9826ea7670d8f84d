"""backward == jax.grad of a plain-jnp cost, over every activation, output, depth and batch size."""

import itertools
import os

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from oracle import (
    HIDDEN_G,
    OUTPUT_G,
    assert_matches,
    assert_matches_oracle,
    conditioning_of,
    oracle,
    tolerances,
)
from tf32 import as_on_gpu

import jaxbp

HIDDEN = tuple(HIDDEN_G)  # the oracle's own table, not jaxbp's: a removal there must fail here
WIDTHS = (5, 4, 6, 3)  # n_0..n_3 for the hidden part; n_L = 3 so softmax has classes to pick
N_L = 3
PAIRS = [  # every (output, loss) that MLP accepts; the first three are the natural ones
    ("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "mse"),
    ("sigmoid", "cross_entropy"), ("sigmoid", "mse"),
    ("softmax", "bce"), ("softmax", "mse"),
]


def make_problem(net, m, dtype, seed=0):
    """Random params (biases nonzero so db is exercised), X ~ N(0, 1) and Y valid for the loss.

    Values are rounded to float32 first, so the float32 and float64 problems of one seed hold
    the same numbers and share one float64 oracle."""
    rng = np.random.default_rng(seed)
    params = tuple(
        (rng.normal(0, 1 / np.sqrt(k), (n, k)), rng.normal(0, 0.5, (n, 1)))
        for k, n in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    )
    X = rng.normal(size=(net.sizes[0], m))
    n_L = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = np.eye(n_L)[:, rng.integers(0, n_L, m)]
    elif net.loss == "bce":
        Y = rng.integers(0, 2, (n_L, m)).astype(float)
    else:
        Y = rng.normal(size=(n_L, m))
    cast = lambda a: jnp.asarray(np.float32(a), dtype)  # noqa: E731
    return jax.tree.map(cast, params), cast(X), cast(Y)


def on_gpu(net, params, X, Y):
    """jaxbp's (J, grads) as a TF32-capable GPU computes them (tests/tf32.py): float32 dots
    that do not ask for HIGHEST precision get their operands rounded to TF32."""
    return as_on_gpu(lambda p, X, Y: jaxbp.backward(net, p, jaxbp.forward(net, p, X)[1], Y))(
        params, X, Y)


def check(net, m, seed=0):
    """jaxbp in float64, and in float32 as a GPU would compute it, against one float64 oracle.
    (On a CPU the float32 numbers are those of the plain float32 run: at the default
    precision the GPU simulation rounds nothing.)"""
    want = oracle(net, *make_problem(net, m, "float64", seed))
    params, X, Y = make_problem(net, m, "float64", seed)
    _, cache = jaxbp.forward(net, params, X)
    assert_matches(jaxbp.backward(net, params, cache, Y), want, "float64")
    assert_matches(on_gpu(net, *make_problem(net, m, "float32", seed)), want, "float32")


GRID = [
    (hidden, output, depth)
    for depth in (1, 2, 3, 4)
    for hidden in (HIDDEN if depth > 1 else ("relu",))  # depth 1 has no hidden layer
    for output in ("sigmoid", "softmax", "identity")
]


@pytest.mark.parametrize(("hidden", "output", "depth"), GRID)
def test_backward_matches_oracle(hidden, output, depth):
    net = jaxbp.MLP((*WIDTHS[:depth], N_L), hidden=hidden, output=output)
    for m in (1, 7, 64):
        check(net, m)


@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_every_output_loss_pair(output, loss):
    for hidden, m in itertools.product(("tanh", "relu"), (1, 7, 64)):
        check(jaxbp.MLP((4, 5, N_L), hidden=hidden, output=output, loss=loss), m)


@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_kinks_follow_jax_and_torch(hidden):
    """Exact zeros in Z^1 (by construction): relu'(0) = 0, leaky_relu'(0) = 0.01."""
    net = jaxbp.MLP((2, 3, 1), hidden=hidden)
    W1 = jnp.array([[1.0, -1.0], [2.0, 0.0], [0.5, 0.5]])
    b1 = jnp.zeros((3, 1))
    X = jnp.array([[1.0, 2.0, 0.0], [1.0, 3.0, 0.0]])  # column 0 gives Z^1_0 = 0, column 2 all 0
    params = ((W1, b1), (jnp.array([[0.3, -0.7, 1.1]]), jnp.array([[0.2]])))
    Y = jnp.array([[1.0, 0.0, 1.0]])
    _, cache = jaxbp.forward(net, params, X)
    assert float(cache.Z[1][0, 0]) == 0.0
    assert_matches_oracle(net, params, X, Y, jaxbp.backward(net, params, cache, Y))


def test_the_oracle_covers_every_built_in_activation():
    """jaxbp's built-in hidden activations are exactly those the oracle knows (and the grid
    above runs): adding or dropping one on either side fails here."""
    assert set(jaxbp.activations.HIDDEN) == set(HIDDEN)
    assert set(jaxbp.activations.OUTPUTS) == set(OUTPUT_G)


# Values neither 0 nor whole (Hypothesis favours both: ~40% each in a plain draw), and
# float32-representable, so one draw serves the float32 and the float64 run.
FLOATS = st.floats(-3, 3, allow_nan=False, width=32).filter(lambda v: v != round(v))


# 25 draws per run (each compiles a new network); JAXBP_HYPOTHESIS_EXAMPLES=500 for a long hunt.
@settings(max_examples=int(os.environ.get("JAXBP_HYPOTHESIS_EXAMPLES", "25")), deadline=None)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(1, 6), min_size=3, max_size=5),  # a hidden layer at least
    m=st.integers(2, 9),
    hidden=st.sampled_from(HIDDEN),
    pair=st.sampled_from(PAIRS),
    dtype=st.sampled_from(["float64", "float32"]),
)
def test_hypothesis_shapes_and_values(data, sizes, m, hidden, pair, dtype):
    output, loss = pair
    if output == "softmax" or loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    net = jaxbp.MLP(tuple(sizes), hidden=hidden, output=output, loss=loss)
    draw = lambda shape: np.asarray(  # noqa: E731
        data.draw(hnp.arrays(np.float32, shape, elements=FLOATS)), np.float64)
    params = tuple((draw((n, k)), draw((n, 1))) for k, n in itertools.pairwise(sizes))
    X = draw((sizes[0], m))
    _, _, Y = make_problem(net, m, "float64", seed=data.draw(st.integers(0, 1000)))
    want = oracle(net, *jax.tree.map(jnp.asarray, (params, X, Y)))
    # A pair that takes log A^L has no finite cost once A^L saturates to exactly 0 or 1.
    assume(all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(want)))
    params, X, Y = jax.tree.map(lambda a: jnp.asarray(a, dtype), (params, X, Y))
    A_L, cache = jaxbp.forward(net, params, X)
    # Hypothesis found softmax + bce with 1 − a ≈ 3e-5: the two programs' rounding of a,
    # amplified by 1/(1 − a), differed by 7e-11 on a gradient of 24 (see conditioning_of).
    # The atol grows by that factor; a draw where it would pass 1e-3 of the gradient's scale
    # (too loose to catch a wrong term), or where a rounds to 1 in float32, is not compared.
    kappa = conditioning_of(net, A_L)
    assume(kappa * tolerances(dtype)[1] <= 1e-3)
    assert_matches(jaxbp.backward(net, params, cache, Y), want, dtype, conditioning=kappa)


@pytest.mark.parametrize(("hidden", "output"), [("tanh", "softmax"), ("relu", "sigmoid"),
                                                ("gelu", "identity")])
def test_sample_weights(hidden, output):
    """J = Σ w_i ℓ_i / Σ w_i; zero weights drop an example (how fit pads a ragged batch)."""
    net = jaxbp.MLP((4, 5, 3, N_L), hidden=hidden, output=output)
    params, X, Y = make_problem(net, 9, "float64", seed=3)
    w = jnp.asarray([0.5, 2.0, 0.0, 1.0, 3.0, 0.0, 1.5, 1.0, 0.25])
    _, cache = jaxbp.forward(net, params, X)
    got = jaxbp.backward(net, params, cache, Y, sample_weight=w)
    assert_matches(got, oracle(net, params, X, Y, weights=w), "float64")
    # Weight 0 is the same as leaving the example out.
    keep = np.flatnonzero(np.asarray(w))
    _, cache_kept = jaxbp.forward(net, params, X[:, keep])
    J_kept, grads_kept = jaxbp.backward(net, params, cache_kept, Y[:, keep],
                                        sample_weight=w[keep])
    np.testing.assert_allclose(float(got[0]), float(J_kept), rtol=1e-12)
    for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(grads_kept), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)
    # Only the weights' ratios count: scaled by 0.01 (a sum below 1) J and grads are the same.
    small = jaxbp.backward(net, params, cache, Y, sample_weight=0.01 * w)
    for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("sizes", "output", "W", "Y", "J"), [
    ((1, 1), "sigmoid", [[40.0]], [[0.0]], 40.0),  # −log(1 − σ(40)) = 40 + log(1 + e^−40)
    ((1, 2), "softmax", [[0.0], [200.0]], [[1.0], [0.0]], 200.0),  # −log softmax_0 = 200 + ...
])
def test_cost_is_finite_when_outputs_saturate(sizes, output, W, Y, J):
    """The natural pairs take their cost from the logits: an output that rounds to exactly 0
    or 1 in float32 still gives the right finite J and gradients (log A^L would give inf)."""
    net = jaxbp.MLP(sizes, output=output)
    params = ((jnp.asarray(W, jnp.float32), jnp.zeros((sizes[1], 1), jnp.float32)),)
    X, Y = jnp.ones((1, 1), jnp.float32), jnp.asarray(Y, jnp.float32)
    _, cache = jaxbp.forward(net, params, X)
    J_got, grads = jaxbp.backward(net, params, cache, Y)
    np.testing.assert_allclose(float(J_got), J, rtol=1e-6)  # float32: the terms past 40 vanish
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("hidden", ["relu", "tanh", "sigmoid", "gelu"])
def test_dropout_with_a_fixed_mask(hidden):
    """Inverted dropout: A^l = g(Z^l) ⊙ M^l forward, Δ^l ⊙ M^l backward, against jax.grad of
    the same masked forward."""
    net = jaxbp.MLP((4, 6, 5, N_L), hidden=hidden, output="softmax")
    params, X, Y = make_problem(net, 7, "float64", seed=4)
    p = 0.3
    rng = np.random.default_rng(4)
    masks = {l: jnp.asarray((rng.random((n, 7)) > p) / (1 - p))
             for l, n in ((1, 6), (2, 5))}
    _, cache = jaxbp.backprop.forward(net, params, X, (None, masks[1], masks[2]))
    got = jaxbp.backprop.backward(net, params, cache, Y)[:2]
    assert_matches(got, oracle(net, params, X, Y, masks=masks), "float64")


@pytest.mark.parametrize("weighted", [False, True])
def test_the_objective_is_the_regularised_cost_with_dropout(weighted):
    """`backprop.objective` (what every training path differentiates): the masked forward, the
    weighted cost and scikit-learn's L2 term α/(2n) Σ||W||², n = Σw, against jax.grad of the
    same definitions; alpha=None adds nothing (the plain backward's numbers, bit for bit)."""
    net = jaxbp.MLP((4, 6, 5, N_L), hidden="tanh", output="softmax")
    params, X, Y = make_problem(net, 7, "float64", seed=5)
    rng = np.random.default_rng(5)
    masks = {l: jnp.asarray((rng.random((n, 7)) > 0.3) / 0.7) for l, n in ((1, 6), (2, 5))}
    w = jnp.asarray(rng.random(7) * 2) if weighted else None
    args = (net, params, X, Y, None if w is None else w[None, :], (None, masks[1], masks[2]))
    for alpha in (0.3, 2.0):
        J, grads, _ = jaxbp.backprop.objective(*args, alpha=alpha)
        assert_matches((J, grads), oracle(net, params, X, Y, w, masks, alpha), "float64")
    J, grads, _ = jaxbp.backprop.objective(*args)
    _, cache = jaxbp.backprop.forward(net, params, X, args[-1])
    J_plain, grads_plain, _ = jaxbp.backprop.backward(net, params, cache, Y, args[4])
    assert float(J) == float(J_plain)
    for g, g_plain in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_plain), strict=True):
        np.testing.assert_array_equal(g, g_plain)


def test_registered_activation_is_checked_and_trains_right():
    """A user's (g, g′) pair: a wrong g′ is refused at registration; a right one gives
    gradients equal to jax.grad's."""
    import jax.nn as jnn

    swish = lambda z: z * jnn.sigmoid(z)  # noqa: E731
    swish_prime = lambda z: jnn.sigmoid(z) * (1 + z * (1 - jnn.sigmoid(z)))  # noqa: E731
    with pytest.raises(ValueError, match="g_prime: does not match the derivative of g at z"):
        jaxbp.register_activation("swish_wrong", swish, lambda z: jnn.sigmoid(z))
    with pytest.raises(ValueError, match="built in"):
        jaxbp.register_activation("relu", swish, swish_prime)
    assert "swish_wrong" not in jaxbp.activations.ACTIVATIONS
    # Registration is global; other tests use "swish" as the example of an unknown name, so the
    # names here are private to this test and removed again whatever happens.
    names = ("user_absval", "user_swish")
    try:
        # A kink (|z|) is skipped, not mistaken for a wrong derivative.
        jaxbp.register_activation("user_absval", jnp.abs, jnp.sign)
        jaxbp.register_activation("user_swish", swish, swish_prime)
        HIDDEN_G["user_swish"] = swish  # the oracle's own forward for it
        net = jaxbp.MLP((4, 5, 3, N_L), hidden="user_swish", output="softmax")
        for m in (1, 7):
            check(net, m)
    finally:
        for name in names:
            for table in (jaxbp.activations.ACTIVATIONS, jaxbp.activations.DERIVATIVES, HIDDEN_G):
                table.pop(name, None)


def test_the_deltas_are_the_cost_gradient_at_each_Z():
    """`backprop.backward`'s deltas are (None, Δ^1, ..., Δ^L), Δ^l = ∂J/∂Z^l of shape (n_l, m): each
    checked against jax.grad of the cost as a function of Z^l (the layers above recomputed
    from it), float64."""
    from jaxbp.activations import ACTIVATIONS, OUTPUTS
    from jaxbp.backprop import backward, forward
    from jaxbp.losses import cost, example_scale

    net = jaxbp.MLP((3, 5, 4, 2), hidden="tanh", output="softmax")
    params = jaxbp.init(net, jax.random.key(4), dtype="float64")
    rng = np.random.default_rng(4)
    X = jnp.asarray(rng.normal(size=(3, 6)))
    Y = jnp.asarray(np.eye(2)[:, rng.integers(0, 2, 6)])
    _, cache = forward(net, params, X)
    _, _, deltas = backward(net, params, cache, Y)
    assert len(deltas) == net.L + 1 and deltas[0] is None

    def J_of(Z, l):  # the cost with Z^l given, layers l+1..L recomputed
        A = (OUTPUTS[net.output] if l == net.L else ACTIVATIONS[net.hidden])(Z)
        for k in range(l + 1, net.L + 1):
            Z = params[k - 1][0] @ A + params[k - 1][1]
            A = (OUTPUTS[net.output] if k == net.L else ACTIVATIONS[net.hidden])(Z)
        return cost(net.output, net.loss, Z, A, Y, example_scale(6))

    for l in range(1, net.L + 1):
        want = jax.grad(J_of)(cache.Z[l], l)
        assert deltas[l].shape == (net.sizes[l], 6)
        np.testing.assert_allclose(np.asarray(deltas[l]), np.asarray(want), rtol=1e-10,
                                   atol=1e-13)
