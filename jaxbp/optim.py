"""Optimizers as frozen, hashable (init, update) pairs with NamedTuple state.

The arithmetic follows `torch.optim.SGD`, `Adam` and `AdamW` with the same arguments, step for
step (dampening 0, amsgrad off, maximize off). Being hashable, an optimizer can be a static
argument of `jax.jit`; equal hyperparameters share one compiled step.

`OPTIMIZERS`, at the end, is the registry: name -> (factory, class). The boundary checks, the
checkpoints and the CLI's --optimizer read it, so a new optimizer is its class (a frozen
dataclass with `init` and an elementwise `update`), its NamedTuple state, its checking factory
and one line there, all in this module.
"""

import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def _number(name, value, low=None, high=None, low_open=False):
    """`value` as a finite float in [low, high) (or (low, high) with low_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")
    if high is not None and value >= high:
        raise ValueError(f"{name}: expected a number < {high}, got {value!r}")
    return value


def _positive_lr(lr):
    return _number("lr", lr, low=0.0, low_open=True)


def _tree_map(f, *trees):
    return jax.tree.map(f, *trees)


class SGDState(NamedTuple):
    velocity: Any  # the momentum buffer b_t, shaped like params; () when momentum == 0


@dataclasses.dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    g_t = ∇θ + λ θ_{t-1}                     (weight_decay λ)
    b_t = μ b_{t-1} + g_t,  b_0 = 0         (momentum μ; torch's first b_1 = g_1 is the same)
    g_t = g_t + μ b_t if nesterov else b_t
    θ_t = θ_{t-1} − lr g_t
    """

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    # What a population's members may set each for themselves in one compiled program (traced
    # values, not constants); momentum 0 or not shapes the state, so that stays in common.
    PER_MEMBER: ClassVar[tuple] = ("momentum",)

    def init(self, params):
        if self.momentum == 0.0:
            return SGDState(velocity=())
        return SGDState(velocity=_tree_map(jnp.zeros_like, params))

    def update(self, grads, state, params, lr=None):
        """One step: returns (params, state). `lr` overrides self.lr (e.g. a traced schedule)."""
        lr = self.lr if lr is None else lr
        mu, wd = self.momentum, self.weight_decay
        if wd != 0.0:
            grads = _tree_map(lambda g, p: g + wd * p, grads, params)
        velocity = state.velocity
        if not (isinstance(velocity, tuple) and velocity == ()):  # momentum != 0 (init's ())
            velocity = _tree_map(lambda b, g: mu * b + g, velocity, grads)
            if self.nesterov:
                grads = _tree_map(lambda g, b: g + mu * b, grads, velocity)
            else:
                grads = velocity
        params = _tree_map(lambda p, g: p - lr * g, params, grads)
        return params, SGDState(velocity=velocity)


class AdamState(NamedTuple):
    count: Any  # t, the number of steps taken (int32 scalar)
    mu: Any  # m_t, first-moment estimate, shaped like params
    nu: Any  # v_t, second-moment estimate, shaped like params


@dataclasses.dataclass(frozen=True)
class Adam:
    """Adam (L2 penalty in the gradient) or, with decoupled=True, AdamW (decay on the weights).

    g_t = ∇θ + λ θ_{t-1}                              (Adam with weight_decay λ)
    θ_{t-1} ← θ_{t-1} (1 − lr λ)                      (AdamW instead)
    m_t = m_{t-1} + (1 − β1)(g_t − m_{t-1})           (torch's lerp form of β1 m + (1 − β1) g)
    v_t = β2 v_{t-1} + (1 − β2) g_t²
    θ_t = θ_{t-1} − lr/(1 − β1^t) · m_t / (sqrt(v_t)/sqrt(1 − β2^t) + ε)
    """

    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False
    PER_MEMBER: ClassVar[tuple] = ("b1", "b2", "eps")  # as SGD's

    def init(self, params):
        # Two separate zero trees: the step donates the state, and one buffer cannot be
        # donated twice.
        return AdamState(
            count=jnp.zeros((), jnp.int32),
            mu=_tree_map(jnp.zeros_like, params),
            nu=_tree_map(jnp.zeros_like, params),
        )

    def update(self, grads, state, params, lr=None):
        """One step: returns (params, state). `lr` overrides self.lr (e.g. a traced schedule)."""
        lr = self.lr if lr is None else lr
        b1, b2, eps, wd = self.b1, self.b2, self.eps, self.weight_decay
        if wd != 0.0 and not self.decoupled:
            grads = _tree_map(lambda g, p: g + wd * p, grads, params)
        if wd != 0.0 and self.decoupled:
            params = _tree_map(lambda p: p * (1.0 - lr * wd), params)
        count = state.count + 1
        mu = _tree_map(lambda m, g: m + (1.0 - b1) * (g - m), state.mu, grads)
        nu = _tree_map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, grads)

        def step(p, m, v):
            t = count.astype(p.dtype)
            step_size = lr / (1.0 - b1**t)
            denom = jnp.sqrt(v) / jnp.sqrt(1.0 - b2**t) + eps
            return p - step_size * (m / denom)

        params = _tree_map(step, params, mu, nu)
        return params, AdamState(count=count, mu=mu, nu=nu)


def sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """SGD as `torch.optim.SGD(params, lr, momentum, nesterov=..., weight_decay=...)`."""
    lr = _positive_lr(lr)
    momentum = _number("momentum", momentum, low=0.0)
    weight_decay = _number("weight_decay", weight_decay, low=0.0)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov: expected a bool, got {nesterov!r}")
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov: expected momentum > 0 with nesterov=True, got momentum=0")
    return SGD(lr, momentum, nesterov, weight_decay)


def adam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    """Adam as `torch.optim.Adam`; with decoupled=True, AdamW as `torch.optim.AdamW`."""
    lr = _positive_lr(lr)
    b1 = _number("b1", b1, low=0.0, high=1.0)
    b2 = _number("b2", b2, low=0.0, high=1.0)
    eps = _number("eps", eps, low=0.0)
    weight_decay = _number("weight_decay", weight_decay, low=0.0)
    if not isinstance(decoupled, bool):
        raise TypeError(f"decoupled: expected a bool, got {decoupled!r}")
    return Adam(lr, b1, b2, eps, weight_decay, decoupled)


def adamw(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2):
    """AdamW as `torch.optim.AdamW`, its defaults included (weight decay 0.01, applied to the
    weights, not the gradient): `adam(..., decoupled=True)`."""
    return adam(lr, b1, b2, eps, weight_decay, decoupled=True)


class Registered(NamedTuple):
    factory: Any  # checks the hyperparameters (named as its arguments) and returns the optimizer
    cls: type  # the optimizer's frozen dataclass: its fields are what a checkpoint stores


# The registry. Each optimizer's `update` must be elementwise over the leaves (`fit` hands it
# one flat vector, `train_step` the tree: tests/test_optim.py checks both give the same numbers
# for every entry), and its state a NamedTuple of fields shaped like params or not.
OPTIMIZERS = {
    "sgd": Registered(sgd, SGD),
    "adam": Registered(adam, Adam),
    "adamw": Registered(adamw, Adam),
}
CLASSES = tuple(dict.fromkeys(entry.cls for entry in OPTIMIZERS.values()))
EXPECTED = "an optimizer from " + " or ".join(f"jaxbp.optim.{name}" for name in OPTIMIZERS)


def _shapes(tree):
    leaves = jax.tree.leaves(tree)
    return jax.tree.structure(tree), tuple((tuple(x.shape), str(x.dtype)) for x in leaves)


def check_is_optimizer(opt):
    """Boundary check that `opt` is one of ours (an isinstance: cheap enough for every call)."""
    if not isinstance(opt, CLASSES):
        raise TypeError(f"opt: expected {EXPECTED}, got {type(opt).__name__}")


def check(opt, state, params):
    """Boundary check that `opt` is ours and `state` came from `opt.init` on params like these:
    the same NamedTuple, structure, shapes and dtypes as `opt.init(params)` would give."""
    check_is_optimizer(opt)
    expected = _state_like(opt, _shapes(params))
    got = type(state), jax.tree.structure(state), _shapes(state)[1] if _is_tree(state) else None
    if got != expected:
        raise ValueError(
            f"state: expected the {expected[0].__name__} of opt.init(params) for this "
            f"optimizer and these params, got {type(state).__name__} of another structure, shape "
            f"or dtype"
        )


def _is_tree(state):
    """Whether every leaf of `state` is an array (JAX or NumPy), with a shape and a dtype."""
    return all(isinstance(x, (jax.Array, np.ndarray)) for x in jax.tree.leaves(state))


@functools.lru_cache(maxsize=64)
def _state_like(opt, params_shapes):
    """(type, structure, leaf shapes and dtypes) of `opt.init` for params of these shapes."""
    structure, leaves = params_shapes
    like = jax.tree.unflatten(structure, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])
    state = jax.eval_shape(opt.init, like)
    return type(state), jax.tree.structure(state), _shapes(state)[1]
