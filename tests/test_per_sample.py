"""The per-sample forms: vmap mean == batch gradient; loop == scan == a plain reference loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp

# float64 throughout. The forms do the same arithmetic in the same order per example, except
# that XLA may fuse differently under scan and vmap: 1e-12 relative is thousands of eps.
RTOL, ATOL = 1e-12, 1e-14


def problem(net, m, seed=0):
    params = jaxbp.init(net, jax.random.key(seed), scheme="torch", dtype="float64")
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(net.sizes[0], m)))
    Y = jnp.asarray(np.eye(net.sizes[-1])[:, rng.integers(0, net.sizes[-1], m)])
    return params, X, Y


def assert_trees(got, want):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("hidden", ["relu", "tanh"])
def test_vmap_mean_equals_batch_gradient(hidden):
    net = jaxbp.MLP((5, 7, 4), hidden=hidden, output="softmax")
    params, X, Y = problem(net, m=33)
    losses, per_example = jaxbp.per_sample.per_example_grads(net, params, X, Y)
    assert losses.shape == (33,)
    for g, p in zip(jax.tree.leaves(per_example), jax.tree.leaves(params), strict=True):
        assert g.shape == (33, *p.shape)
    _, cache = jaxbp.forward(net, params, X)
    J, grads = jaxbp.backward(net, params, cache, Y)
    np.testing.assert_allclose(float(jnp.mean(losses)), float(J), rtol=RTOL)
    assert_trees(jax.tree.map(lambda g: jnp.mean(g, axis=0), per_example), grads)


def reference_epoch(net, opt, params, X, Y):
    """Per-example SGD from the public pieces: forward/backward on column i, then update."""
    state, costs = opt.init(params), []
    for i in range(X.shape[1]):
        _, cache = jaxbp.forward(net, params, X[:, i : i + 1])
        J, grads = jaxbp.backward(net, params, cache, Y[:, i : i + 1])
        params, state = opt.update(grads, state, params)
        costs.append(float(J))
    return params, np.array(costs)


@pytest.mark.parametrize(
    "opt", [jaxbp.optim.sgd(0.05), jaxbp.optim.sgd(0.05, momentum=0.9), jaxbp.optim.adam(1e-2)]
)
def test_loop_and_scan_epochs_agree_with_reference(opt):
    net = jaxbp.MLP((5, 7, 4), hidden="tanh", output="softmax")
    params, X, Y = problem(net, m=20)
    want_params, want_costs = reference_epoch(net, opt, params, X, Y)

    copy = lambda t: jax.tree.map(jnp.copy, t)  # noqa: E731  (the epochs donate their params)
    p_loop, _, c_loop = jaxbp.per_sample.sgd_epoch_loop(
        net, opt, copy(params), opt.init(params), X, Y)
    p_scan, _, c_scan = jaxbp.per_sample.sgd_epoch_scan(
        net, opt, copy(params), opt.init(params), X, Y)
    for got_params, got_costs in ((p_loop, c_loop), (p_scan, c_scan)):
        assert got_costs.shape == (20,)
        np.testing.assert_allclose(np.asarray(got_costs), want_costs, rtol=RTOL)
        assert_trees(got_params, want_params)
    assert not np.allclose(np.asarray(p_scan[0][0]), np.asarray(params[0][0]))  # it moved


def test_per_example_epoch_learns():
    """Several epochs of per-example SGD lower the cost of a separable problem."""
    net = jaxbp.MLP((2, 8, 1), hidden="tanh", output="sigmoid")
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(2, 64)))
    Y = (X[0:1] + X[1:2] > 0).astype(jnp.float64)
    params = jaxbp.init(net, jax.random.key(0), dtype="float64")
    opt = jaxbp.optim.sgd(0.1)
    state = opt.init(params)
    first = None
    for _ in range(5):
        params, state, costs = jaxbp.per_sample.sgd_epoch_scan(net, opt, params, state, X, Y)
        first = float(jnp.mean(costs)) if first is None else first
    assert float(jnp.mean(costs)) < 0.5 * first
