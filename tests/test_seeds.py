"""The seeds, reproduced: 001's worked example to its printed digits, 000's 3-4-2-1 network in
per-example form (one column vector x at a time, written out with NumPy from the seed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp

# --- Seed 001: relu, relu, sigmoid; BCE; two examples (1, 2) -> 0 and (3, 4) -> 1 ------------
NET_001 = jaxbp.MLP((2, 3, 2, 1), hidden="relu", output="sigmoid")
PARAMS_001 = (
    ([[-1.0, 2.0], [3.0, 0.5], [-0.1, -4.0]], [[1.0], [-2.0], [0.3]]),
    ([[0.5, 1.0, -2.0], [0.7, 0.1, 0.3]], [[-4.0], [5.0]]),
    ([[0.5, -0.3]], [[0.1]]),
)
X_001 = [[1.0, 3.0], [2.0, 4.0]]  # one example per column: x^(1) = (1, 2), x^(2) = (3, 4)
Y_001 = [[0.0, 1.0]]

# What the seed prints. It prints row-major (one example per row), so each is transposed below.
PRINTED_FORWARD = {  # name: (layer, rows = examples)
    "Z1": [[4.0, 2.0, -7.8], [6.0, 9.0, -16.0]],
    "A1": [[4.0, 2.0, 0.0], [6.0, 9.0, 0.0]],
    "Z2": [[0.0, 8.0], [8.0, 10.1]],
    "A2": [[0.0, 8.0], [8.0, 10.1]],
    "Z3": [[-2.3], [1.07]],
    "A3": [[0.0911], [0.7446]],
}
PRINTED_COST = 0.19522885978221893  # a float32 result printed as a Python float
PRINTED_GRADS = (  # (dW^l, db^l); torch prints biases as (n,), shown here as (n, 1)
    ([[-0.0249, -0.0396], [-0.1814, -0.2428], [0.0, 0.0]], [[-0.0147], [-0.0614], [0.0]]),
    ([[-0.3831, -0.5747, 0.0], [0.1752, 0.3175, 0.0]], [[-0.0639], [0.0246]]),
    ([[-1.0216, -0.9253]], [[-0.0821]]),
)
PRINTED_AFTER_SGD = (  # every parameter after one torch.optim.SGD step with lr = 0.01
    ([[-0.9998, 2.0004], [3.0018, 0.5024], [-0.1, -4.0]], [[1.0001], [-1.9994], [0.3]]),
    ([[0.5038, 1.0057, -2.0], [0.6982, 0.0968, 0.3]], [[-3.9994], [4.9998]]),
    ([[0.5102, -0.2907]], [[0.1008]]),
)

# The seed prints 4 decimals, so the exact value lies within half a unit of the last digit of
# the print: atol 5e-5. rtol 1e-6 covers the float32 rounding of values up to 16 in size.
PRINT_ATOL, PRINT_RTOL = 5e-5, 1e-6
# The printed cost is a float32 result. float64 must land within one float32 ulp of it
# (ulp(0.195) = 1.49e-8, i.e. 7.6e-8 relative); float32, summing in another order than
# torch, within 4 ulp (3e-7 relative).
COST_RTOL = {"float64": 7.6e-8, "float32": 3e-7}


def as_arrays(tree, dtype):
    is_list = lambda v: isinstance(v, list)  # noqa: E731
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), tree, is_leaf=is_list)


def close_to_print(got, printed, what):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(printed), rtol=PRINT_RTOL,
                               atol=PRINT_ATOL, err_msg=what)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seed_001_forward_cost_and_gradients(dtype):
    params = as_arrays(PARAMS_001, dtype)
    X, Y = jnp.asarray(X_001, dtype), jnp.asarray(Y_001, dtype)
    A3, cache = jaxbp.forward(NET_001, params, X)
    for name, printed in PRINTED_FORWARD.items():
        kind, l = name[0], int(name[1])
        got = (cache.Z if kind == "Z" else cache.A)[l]
        close_to_print(got.T, printed, name)
    close_to_print(A3.T, PRINTED_FORWARD["A3"], "A^L returned by forward")
    assert float(cache.Z[2][0, 0]) == 0.0  # z = 0 exactly: relu'(0) = 0 decides dW1, db1

    J, grads = jaxbp.backward(NET_001, params, cache, Y)
    np.testing.assert_allclose(float(J), PRINTED_COST, rtol=COST_RTOL[dtype], atol=0)
    for l, ((dW, db), (dW_p, db_p)) in enumerate(zip(grads, PRINTED_GRADS, strict=True), 1):
        close_to_print(dW, dW_p, f"dW{l}")
        close_to_print(db, db_p, f"db{l}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seed_001_one_sgd_step(dtype):
    params = as_arrays(PARAMS_001, dtype)
    X, Y = jnp.asarray(X_001, dtype), jnp.asarray(Y_001, dtype)
    opt = jaxbp.optim.sgd(0.01)
    new_params, _, J = jaxbp.train_step(NET_001, opt, params, opt.init(params), X, Y)
    np.testing.assert_allclose(float(J), PRINTED_COST, rtol=COST_RTOL[dtype], atol=0)
    for l, ((W, b), (W_p, b_p)) in enumerate(zip(new_params, PRINTED_AFTER_SGD, strict=True), 1):
        close_to_print(W, W_p, f"W{l} after the step")
        close_to_print(b, b_p, f"b{l} after the step")


# --- Seed 000: a 3-4-2-1 network (relu, relu, sigmoid; BCE), one column vector at a time -----
def seed_000_by_hand(params, x, y):
    """The seed's per-example equations, literally, in NumPy float64 (x: (3, 1), y: (1, 1))."""
    (W1, b1), (W2, b2), (W3, b3) = [(np.asarray(W), np.asarray(b)) for W, b in params]
    relu = lambda z: np.maximum(z, 0.0)  # noqa: E731
    relu_prime = lambda z: (z > 0).astype(float)  # noqa: E731
    z1 = W1 @ x + b1
    a1 = relu(z1)  # (4, 1)
    z2 = W2 @ a1 + b2
    a2 = relu(z2)  # (2, 1)
    z3 = W3 @ a2 + b3
    a3 = 1.0 / (1.0 + np.exp(-z3))  # (1, 1)
    loss = -(y * np.log(a3) + (1 - y) * np.log(1 - a3)).item()
    delta3 = a3 - y  # δ3 = a3 − y                                                     (1, 1)
    delta2 = (W3.T @ delta3) * relu_prime(z2)  # δ2 = W3ᵀ δ3 ⊙ g′(z2)                  (2, 1)
    delta1 = (W2.T @ delta2) * relu_prime(z1)  # δ1 = W2ᵀ δ2 ⊙ g′(z1)                  (4, 1)
    grads = ((delta1 @ x.T, delta1), (delta2 @ a1.T, delta2), (delta3 @ a2.T, delta3))
    return loss, grads


