"""float32 by default, float64 end to end under x64, and the bfloat16 matmul policy."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracle import oracle
from test_gpu_paths import ENTRIES, _lowered, _problem

import jaxbp
from jaxbp.model import default_dtype

NET = jaxbp.MLP((6, 16, 8, 3), hidden="gelu", output="softmax")


def data(dtype, m=32):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, m)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[:, rng.integers(0, 3, m)]
    return X, Y


def dtypes_of(tree):
    return {np.dtype(x.dtype).name for x in jax.tree.leaves(tree)}


def test_float32_by_default():
    with jax.enable_x64(False):
        assert default_dtype() == jnp.float32
        params = jaxbp.init(NET, jax.random.PRNGKey(0))  # a legacy key works too
        assert dtypes_of(params) == {"float32"}
        X, Y = data(np.float64)  # float64 NumPy data is cast to the params' float32
        A_L, cache = jaxbp.forward(NET, params, X)
        J, grads = jaxbp.backward(NET, params, cache, Y)
        assert A_L.dtype == jnp.float32 and J.dtype == jnp.float32
        assert dtypes_of(cache.A) == {"float32"} and dtypes_of(grads) == {"float32"}
        opt = jaxbp.optim.adam()
        params, state, J = jaxbp.train_step(NET, opt, params, opt.init(params), X, Y)
        assert dtypes_of((params, state.mu, state.nu)) == {"float32"}


def test_float64_end_to_end():
    assert jax.config.jax_enable_x64  # conftest turns it on
    params = jaxbp.init(NET, jax.random.key(0))
    assert dtypes_of(params) == {"float64"}
    X, Y = data(np.float32)
    A_L, cache = jaxbp.forward(NET, params, X)
    J, grads = jaxbp.backward(NET, params, cache, Y)
    assert A_L.dtype == jnp.float64 and J.dtype == jnp.float64
    assert dtypes_of(cache.A) | dtypes_of(cache.Z[1:]) | dtypes_of(grads) == {"float64"}
    for opt in (jaxbp.optim.sgd(0.1, momentum=0.9), jaxbp.optim.adam()):
        p, s, J = jaxbp.train_step(NET, opt, jax.tree.map(jnp.copy, params), opt.init(params),
                                   X, Y)
        assert J.dtype == jnp.float64 and dtypes_of((p, s[-1])) == {"float64"}


def test_float32_params_asked_for_under_x64():
    params = jaxbp.init(NET, jax.random.key(0), dtype="float32")
    X, Y = data(np.float64)
    _, cache = jaxbp.forward(NET, params, X)
    J, grads = jaxbp.backward(NET, params, cache, Y)
    assert J.dtype == jnp.float32 and dtypes_of(grads) == {"float32"}


def test_bfloat16_matmul_policy():
    """MLP(matmul_dtype="bfloat16"): bf16 operands, f32 accumulation, f32 everything else."""
    net = jaxbp.MLP(NET.sizes, hidden=NET.hidden, output=NET.output, matmul_dtype="bfloat16")
    params = jaxbp.init(net, jax.random.key(0), dtype="float32")
    X, Y = data(np.float32)
    _, cache = jaxbp.forward(net, params, X)
    J, grads = jaxbp.backward(net, params, cache, Y)
    assert J.dtype == jnp.float32
    assert dtypes_of(grads) == {"float32"} and dtypes_of(cache.A[1:]) == {"float32"}

    for fn, args in ((jaxbp.backprop.forward, (params, X)),
                     (jaxbp.backprop.backward, (params, cache, Y))):
        jaxpr = jax.make_jaxpr(fn, static_argnums=0)(net, *args).jaxpr
        dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
        assert len(dots) == (3 if fn is jaxbp.backprop.forward else 5)  # 3 Z's; 3 dW's, 2 Δ's
        for e in dots:
            assert [v.aval.dtype for v in e.invars] == [jnp.bfloat16, jnp.bfloat16]
            assert e.params["preferred_element_type"] == jnp.float32

    # bf16 keeps 8 significant bits (eps 2^-8 ≈ 3.9e-3); over three layers of 16-term sums the
    # gradients stay within a few percent of the float64 oracle: rtol 5e-2, atol 2e-2·max|g|.
    up = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)  # noqa: E731
    J_want, want = oracle(net, up(params), up(X), up(Y))
    np.testing.assert_allclose(float(J), float(J_want), rtol=5e-2)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want), strict=True):
        w = np.asarray(w)
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=5e-2,
                                   atol=2e-2 * np.abs(w).max())
    # ...and is not simply float32: the bf16 rounding is visible.
    net32 = jaxbp.MLP(NET.sizes, hidden=NET.hidden, output=NET.output)
    _, grads32 = jaxbp.backward(net32, params, jaxbp.forward(net32, params, X)[1], Y)
    assert not np.array_equal(np.asarray(grads[0][0]), np.asarray(grads32[0][0]))


@pytest.mark.parametrize("entry", ["backward", "train_step_jit", "fit epoch"])
def test_the_bfloat16_policy_transposes_in_bfloat16(entry):
    """Under matmul_dtype="bfloat16" the backward pass's materialised W^lᵀ (the CPU's
    optimization barrier, `backprop.transposed`) is a bfloat16 array, half the copy of a
    float32 one, and no float64 array appears (the transpose's dtype taken from the policy,
    not from a default)."""
    net, params, X, Y = _problem("bfloat16")
    text = _lowered(entry, net, params, X, Y)
    barriers = re.findall(r"stablehlo\.optimization_barrier[^\n]*", text)
    assert barriers and all(re.search(r": tensor<\d+x\d+xbf16>$", b) for b in barriers), barriers
    assert not re.findall(r"tensor<(?:\d+x)+f64>", text)


@pytest.mark.parametrize("entry", ENTRIES)
def test_float32_programs_hold_no_float64_array(entry):
    """With 64-bit types on (as in this session), every compiled program of a float32 network
    computes in float32: no float64 array anywhere in its StableHLO (a Python scalar is a
    float64 constant converted at once, allowed). Catches a buffer, a cast or random draws
    that would follow the global x64 flag instead of the network's dtype (fit's flat vector,
    its dropout uniforms)."""
    net, params, X, Y = _problem("float32")
    arrays = set(re.findall(r"tensor<(?:\d+x)+f64>", _lowered(entry, net, params, X, Y)))
    assert not arrays, arrays
