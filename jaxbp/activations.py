"""Activation functions g and their derivatives g′, as lookup tables.

Every derivative takes both `Z` and `A = g(Z)`, so it can reuse whichever is
cheaper (σ′ = A(1 − A) needs no second exp). All are elementwise except the
softmax output, whose Jacobian is handled in `backprop.py`. Everything is built from lax
primitives (no function with a custom differentiation rule), since nothing here is ever
differentiated automatically.
"""

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
LEAKY_SLOPE = 0.01


def _gelu(Z):
    return 0.5 * Z * (1.0 + erf(Z * _INV_SQRT2))  # exact erf form, as torch.nn.GELU()


def _gelu_prime(Z, A):
    Phi = 0.5 * (1.0 + erf(Z * _INV_SQRT2))  # Φ(z), the normal CDF
    phi = _INV_SQRT2PI * jnp.exp(-0.5 * Z * Z)  # φ(z), the normal density
    return Phi + Z * phi


def _one(Z, A):
    return jnp.ones_like(Z)


def softplus(Z):
    """log(1 + e^z), computed as max(z, 0) + log(1 + e^{-|z|}) so it never overflows."""
    return jnp.maximum(Z, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(Z)))


def softmax(Z):
    """Softmax down each column (axis 0 holds the classes); the column max is subtracted
    first, which leaves the result unchanged and keeps exp from overflowing."""
    E = jnp.exp(Z - jnp.max(Z, axis=0, keepdims=True))
    return E / jnp.sum(E, axis=0, keepdims=True)


def log_softmax(Z):
    """log softmax(Z) down each column, without forming softmax(Z) (no log of 0)."""
    shifted = Z - jnp.max(Z, axis=0, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=0, keepdims=True))


# name -> g(Z). Hidden layers may use any of these.
ACTIVATIONS = {
    "relu": lambda Z: jnp.maximum(Z, 0),
    "leaky_relu": lambda Z: jnp.where(Z > 0, Z, LEAKY_SLOPE * Z),
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "gelu": _gelu,
    "softplus": softplus,
    "identity": lambda Z: Z,
}

# name -> g′(Z, A). The kinks follow PyTorch and JAX's own rules:
# relu′(0) = 0 and leaky_relu′(0) = 0.01 (the left-hand slope).
DERIVATIVES = {
    "relu": lambda Z, A: (Z > 0).astype(Z.dtype),
    "leaky_relu": lambda Z, A: jnp.where(Z > 0, 1.0, LEAKY_SLOPE).astype(Z.dtype),
    "tanh": lambda Z, A: 1.0 - A * A,
    "sigmoid": lambda Z, A: A * (1.0 - A),
    "gelu": _gelu_prime,
    "softplus": lambda Z, A: jax.nn.sigmoid(Z),
    "identity": _one,
}

HIDDEN = tuple(ACTIVATIONS)  # the built-in hidden activations


def register_activation(name, g, g_prime, *, check_points=None, rtol=1e-6, atol=1e-8):
    """Add a hidden activation given as the pair (g, g′), elementwise jnp functions of Z.

    g′ is checked once, here, in float64 against central differences of g (step 1e-5: the
    truncation error ~1e-10·|g‴| and rounding ~1e-11·|g|, so rtol 1e-6 with atol 1e-8 accepts a
    right derivative and refuses a wrong one) at `check_points` (default: 201 points in
    [−4, 4], kinks excluded by skipping points where the two one-sided quotients disagree).
    A wrong derivative raises ValueError naming the worst point; nothing is registered.
    """
    import numpy as np

    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected an identifier-like string, got {name!r}")
    if name in HIDDEN or name in OUTPUTS:
        raise ValueError(f"name: {name!r} is built in; choose another name")
    if not (callable(g) and callable(g_prime)):
        raise TypeError(f"g, g_prime: expected callables, got {type(g).__name__} and "
                        f"{type(g_prime).__name__}")
    z = np.linspace(-4.0, 4.0, 201) if check_points is None else np.asarray(check_points)
    h = 1e-5
    with jax.enable_x64(True):
        Z = jnp.asarray(z, jnp.float64)
        try:
            gz, gp = np.asarray(g(Z)), np.asarray(g_prime(Z))
            plus, minus = np.asarray(g(Z + h)), np.asarray(g(Z - h))
        except Exception as e:
            raise ValueError(
                f"g, g_prime: could not evaluate them on float64 arrays ({e})") from e
    if gz.shape != z.shape or gp.shape != z.shape:
        raise ValueError(f"g, g_prime: expected elementwise functions (shape {z.shape} in, "
                         f"same out), got {gz.shape} and {gp.shape}")
    right, left = (plus - gz) / h, (gz - minus) / h
    smooth = np.abs(right - left) <= 1e-3 * (1 + np.abs(right))  # no kink within ±h
    numeric = (plus - minus) / (2 * h)
    err = np.abs(gp - numeric)
    bad = smooth & ~(err <= atol + rtol * np.abs(numeric) + 1e-4 * h)
    if not np.all(np.isfinite(gp[smooth])) or bad.any():
        i = int(np.argmax(np.where(smooth, err, -1)))
        raise ValueError(f"g_prime: does not match the derivative of g at z = {z[i]:g}: got "
                         f"{gp[i]:.10g}, central differences give {numeric[i]:.10g}")
    ACTIVATIONS[name] = g
    DERIVATIVES[name] = lambda Z, A: g_prime(Z)


# Output activations. softmax is not elementwise: its g′ is a Jacobian, applied in backprop.py.
OUTPUTS = {
    "sigmoid": jax.nn.sigmoid,
    "softmax": softmax,
    "identity": lambda Z: Z,
}

# Families that take He initialisation by default; every other activation takes Glorot.
RELU_FAMILY = frozenset({"relu", "leaky_relu"})
