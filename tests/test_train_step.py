"""train_step in a plain Python loop: one compile, donated buffers, falling cost, exact step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.backprop import IN_PLACE_MIN, after


def blobs(m=128, seed=0):
    """Three Gaussian blobs in 2-D, one-hot labels; columns are examples."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, m)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    X = (centers[labels] + 0.5 * rng.normal(size=(m, 2))).T
    return jnp.asarray(X), jnp.asarray(np.eye(3)[:, labels])


def test_one_step_is_backward_then_update():
    net = jaxbp.MLP((2, 8, 3), hidden="tanh", output="softmax")
    params = jaxbp.init(net, jax.random.key(0), dtype="float64")
    X, Y = blobs()
    opt = jaxbp.optim.sgd(0.1, momentum=0.9)
    _, cache = jaxbp.forward(net, params, X)
    J_want, grads = jaxbp.backward(net, params, cache, Y)
    want, _ = opt.update(grads, opt.init(params), params)

    new, _, J = jaxbp.train_step(net, opt, jax.tree.map(jnp.copy, params), opt.init(params), X, Y)
    np.testing.assert_allclose(float(J), float(J_want), rtol=1e-14)
    for g, w in zip(jax.tree.leaves(new), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("opt", [jaxbp.optim.sgd(0.5, momentum=0.9), jaxbp.optim.adam(0.05)])
def test_python_loop_trains_and_compiles_once(opt):
    net = jaxbp.MLP((2, 16, 3), hidden="relu", output="softmax")
    params = jaxbp.init(net, jax.random.key(1), dtype="float32")
    X, Y = blobs()
    X, Y = X.astype(jnp.float32), Y.astype(jnp.float32)
    state = opt.init(params)
    before = jaxbp.train_step_jit._cache_size()
    costs = []
    for _ in range(100):
        old = params[0][0]
        params, state, J = jaxbp.train_step(net, opt, params, state, X, Y)
        costs.append(float(J))
    assert old.is_deleted()  # donated: the step reused its buffer
    assert jaxbp.train_step_jit._cache_size() == before + 1
    assert costs[-1] < 0.1 * costs[0], costs[::10]
    A_L, _ = jaxbp.forward(net, params, X)
    accuracy = float(jnp.mean(jnp.argmax(A_L, 0) == jnp.argmax(Y, 0)))
    assert accuracy > 0.95


def test_column_vector_is_batch_of_one():
    """Seed 000's x of shape (n_0, 1) is the batch code with m = 1."""
    net = jaxbp.MLP((3, 4, 2, 1))
    params = jaxbp.init(net, jax.random.key(2), dtype="float64")
    x, y = jnp.asarray([[0.5], [-1.0], [2.0]]), jnp.asarray([[1.0]])
    opt = jaxbp.optim.sgd(0.1)
    params, _, J = jaxbp.train_step(net, opt, params, opt.init(params), x, y)
    assert J.shape == () and params[0][1].shape == (4, 1)


def test_after_changes_no_value():
    """`after` only orders the computation: every value comes back equal, even when a value it
    waits for is infinite or NaN (its zero is 0·[v = v], never 0·inf)."""
    tree = (jnp.asarray([1.5, -2.0, jnp.inf, jnp.nan, 0.0]), jnp.asarray([[3.0]], jnp.float64))
    for wait in (jnp.float32(2.0), jnp.float32(jnp.inf), jnp.asarray([[jnp.nan, 1.0]])):
        out = jax.jit(after)(tree, wait, jnp.float32(-1.0))
        for o, t in zip(jax.tree.leaves(out), jax.tree.leaves(tree), strict=True):
            assert o.dtype == t.dtype
            np.testing.assert_array_equal(np.asarray(o), np.asarray(t))


def test_scan_of_steps_equals_python_loop():
    """Inside a lax.scan XLA updates the carried weights in place (see `in_place`); the steps must
    still be the steps of a Python loop. Not bit for bit: XLA fuses the scan's body and the
    standalone step differently, so reductions may round differently in the last place
    (float64; rtol 1e-12 leaves room for three Adam steps of that)."""
    net = jaxbp.MLP((2, 256, 256, 3), hidden="tanh", output="softmax")
    params = jaxbp.init(net, jax.random.key(3), dtype="float64")
    assert sum(x.size for x in jax.tree.leaves(params)) >= IN_PLACE_MIN  # the in-place path
    X, Y = blobs(96)
    Xb, Yb = X.reshape(2, 3, 32).transpose(1, 0, 2), Y.reshape(3, 3, 32).transpose(1, 0, 2)
    opt = jaxbp.optim.adam(0.01)

    def body(carry, xy):
        p, s, J = jaxbp.train_step_jit(net, opt, *carry, *xy)
        return (p, s), J

    (scanned, _), costs = jax.jit(lambda c: jax.lax.scan(body, c, (Xb, Yb)))(
        (params, opt.init(params)))
    p, s = jax.tree.map(jnp.copy, params), opt.init(params)
    for i in range(3):
        p, s, J = jaxbp.train_step(net, opt, p, s, Xb[i], Yb[i])
        np.testing.assert_allclose(float(J), float(costs[i]), rtol=1e-12)
    for a, b in zip(jax.tree.leaves(scanned), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
