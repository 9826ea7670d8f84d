"""Bad input raises ValueError/TypeError at the boundary, naming the argument, what was expected
and what arrived; never an XLA shape error from inside jit."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import optim

NET = jaxbp.MLP((3, 4, 2), hidden="tanh", output="sigmoid")


@pytest.fixture
def good():
    params = jaxbp.init(NET, jax.random.key(0), dtype="float64")
    X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    Y = jnp.asarray([[0.0, 1, 1, 0, 1], [1.0, 0, 0, 1, 1]])
    return params, X, Y


@contextlib.contextmanager
def raises(exc, *fragments):
    """pytest.raises that also checks that every fragment appears in the message."""
    with pytest.raises(exc) as info:
        yield info
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragments"),
    [
        ({"sizes": (3,)}, ValueError, ["sizes", "at least two", "(3,)"]),
        ({"sizes": 3}, TypeError, ["sizes", "sequence", "3"]),
        ({"sizes": (3, 0, 1)}, ValueError, ["sizes[1]", "positive", "0"]),
        ({"sizes": (3, 2.5)}, TypeError, ["sizes[1]", "int", "2.5"]),
        ({"sizes": (3, 1), "hidden": "swish"}, ValueError, ["hidden", "relu", "'swish'"]),
        ({"sizes": (3, 1), "output": "tanh"}, ValueError, ["output", "softmax", "'tanh'"]),
        ({"sizes": (3, 1), "loss": "hinge"}, ValueError, ["loss", "bce", "'hinge'"]),
        ({"sizes": (3, 1), "output": "identity", "loss": "bce"}, ValueError,
         ["loss", "sigmoid or softmax", "'identity'"]),
        ({"sizes": (3, 1), "matmul_dtype": "float16"}, ValueError,
         ["matmul_dtype", "bfloat16", "'float16'"]),
        ({"sizes": (3, 1), "precision": "tf16"}, ValueError, ["precision", "tf32", "'tf16'"]),
    ],
)
def test_bad_mlp(kwargs, exc, fragments):
    with raises(exc, *fragments) as info:
        jaxbp.MLP(**kwargs)
    assert str(info.value).startswith(fragments[0] + ": "), str(info.value)  # named first


def test_mlp_takes_numpy_integer_sizes_as_ints():
    """Sizes from NumPy (np.int64, as from an array's shape arithmetic) are accepted by their
    __index__ and stored as Python ints; a float is not."""
    net = jaxbp.MLP((np.int64(3), np.int32(4), 2))
    assert net.sizes == (3, 4, 2) and all(type(n) is int for n in net.sizes)
    with raises(TypeError, "sizes[1]: expected a positive int", "4.0"):
        jaxbp.MLP((3, 4.0, 2))


def test_bad_init():
    with raises(ValueError, "scheme", "glorot", "'xavier'"):
        jaxbp.init(NET, jax.random.key(0), scheme="xavier")
    with raises(TypeError, "key", "PRNG", "int"):
        jaxbp.init(NET, 0)
    with raises(ValueError, "key", "shape (2,)", "(3,)"):
        jaxbp.init(NET, jnp.zeros(3, jnp.uint32))
    with raises(ValueError, "key", "shape ()", "(2,)"):
        jaxbp.init(NET, jax.random.split(jax.random.key(0)))
    with raises(TypeError, "net", "MLP", "tuple"):
        jaxbp.init((3, 4, 2), jax.random.key(0))
    with raises(ValueError, "dtype", "float32 or float64", "int32"):
        jaxbp.init(NET, jax.random.key(0), dtype="int32")


def test_init_messages_start_with_the_argument():
    with pytest.raises(ValueError, match=r"^scheme: expected one of \[.*\], got 'xavier'$"):
        jaxbp.init(NET, jax.random.key(0), scheme="xavier")
    with jax.enable_x64(False):  # float64 parameters need 64-bit types on
        with pytest.raises(ValueError,
                           match=r"^dtype: float64 needs jax_enable_x64 on, got it off$"):
            jaxbp.init(NET, jax.random.key(0), dtype="float64")


def test_bad_X(good):
    params, X, _ = good
    with raises(ValueError, "X", "(n_0, m) = (3, m)", "(5, 3)", "X.T"):
        jaxbp.forward(NET, params, X.T)
    with raises(ValueError, "X", "(n_0, m)", "(3,)"):
        jaxbp.forward(NET, params, X[:, 0])
    with raises(ValueError, "X", "finite", "NaN"):
        jaxbp.forward(NET, params, X.at[1, 2].set(jnp.nan))
    with raises(ValueError, "X", "finite", "inf"):
        jaxbp.forward(NET, params, np.full((3, 2), np.inf))
    with raises(TypeError, "X", "numeric", "str"):
        jaxbp.forward(NET, params, "data")


def test_bad_params(good):
    params, X, _ = good
    (W1, b1), (W2, b2) = params
    with raises(ValueError, "params[0][1]", "(4, 1)", "(4,)", "reshape(-1, 1)"):
        jaxbp.forward(NET, ((W1, b1[:, 0]), (W2, b2)), X)
    with raises(ValueError, "params[1][0]", "(2, 4)", "(4, 2)"):
        jaxbp.forward(NET, ((W1, b1), (W2.T, b2)), X)
    with raises(ValueError, "params", "2 (W, b) pairs", "got 1"):
        jaxbp.forward(NET, ((W1, b1),), X)
    other = jaxbp.MLP((3, 5, 2), hidden="tanh")
    with raises(ValueError, "params[0][0]", "(5, 3)", "(4, 3)"):
        jaxbp.forward(other, params, X)
    with raises(TypeError, "params[1][0]", "float64", "float32"):
        jaxbp.forward(NET, ((W1, b1), (W2.astype(jnp.float32), b2)), X)
    with raises(TypeError, "params[0][0]", "float32 or float64", "int32"):
        jaxbp.forward(NET, ((W1.astype(jnp.int32), b1), (W2, b2)), X)
    with raises(TypeError, "params", "tuple of (W, b) pairs", "dict"):
        jaxbp.forward(NET, {"W1": W1}, X)


def test_bad_Y_and_cache(good):
    params, X, Y = good
    _, cache = jaxbp.forward(NET, params, X)
    with raises(ValueError, "Y", "(n_L, m) = (2, 5)", "(5, 2)"):
        jaxbp.backward(NET, params, cache, Y.T)
    with raises(ValueError, "Y", "{0, 1}", "bce"):
        jaxbp.backward(NET, params, cache, Y.at[0, 0].set(0.5))
    with raises(ValueError, "Y", "finite", "NaN"):
        jaxbp.backward(NET, params, cache, Y.at[0, 0].set(jnp.nan))
    softmax_net = jaxbp.MLP((3, 4, 2), hidden="tanh", output="softmax")
    _, cache_s = jaxbp.forward(softmax_net, params, X)
    with raises(ValueError, "Y", "one-hot", "cross_entropy"):
        jaxbp.backward(softmax_net, params, cache_s, Y)  # column 4 is (1, 1)
    with raises(TypeError, "cache", "Cache returned by jaxbp.forward", "tuple"):
        jaxbp.backward(NET, params, tuple(cache), Y)
    _, short_cache = jaxbp.forward(NET, params, X[:, :3])
    with raises(ValueError, "Y", "(2, 3)", "(2, 5)"):
        jaxbp.backward(NET, params, short_cache, Y)


@pytest.mark.parametrize(
    ("make", "exc", "fragments"),
    [
        # Each message starts with the argument's name: "name: expected ..., got ...".
        (lambda: optim.sgd(0.0), ValueError, ["lr: expected a number > 0.0", "got 0.0"]),
        (lambda: optim.sgd(-0.1), ValueError, ["lr: expected a number > 0.0", "got -0.1"]),
        (lambda: optim.adam(lr=0), ValueError, ["lr: expected a number > 0.0", "got 0"]),
        (lambda: optim.sgd("0.1"), TypeError, ["lr: expected a real number", "got '0.1'"]),
        (lambda: optim.sgd(float("nan")), ValueError, ["lr: expected a finite number", "nan"]),
        (lambda: optim.sgd(0.1, momentum=-1), ValueError, ["momentum: expected a number >= 0.0",
                                                           "got -1"]),
        (lambda: optim.sgd(0.1, nesterov=True), ValueError, ["nesterov: expected momentum > 0 "
                                                             "with nesterov=True, got momentum=0"]),
        (lambda: optim.sgd(0.1, nesterov=1), TypeError, ["nesterov: expected a bool", "got 1"]),
        (lambda: optim.sgd(0.1, weight_decay=-1), ValueError, ["weight_decay: expected a number "
                                                               ">= 0.0", "got -1"]),
        (lambda: optim.adam(b1=1.0), ValueError, ["b1: expected a number < 1.0", "got 1.0"]),
        (lambda: optim.adam(b1=-0.1), ValueError, ["b1: expected a number >= 0.0", "got -0.1"]),
        (lambda: optim.adam(b2=-0.5), ValueError, ["b2: expected a number >= 0.0", "got -0.5"]),
        (lambda: optim.adam(b2=1.0), ValueError, ["b2: expected a number < 1.0", "got 1.0"]),
        (lambda: optim.adam(eps=-1e-8), ValueError, ["eps: expected a number >= 0.0"]),
        (lambda: optim.adam(eps="x"), TypeError, ["eps: expected a real number", "got 'x'"]),
        (lambda: optim.adam(weight_decay=-1e-4), ValueError, ["weight_decay: expected a number "
                                                              ">= 0.0"]),
        (lambda: optim.adam(decoupled="yes"), TypeError, ["decoupled: expected a bool",
                                                          "got 'yes'"]),
    ],
)
def test_bad_optimizer_arguments(make, exc, fragments):
    with raises(exc, *fragments) as info:
        make()
    assert str(info.value).startswith(fragments[0].split(":")[0] + ": "), str(info.value)


def test_bad_train_step_arguments(good):
    params, X, Y = good
    opt = optim.adam()
    with raises(TypeError, "opt", "jaxbp.optim", "str"):
        jaxbp.train_step(NET, "adam", params, opt.init(params), X, Y)
    with raises(TypeError, "opt", "jaxbp.optim", "list"):  # unhashable: named before jit hashes it
        jaxbp.train_step(NET, [opt], params, opt.init(params), X, Y)
    with raises(ValueError, "state", "AdamState", "SGDState"):
        jaxbp.train_step(NET, opt, params, optim.sgd(0.1).init(params), X, Y)
    other = jaxbp.init(jaxbp.MLP((3, 6, 2)), jax.random.key(0), dtype="float64")
    with raises(ValueError, "state", "AdamState", "shape"):
        jaxbp.train_step(NET, opt, params, opt.init(other), X, Y)
    with raises(ValueError, "X", "(3, m)", "(5, 3)", "X.T"):
        jaxbp.train_step(NET, opt, params, opt.init(params), X.T, Y)
    with raises(ValueError, "Y", "{0, 1}"):  # NumPy data: values checked at once
        jaxbp.train_step(NET, opt, params, opt.init(params), X, np.asarray(2 * Y))
    with raises(TypeError, "net", "MLP", "str"):
        jaxbp.train_step("mlp", opt, params, opt.init(params), X, Y)
    # Nothing was donated by the failed calls: params are still usable.
    jaxbp.train_step(NET, opt, params, opt.init(params), X, Y)


def test_optimizer_state_checks(good):
    """optim.check refuses a state that is not what opt.init(params) returns: the other
    optimizer's, a velocity for SGD without momentum, a moment of another dtype or tree
    structure (the same leaves in lists, not tuples)."""
    params = good[0]
    plain, heavy, adam = optim.sgd(0.1), optim.sgd(0.1, momentum=0.9), optim.adam()
    to32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32), tree)  # noqa: E731
    as_lists = [[W, b] for W, b in params]
    for opt, state, fragments in (
            (plain, optim.SGDState(velocity=params), ["SGDState", "got SGDState"]),
            (heavy, adam.init(params), ["SGDState", "got AdamState"]),
            (heavy, optim.SGDState(velocity=to32(params)), ["SGDState", "dtype"]),
            (heavy, optim.SGDState(velocity=as_lists), ["SGDState", "structure"]),
            (adam, adam.init(params)._replace(nu=to32(params)), ["AdamState", "dtype"]),
            (adam, heavy.init(params), ["AdamState", "got SGDState"])):
        with raises(ValueError, "state: expected the", *fragments):
            optim.check(opt, state, params)
    for opt in (plain, heavy, adam):
        optim.check(opt, opt.init(params), params)  # what init returns passes


def test_per_sample_checks_too(good):
    params, X, Y = good
    opt = optim.sgd(0.1)
    with raises(ValueError, "X", "(3, m)"):
        jaxbp.per_sample.sgd_epoch_scan(NET, opt, params, opt.init(params), X.T, Y)
    with raises(ValueError, "Y", "{0, 1}"):
        jaxbp.per_sample.per_example_grads(NET, params, X, Y + 1)