def test_seed_000_per_example_column_vectors():
    net = jaxbp.MLP((3, 4, 2, 1), hidden="relu", output="sigmoid")
    params = jaxbp.init(net, jax.random.key(0), scheme="torch", dtype="float64")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 16))
    Y = rng.integers(0, 2, size=(1, 16)).astype(float)

    by_hand = [seed_000_by_hand(params, X[:, i : i + 1], Y[:, i : i + 1]) for i in range(16)]
    losses, per_example = jaxbp.per_sample.per_example_grads(net, params, X, Y)
    for i, (loss, grads) in enumerate(by_hand):
        # m = 1: one example as a column vector goes through the same batch code.
        _, cache = jaxbp.forward(net, params, X[:, i : i + 1])
        J, got = jaxbp.backward(net, params, cache, Y[:, i : i + 1])
        # float64 throughout; both sides do the same few flops, so 1e-12 is generous.
        np.testing.assert_allclose(float(J), loss, rtol=1e-12)
        np.testing.assert_allclose(float(losses[i]), loss, rtol=1e-12)
        for g, g_vmap, h in zip(jax.tree.leaves(got), jax.tree.leaves(per_example),
                                jax.tree.leaves(grads), strict=True):
            np.testing.assert_allclose(np.asarray(g), h, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(np.asarray(g_vmap[i]), h, rtol=1e-12, atol=1e-15)

    # The batch gradient is the mean of the per-example ones (dW = (1/m) Σ_i δ_i a_iᵀ).
    _, cache = jaxbp.forward(net, params, X)
    J, batch = jaxbp.backward(net, params, cache, Y)
    mean = jax.tree.map(lambda *gs: np.mean(gs, axis=0), *[g for _, g in by_hand])
    np.testing.assert_allclose(float(J), np.mean([loss for loss, _ in by_hand]), rtol=1e-12)
    for g, h in zip(jax.tree.leaves(batch), jax.tree.leaves(mean), strict=True):
        np.testing.assert_allclose(np.asarray(g), h, rtol=1e-12, atol=1e-15)
