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
    # relu defaults to He: std sqrt(2/fan_in); tanh to Glorot: bound sqrt(6/(fan_in+fan_out))
    W = np.asarray(params[0][0])
    assert W.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    W_tanh = np.asarray(jaxbp.init(jaxbp.MLP((400, 300, 200), hidden="tanh"),
                                   jax.random.key(0))[0][0])
    assert np.abs(W_tanh).max() <= math.sqrt(6 / 700)
    assert W_tanh.std() == pytest.approx(math.sqrt(6 / 700) / math.sqrt(3), rel=0.02)


# With 120 000 draws the sample std is within ~0.5% of the true one; 2% is a safe bound.
@pytest.mark.parametrize(
    ("scheme", "std", "bound", "bias_bound"),
    [
        ("he", math.sqrt(2 / 400), None, 0.0),
        ("lecun", math.sqrt(1 / 400), None, 0.0),
        ("glorot", math.sqrt(6 / 700) / math.sqrt(3), math.sqrt(6 / 700), 0.0),
        ("torch", (1 / math.sqrt(400)) / math.sqrt(3), 1 / math.sqrt(400), 1 / math.sqrt(400)),
    ],
)
def test_schemes(scheme, std, bound, bias_bound):
    (W, b), _ = jaxbp.init(NET, jax.random.key(1), scheme=scheme)
    W, b = np.asarray(W), np.asarray(b)
    assert W.std() == pytest.approx(std, rel=0.02)
    assert abs(W.mean()) < 0.02 * std * 10
    if bound is not None:
        assert np.abs(W).max() <= bound
    if bias_bound == 0.0:
        assert not b.any()
    else:
        assert 0 < np.abs(b).max() <= bias_bound


def test_keys_typed_and_legacy_deterministic():
    a = jaxbp.init(NET, jax.random.key(7))
    b = jaxbp.init(NET, jax.random.key(7))
    c = jaxbp.init(NET, jax.random.PRNGKey(7))
    d = jaxbp.init(NET, jax.random.key(8))
    assert np.array_equal(a[0][0], b[0][0])
    assert np.array_equal(a[0][0], c[0][0])  # a legacy key holds the same bits
    assert not np.array_equal(a[0][0], d[0][0])
    assert not np.array_equal(a[0][0][:200], a[1][0][:, :300][:200])  # layers differ
