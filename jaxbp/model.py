"""The network description `MLP` (a frozen, hashable config) and parameter initialisation."""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.activations import ACTIVATIONS, OUTPUTS, RELU_FAMILY
from jaxbp.losses import LOG_LOSSES, LOSSES, NATURAL_LOSS, PROBABILITY_OUTPUTS

MATMUL_DTYPES = (None, "bfloat16")
# float32 matmul precision -> the lax.Precision every dot_general is compiled with. "float32":
# true float32 products on every backend (HIGHEST). "tf32": DEFAULT, which NVIDIA GPUs from
# Ampere on run as TF32 (operands rounded to a 10-bit mantissa, ~8x the float32 rate) and CPUs
# as float32. float64 has no faster mode, and bfloat16 operands are already rounded, so the
# setting changes only float32 matmuls.
PRECISIONS = {"float32": "highest", "tf32": "default"}
SCHEMES = ("he", "glorot", "lecun", "torch")


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class MLP:
    """A fully connected network; hashable, so it can be a static argument of `jax.jit`.

    Layer l (1..L) computes Z^l = W^l A^{l-1} + b^l and A^l = g(Z^l), one example per column.
    """

    sizes: tuple[int, ...]  # (n_0, n_1, ..., n_L): inputs, hidden widths, outputs
    # g for layers 1..L-1: relu, leaky_relu, tanh, sigmoid, gelu, softplus, identity
    hidden: str = "relu"
    output: str = "sigmoid"  # g for layer L: sigmoid, softmax, identity
    loss: str | None = None  # bce, cross_entropy, mse; None picks the output's natural loss
    # Compute policy: None multiplies in the parameters' dtype; "bfloat16" casts the operands of
    # every matmul to bfloat16 and accumulates in float32 (parameters, gradients and all
    # elementwise work stay float32).
    matmul_dtype: str | None = None
    # Float32 matmul precision: "float32" (true float32 on every backend, the default, as in
    # PyTorch) or "tf32" (TF32 on Ampere and newer NVIDIA GPUs: faster, ~1e-3 relative error
    # per product; float32 elsewhere). See PRECISIONS.
    precision: str = "float32"

    def __post_init__(self):
        sizes = self.sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"sizes: expected a sequence of ints (n_0, ..., n_L), got {sizes!r}")
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least two layer sizes (n_0, n_L), got {sizes!r}")
        for i, n in enumerate(sizes):
            if isinstance(n, bool) or (not isinstance(n, int) and not hasattr(n, "__index__")):
                raise TypeError(f"sizes[{i}]: expected a positive int, got {n!r}")
            if int(n) < 1:
                raise ValueError(f"sizes[{i}]: expected a positive int, got {n!r}")
        object.__setattr__(self, "sizes", tuple(int(n) for n in sizes))
        _choice("hidden", self.hidden, tuple(ACTIVATIONS))  # built in, or registered
        _choice("output", self.output, tuple(OUTPUTS))
        loss = NATURAL_LOSS[self.output] if self.loss is None else self.loss
        _choice("loss", loss, tuple(LOSSES))
        if loss in LOG_LOSSES and self.output not in PROBABILITY_OUTPUTS:
            raise ValueError(
                f"loss: {loss!r} takes log(A^L) and needs an output in (0, 1) "
                f"(sigmoid or softmax), got output={self.output!r}"
            )
        object.__setattr__(self, "loss", loss)
        _choice("matmul_dtype", self.matmul_dtype, MATMUL_DTYPES)
        _choice("precision", self.precision, tuple(PRECISIONS))

    @property
    def L(self):
        """Number of layers with parameters."""
        return len(self.sizes) - 1

    @property
    def natural(self):
        """True when Δ^L = A^L − Y (sigmoid+bce, softmax+cross_entropy, identity+mse)."""
        return NATURAL_LOSS[self.output] == self.loss

    def param_shapes(self):
        """[((n_l, n_{l-1}), (n_l, 1)) for l = 1..L]"""
        return [
            ((n, n_prev), (n, 1)) for n_prev, n in zip(self.sizes[:-1], self.sizes[1:], strict=True)
        ]

    def num_params(self):
        return sum(
            n * n_prev + n for n_prev, n in zip(self.sizes[:-1], self.sizes[1:], strict=True)
        )


