"""train_step in a plain Python loop: one compile, donated buffers, falling cost, exact step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.backends import IN_PLACE_MIN, after


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
    before = jaxbp.api._checked_step._cache_size()
    costs = []
    for _ in range(100):
        old = params[0][0]
        params, state, J = jaxbp.train_step(net, opt, params, state, X, Y)
        costs.append(float(J))
    assert old.is_deleted()  # donated: the step reused its buffer
    assert jaxbp.api._checked_step._cache_size() == before + 1
    assert costs[-1] < 0.1 * costs[0], costs[::10]
    A_L, _ = jaxbp.forward(net, params, X)
    accuracy = float(jnp.mean(jnp.argmax(A_L, 0) == jnp.argmax(Y, 0)))
    assert accuracy > 0.95


@jax.jit
def _slow(x):
    """2 rows of x after 400 matmuls of x's size (512², ~0.3-1 s on a 2-core CPU; 4096², ~0.1-1 s
    on a GPU), as columns 0..511: an input still being computed."""
    return jax.lax.fori_loop(0, 400, lambda i, a: jnp.tanh(a @ a) * 0.5, x)[:2, :512]


def _asynchronous_step():
    """(net, opt, params, state, seed, Y) with train_step compiled for `_slow(seed)` inputs;
    skips where the runtime waits for a step's input even without jaxbp's checks."""
    net = jaxbp.MLP((2, 8, 3), hidden="tanh", output="softmax")
    params = jaxbp.init(net, jax.random.key(0), dtype="float32")
    opt = jaxbp.optim.adam(0.01)
    _, Y = blobs(m=512)
    Y = Y.astype(jnp.float32)
    n = 512 if jax.default_backend() == "cpu" else 4096  # the accelerator needs more work
    seed = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    state = opt.init(params)
    params, state, _ = jaxbp.train_step(net, opt, params, state, _slow(seed), Y)  # compiles
    jaxbp.check_pending()
    X = _slow(seed)
    params, state, _ = jaxbp.train_step_jit(net, opt, params, state, X, Y)
    if X.is_ready():  # seen with jax 0.8.0 on CPU; 0.10 dispatches without waiting
        pytest.skip("this jax runtime waits for the step's input even without jaxbp's checks "
                    "(train_step_jit waits too): no wait can be told apart here")
    return net, opt, params, state, seed, Y


def test_train_step_returns_before_its_input_is_ready():
    """The checked step dispatches without waiting: no value read back, no wait for X."""
    net, opt, params, state, seed, Y = _asynchronous_step()
    X = _slow(seed)  # (2, 512), computed asynchronously
    assert not X.is_ready(), "the input finished before the test could use it"
    params, state, J = jaxbp.train_step(net, opt, params, state, X, Y)
    assert not X.is_ready() and not J.is_ready()  # returned while X was still being computed
    assert np.isfinite(float(J))
    jaxbp.check_pending()


def test_check_pending_waits_for_a_check_still_running():
    """check_pending() waits for checks whose flags are not on the host yet: a NaN in an input
    still being computed raises from it, not from some later call."""
    net, opt, params, state, seed, Y = _asynchronous_step()
    X = _slow(seed).at[0, 3].set(jnp.nan)
    params, state, J = jaxbp.train_step(net, opt, params, state, X, Y)
    assert not J.is_ready(), "the step finished before the test could ask"
    with pytest.raises(ValueError, match="X: expected finite"):
        jaxbp.check_pending()
    assert np.isnan(float(J))


def _fresh(net):
    params = jaxbp.init(net, jax.random.key(0), dtype="float32")
    return params, jaxbp.optim.sgd(0.1).init(params)


@pytest.mark.parametrize(("bad", "fragments"), [
    ("X", ("X", "finite", "NaN")),
    ("Y", ("Y", "one-hot", "cross_entropy")),
    ("sample_weight", ("sample_weight", "weights >= 0")),
])
def test_bad_device_values_give_nan_then_the_named_error(bad, fragments):
    """A JAX array's values are checked inside the compiled step: that call's J is NaN, and
    the ValueError naming the argument and the call comes from a later call once the flags
    are on the host, or from check_pending()."""
    net = jaxbp.MLP((2, 8, 3), hidden="tanh", output="softmax")
    opt = jaxbp.optim.sgd(0.1)
    X, Y = (a.astype(jnp.float32) for a in blobs(m=16))
    args = {"X": X, "Y": Y, "sample_weight": jnp.ones(16, jnp.float32)}
    args[bad] = {"X": X.at[0, 3].set(jnp.nan), "Y": 2 * Y,
                 "sample_weight": args["sample_weight"].at[5].set(-1.0)}[bad]
    params, state = _fresh(net)
    params, state, J = jaxbp.train_step(net, opt, params, state, **args)
    assert np.isnan(float(J))  # flags are on the host now: the next call raises
    with pytest.raises(ValueError, match="train_step call") as info:
        jaxbp.train_step(net, opt, *_fresh(net), X, Y)
    assert all(f in str(info.value) for f in fragments), str(info.value)
    params, state = _fresh(net)
    params, state, J = jaxbp.train_step(net, opt, params, state, **args)
    with pytest.raises(ValueError, match="train_step call"):
        jaxbp.check_pending()
    jaxbp.check_pending()  # raised once: nothing left pending


def test_host_weights_are_checked_at_once_and_used():
    """NumPy sample_weight takes the host path: good weights give exactly the step the same
    weights give on the device (and not the unweighted one); a bad weight raises from that
    very call, naming the argument, with nothing deferred."""
    net = jaxbp.MLP((2, 8, 3), hidden="tanh", output="softmax")
    opt = jaxbp.optim.sgd(0.1)
    X, Y = (np.asarray(a, np.float32) for a in blobs(m=16))
    w = np.linspace(0.5, 2.0, 16, dtype=np.float32)
    host = jaxbp.train_step(net, opt, *_fresh(net), X, Y, w)
    device = jaxbp.train_step(net, opt, *_fresh(net), *map(jnp.asarray, (X, Y, w)))
    for got, want in zip(jax.tree.leaves(host), jax.tree.leaves(device), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    unweighted = jaxbp.train_step(net, opt, *_fresh(net), X, Y)
    assert float(host[2]) != float(unweighted[2])
    w[5] = -1.0
    with pytest.raises(ValueError, match="sample_weight: expected weights >= 0") as info:
        jaxbp.train_step(net, opt, *_fresh(net), X, Y, w)
    assert "train_step call" not in str(info.value)  # raised now, not by a later call
    jaxbp.check_pending()  # and nothing left pending


def test_good_values_leave_nothing_pending():
    net = jaxbp.MLP((2, 8, 3), hidden="tanh", output="softmax")
    X, Y = (a.astype(jnp.float32) for a in blobs(m=16))
    params, state = _fresh(net)
    for _ in range(3):
        params, state, J = jaxbp.train_step(net, jaxbp.optim.sgd(0.1), params, state, X, Y)
    jaxbp.check_pending()
    assert np.isfinite(float(J))


def test_a_batch_whose_examples_all_weigh_zero_changes_nothing():
    """How fit's padding would look if a whole batch were padding: J = 0, SGD moves nothing."""
    net = jaxbp.MLP((2, 8, 3), hidden="tanh", output="softmax")
    params = jaxbp.init(net, jax.random.key(0), dtype="float64")
    X, Y = blobs(m=16)
    opt = jaxbp.optim.sgd(0.5)
    before = jax.tree.map(np.asarray, params)
    new, _, J = jaxbp.train_step_jit(net, opt, jax.tree.map(jnp.copy, params), opt.init(params),
                                     X, Y, jnp.zeros((1, 16)))
    assert float(J) == 0.0
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


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
    tree = (jnp.asarray([1.5, -2.0, jnp.inf, jnp.nan, 0.0], jnp.float32),
            jnp.asarray([[3.0]], jnp.float64), jnp.asarray([0.5, -1.0], jnp.bfloat16))
    nan = jnp.asarray([[jnp.nan, 1.0]])
    for wait in ((2.0,), (jnp.inf,), (nan,), (nan, -1.0), (2.0, -1.0)):  # NaN alone: no v = v
        out = jax.jit(after)(tree, *map(jnp.float32, wait[1:]), jnp.asarray(wait[0]))
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


