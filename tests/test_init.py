"""Parameter shapes and the four initialisation schemes' distributions."""

import math

import jax
import numpy as np
import pytest

import jaxbp

NET = jaxbp.MLP((400, 300, 200), hidden="relu", output="identity")


def test_shapes_and_defaults():
    params = jaxbp.init(NET, jax.random.key(0))
    assert [(W.shape, b.shape) for W, b in params] == [((300, 400), (300, 1)),
                                                       ((200, 300), (200, 1))]
    assert NET.num_params() == sum(W.size + b.size for W, b in params)
    # relu defaults to He, tanh to Glorot (each scheme's distribution: test_schemes_every_layer)
    he = jaxbp.init(NET, jax.random.key(0), scheme="he")
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(he), strict=True):
        assert np.array_equal(x, y)
    tanh = jaxbp.MLP((400, 300, 200), hidden="tanh")
    glorot = jaxbp.init(tanh, jax.random.key(0), scheme="glorot")
    for x, y in zip(jax.tree.leaves(jaxbp.init(tanh, jax.random.key(0))),
                    jax.tree.leaves(glorot), strict=True):
        assert np.array_equal(x, y)


def _expected(scheme, n, n_prev):
    """(distribution, std of W^l, bound of W^l or None, bound of b^l or 0) for layer l of
    shape (n, n_prev), from init's docstring (fan_in = n_prev, fan_out = n)."""
    if scheme == "he":
        return "normal", math.sqrt(2 / n_prev), None, 0.0
    if scheme == "lecun":
        return "normal", math.sqrt(1 / n_prev), None, 0.0
    r = math.sqrt(6 / (n_prev + n)) if scheme == "glorot" else 1 / math.sqrt(n_prev)
    return "uniform", r / math.sqrt(3), r, (r if scheme == "torch" else 0.0)


# Tolerances: 5 standard errors of each statistic for the layer's N draws (a fixed key, so the
# test is deterministic; a correct init fails a 5-SE bound with probability ~6e-7 over keys).
# The sample mean's standard error is σ/√N. The sample std's relative standard error is
# √((κ − 1)/(4N)), κ the kurtosis: 3 for a normal (1/√(2N)), 9/5 for a uniform (√(0.2/N)).
# For NET's layers (N = 120 000 and 60 000): std within 1.0-1.4% (normal) or 0.6-0.9%
# (uniform), mean within 0.014-0.020 σ. A wrong fan moves the std by >= 6.5% (glorot with
# fan_in twice: sqrt(700/800)) or >= 15% (he/lecun/torch with fan_out for fan_in).
KURTOSIS = {"normal": 3.0, "uniform": 9 / 5}


@pytest.mark.parametrize("scheme", ["he", "lecun", "glorot", "torch"])
def test_schemes_every_layer(scheme):
    params = jaxbp.init(NET, jax.random.key(1), scheme=scheme)
    shapes = zip(NET.sizes[1:], NET.sizes[:-1], strict=True)
    for l, ((W, b), (n, n_prev)) in enumerate(zip(params, shapes, strict=True), start=1):
        W, b = np.asarray(W), np.asarray(b)
        dist, std, bound, bias_bound = _expected(scheme, n, n_prev)
        N = W.size
        rel_se = math.sqrt((KURTOSIS[dist] - 1) / (4 * N))
        assert abs(W.std() / std - 1) < 5 * rel_se, (l, W.std(), std)
        assert abs(W.mean()) < 5 * std / math.sqrt(N), (l, W.mean(), std)
        if bound is not None:
            # within the bound, and reaching near it: P(all N draws of |U(−r, r)| < 0.999 r)
            # = 0.999^N < e^−60
            assert bound * 0.999 < np.abs(W).max() <= bound, (l, np.abs(W).max(), bound)
        if bias_bound == 0.0:
            assert not b.any()
        else:  # n >= 200 draws: P(all below 0.9 r) = 0.9^n < 1e-9
            assert 0.9 * bias_bound < np.abs(b).max() <= bias_bound, (l, b.max(), bias_bound)
            # and spread as U(−r, r): std r/√3 and mean 0, each to 5 standard errors
            b_std = bias_bound / math.sqrt(3)
            assert abs(b.std() / b_std - 1) < 5 * math.sqrt(0.2 / b.size), (l, b.std(), b_std)
            assert abs(b.mean()) < 5 * b_std / math.sqrt(b.size), (l, b.mean())


def test_keys_typed_and_legacy_deterministic():
    a = jaxbp.init(NET, jax.random.key(7))
    b = jaxbp.init(NET, jax.random.key(7))
    c = jaxbp.init(NET, jax.random.PRNGKey(7))
    d = jaxbp.init(NET, jax.random.key(8))
    assert np.array_equal(a[0][0], b[0][0])
    assert np.array_equal(a[0][0], c[0][0])  # a legacy key holds the same bits
    assert not np.array_equal(a[0][0], d[0][0])


def test_layers_draw_independently():
    # Equal shapes and scales, so that a shared key would give equal (or, scaled, perfectly
    # correlated) layers. Independent N(0, σ²) layers of N = 90 000 entries have a sample
    # correlation with standard error 1/√N = 0.0033; 5 standard errors: 0.017.
    net = jaxbp.MLP((300, 300, 300, 300), hidden="relu", output="identity")
    Ws = [np.asarray(W).ravel() for W, _ in jaxbp.init(net, jax.random.key(7), scheme="lecun")]
    for i in range(3):
        for j in range(i + 1, 3):
            assert abs(np.corrcoef(Ws[i], Ws[j])[0, 1]) < 5 / math.sqrt(Ws[i].size), (i, j)


@pytest.mark.parametrize("scheme", ["he", "lecun", "glorot", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_scheme_draws_in_the_dtype_asked(scheme, dtype):
    """Each leaf in the dtype asked for, whatever the default (x64 is on in the tests, so a
    draw left at the default would be float64)."""
    net = jaxbp.MLP((5, 4, 3), hidden="relu", output="identity")
    params = jaxbp.init(net, jax.random.key(2), scheme=scheme, dtype=dtype)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {np.dtype(dtype)}