class Cache(NamedTuple):
    """What the backward pass needs from the forward pass (`jaxbp.forward` returns it), indexed by
    layer as in the seeds. It lives beside the network description so that the passes
    (backprop.py) and the checks (validate.py) both build on it without importing each other."""

    A: tuple  # (A^0 = X, A^1, ..., A^L), A^l of shape (n_l, m)
    Z: tuple  # (None, Z^1, ..., Z^L), Z^l of shape (n_l, m); Z^0 does not exist
    # (None, M^1, ..., M^{L-1}): inverted-dropout masks (entries 0 or 1/(1 − p)); () for none
    M: tuple = ()


def default_dtype():
    """float64 when `jax_enable_x64` is on, else float32."""
    return np.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def check_key(key):
    """A typed key of shape (), or a legacy uint32 key of shape (2,); else an error naming `key`."""
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"key: expected a JAX PRNG key (jax.random.key or jax.random.PRNGKey), "
            f"got {type(key).__name__}"
        )
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if typed and key.shape != ():
        raise ValueError(f"key: expected a single typed key of shape (), got shape {key.shape}")
    if not typed and (key.shape != (2,) or key.dtype != jnp.uint32):
        raise ValueError(
            f"key: expected a legacy PRNGKey of shape (2,) and dtype uint32 or a typed key, "
            f"got shape {key.shape} and dtype {key.dtype}"
        )


def init(net, key, scheme=None, dtype=None):
    """Random parameters for `net`: a tuple of (W^l, b^l) with W^l (n_l, n_{l-1}), b^l (n_l, 1).

    Arguments:
        net: an `MLP`.
        key: a typed key (`jax.random.key`) or a legacy `jax.random.PRNGKey`.
        scheme: "he" (W ~ N(0, 2/n_{l-1}); default for relu and leaky_relu), "glorot"
            (W ~ U(±sqrt(6/(n_{l-1}+n_l))); default for the rest), "lecun" (W ~ N(0, 1/n_{l-1})),
            or "torch" (W and b ~ U(±1/sqrt(n_{l-1})), as torch.nn.Linear). Biases are zero
            except under "torch".
        dtype: float32 or float64; defaults to float64 when `jax_enable_x64` is on, else float32.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a jaxbp.MLP, got {type(net).__name__}")
    check_key(key)
    if scheme is None:
        scheme = "he" if net.hidden in RELU_FAMILY else "glorot"
    _choice("scheme", scheme, SCHEMES)
    dtype = default_dtype() if dtype is None else jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    if dtype == jnp.float64 and default_dtype() != jnp.float64:
        raise ValueError("dtype: float64 needs jax_enable_x64 on, got it off")

    params = []
    for k, ((n, n_prev), b_shape) in zip(
        jax.random.split(key, net.L), net.param_shapes(), strict=True
    ):
        kW, kb = jax.random.split(k)
        if scheme == "he":
            W = jax.random.normal(kW, (n, n_prev), dtype) * math.sqrt(2.0 / n_prev)
        elif scheme == "lecun":
            W = jax.random.normal(kW, (n, n_prev), dtype) * math.sqrt(1.0 / n_prev)
        elif scheme == "glorot":
            r = math.sqrt(6.0 / (n_prev + n))
            W = jax.random.uniform(kW, (n, n_prev), dtype, -r, r)
        else:  # torch
            r = 1.0 / math.sqrt(n_prev)
            W = jax.random.uniform(kW, (n, n_prev), dtype, -r, r)
        if scheme == "torch":
            b = jax.random.uniform(kb, b_shape, dtype, -r, r)
        else:
            b = jnp.zeros(b_shape, dtype)
        params.append((W, b))
    return tuple(params)