def test_the_step_without_the_cpu_workarounds_is_the_plain_program_with_the_same_numbers():
    """`backends.plain()` (the benchmarks' "workarounds off" row): a step traced inside it has
    neither the materialised Wᵀ's optimization barrier nor the in-place ordering (a network
    above IN_PLACE_MIN, where the ordering is on), the step traced outside has both; the two
    compute the same parameters (float64, rtol 1e-13: XLA may fuse the two programs
    differently, so the last place may differ)."""
    net = jaxbp.MLP((2, 256, 256, 3), hidden="tanh", output="softmax")
    params = jaxbp.init(net, jax.random.key(3), dtype="float64")
    assert sum(x.size for x in jax.tree.leaves(params)) >= IN_PLACE_MIN
    X, Y = blobs(32)
    opt = jaxbp.optim.adam(0.01)
    state = opt.init(params)
    tuned = jax.jit(jaxbp.step.step, static_argnums=(0, 1))
    # JAX caches a trace by the function traced: the plain one needs a function of its own
    plain = jax.jit(lambda *args: jaxbp.step.step(*args), static_argnums=(0, 1))
    with jaxbp.backends.plain():
        plain_lowered = plain.lower(net, opt, params, state, X, Y)
    tuned_lowered = tuned.lower(net, opt, params, state, X, Y)
    with jaxbp.backends.plain():
        plain_text = jax.export.export(plain, platforms=["cpu"])(
            net, opt, params, state, X, Y).mlir_module()
    tuned_text = jax.export.export(tuned, platforms=["cpu"])(
        net, opt, params, state, X, Y).mlir_module()
    assert "optimization_barrier" not in plain_text and "optimization_barrier" in tuned_text
    # the ordering: `after`'s v = v comparisons, one per value waited for (J, Δ^1, Δ^2)
    assert tuned_text.count("stablehlo.compare") == plain_text.count("stablehlo.compare") + 3
    got, want = plain_lowered.compile()(params, state, X, Y), tuned_lowered.compile()(
        params, state, X, Y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=1e-15)


def test_the_step_with_masks_alpha_weights_and_its_own_rate_is_sgd_on_the_oracles_gradient():
    """`step.step` with everything `fit`'s epoch passes: dropout masks, L2 alpha, example
    weights and a learning rate overriding the optimizer's. With plain SGD the new
    parameters are θ − lr ∇J, ∇J from `jax.grad` of the regularised, masked, weighted cost
    (tests/oracle.py); float64, the oracle's tolerances."""
    from oracle import assert_trees_close, oracle
    from test_oracle import make_problem

    net = jaxbp.MLP((4, 6, 5, 3), hidden="tanh", output="softmax")
    params, X, Y = make_problem(net, 7, "float64", seed=6)
    rng = np.random.default_rng(6)
    masks = {l: jnp.asarray((rng.random((n, 7)) > 0.3) / 0.7) for l, n in ((1, 6), (2, 5))}
    w = jnp.asarray(rng.random(7) + 0.5)
    opt = jaxbp.optim.sgd(1.0)  # its own rate, 1.0, is overridden
    new, _, J = jaxbp.step.step(net, opt, params, opt.init(params), X, Y, w[None, :],
                                (None, masks[1], masks[2]), 0.3, 0.05)
    J_want, grads = oracle(net, params, X, Y, w, masks, 0.3)
    np.testing.assert_allclose(float(J), float(J_want), rtol=1e-10)
    want = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)
    assert_trees_close(new, want, "float64", what="params")
