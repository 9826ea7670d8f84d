"""The optimizers against hand-computed steps and against torch.optim's algorithms, step by step.

`torch_reference` restates the pseudo-code of torch.optim.SGD, Adam and AdamW's docs in NumPy
(float64), for one parameter array; jaxbp must match it for several steps of several slots.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbp import optim

RTOL = 1e-12  # float64, a handful of flops per step: exact up to rounding


def torch_reference(kind, hp, theta, grad_seq):
    """θ after each step of torch's algorithm (dampening 0, no amsgrad, no maximize)."""
    theta, out = np.array(theta, np.float64), []
    b = m = v = None
    for t, g in enumerate(grad_seq, start=1):
        g = np.array(g, np.float64)
        lr, wd = hp["lr"], hp.get("weight_decay", 0.0)
        if kind == "sgd":
            mu = hp.get("momentum", 0.0)
            if wd:
                g = g + wd * theta
            if mu:
                b = g if b is None else mu * b + g
                g = g + mu * b if hp.get("nesterov") else b
            theta = theta - lr * g
        else:
            b1, b2, eps = hp.get("b1", 0.9), hp.get("b2", 0.999), hp.get("eps", 1e-8)
            if wd and hp.get("decoupled"):
                theta = theta * (1 - lr * wd)
            elif wd:
                g = g + wd * theta
            m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
            v = (1 - b2) * g * g if v is None else b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("adam", {"lr": 1e-2}),
    ("adam", {"lr": 3e-2, "b1": 0.8, "b2": 0.99, "eps": 1e-6, "weight_decay": 0.1}),
    ("adam", {"lr": 3e-2, "weight_decay": 0.1, "decoupled": True}),  # AdamW
    # weight_decay = 1.0 exactly: a decay switched on by "wd != 1.0" instead of "!= 0.0"
    # would skip it here.
    ("sgd", {"lr": 0.1, "weight_decay": 1.0}),
    ("adam", {"lr": 1e-2, "weight_decay": 1.0}),
    ("adam", {"lr": 1e-2, "weight_decay": 1.0, "decoupled": True}),
]


def make(kind, hp):
    return optim.sgd(**hp) if kind == "sgd" else optim.adam(**hp)


@pytest.mark.parametrize(("kind", "hp"), CASES)
def test_matches_torch_algorithm_step_for_step(kind, hp):
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=(3, 2))
    grad_seq = [rng.normal(size=(3, 2)) for _ in range(6)]
    want = torch_reference(kind, hp, theta0, grad_seq)

    opt = make(kind, hp)
    params = ((jnp.asarray(theta0), jnp.asarray(theta0[:, :1])),)  # a W and a b slot
    state = opt.init(params)
    for t, g in enumerate(grad_seq):
        grads = ((jnp.asarray(g), jnp.asarray(g[:, :1])),)
        params, state = opt.update(grads, state, params)
        np.testing.assert_allclose(np.asarray(params[0][0]), want[t], rtol=RTOL, atol=1e-15)
        np.testing.assert_allclose(np.asarray(params[0][1]), want[t][:, :1], rtol=RTOL,
                                   atol=1e-15)


def one_slot(x):
    return ((jnp.asarray([[x]], jnp.float64), jnp.zeros((1, 1), jnp.float64)),)


def run(opt, theta0, grads):
    params = one_slot(theta0)
    state = opt.init(params)
    for g in grads:
        params, state = opt.update(one_slot(g), state, params)
    return float(params[0][0][0, 0])


def test_hand_computed_steps():
    # SGD: 1 − 0.1·2 = 0.8
    assert run(optim.sgd(0.1), 1.0, [2.0]) == pytest.approx(0.8, rel=RTOL)
    # momentum 0.9, g = 1, 1: b = 1 then 1.9; θ = 1 − 0.1 − 0.19 = 0.71
    assert run(optim.sgd(0.1, momentum=0.9), 1.0, [1.0, 1.0]) == pytest.approx(0.71, rel=RTOL)
    # Nesterov, one step: b = 1, step g + μb = 1.9; θ = 1 − 0.19 = 0.81
    assert run(optim.sgd(0.1, momentum=0.9, nesterov=True), 1.0, [1.0]) == pytest.approx(
        0.81, rel=RTOL)
    # L2 weight decay 0.5 at θ = 2: g = 1 + 1 = 2; θ = 2 − 0.2 = 1.8
    assert run(optim.sgd(0.1, weight_decay=0.5), 2.0, [1.0]) == pytest.approx(1.8, rel=RTOL)
    # Adam's first step is lr·g/(|g| + eps) whatever |g|: θ = 1 − 0.1·3/(3 + 1e-8)
    assert run(optim.adam(0.1), 1.0, [3.0]) == pytest.approx(1 - 0.1 * 3 / (3 + 1e-8), rel=RTOL)
    # AdamW: decay first, θ = 2(1 − 0.1·0.5) = 1.9, then the same −0.1·g/(|g| + eps)
    assert run(optim.adam(0.1, weight_decay=0.5, decoupled=True), 2.0, [-4.0]) == pytest.approx(
        1.9 + 0.1 * 4 / (4 + 1e-8), rel=RTOL)
    # Adam, two steps with g = 1 then −1: m_2 = β1(1 − β1)·1 + (1 − β1)·(−1),
    # v_2 = β2(1 − β2) + (1 − β2), bias-corrected by 1 − β^2
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    m2, v2 = b1 * (1 - b1) * 1 + (1 - b1) * -1, b2 * (1 - b2) + (1 - b2)
    theta2 = 1 - lr * 1 / (1 + eps) - lr * (m2 / (1 - b1**2)) / (math.sqrt(v2 / (1 - b2**2)) + eps)
    assert run(optim.adam(lr), 1.0, [1.0, -1.0]) == pytest.approx(theta2, rel=RTOL)


def test_state_is_namedtuple_and_step_is_jittable():
    params = one_slot(1.0)
    for opt in (optim.sgd(0.1, momentum=0.9), optim.adam(0.1)):
        state = opt.init(params)
        assert hasattr(state, "_fields")  # a NamedTuple pytree
        eager = opt.update(one_slot(0.5), state, params)
        jitted = jax.jit(opt.update)(one_slot(0.5), state, params)
        for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL)
        twin = type(opt)(**dataclasses.asdict(opt))  # equal hyperparameters: one jit cache entry
        assert twin == opt and hash(twin) == hash(opt)


@pytest.mark.parametrize(("kind", "hp"), CASES)
def test_against_torch_itself(kind, hp):
    """The same steps through torch.optim, where PyTorch is installed (it is an optional
    dependency: the NumPy restatement above always runs)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=(4, 3))
    grad_seq = [rng.normal(size=(4, 3)) for _ in range(5)]
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    args = {k: v for k, v in hp.items() if k not in ("b1", "b2", "decoupled")}
    if kind == "sgd":
        topt = torch.optim.SGD([p], **args)
    else:
        args["betas"] = (hp.get("b1", 0.9), hp.get("b2", 0.999))
        topt = (torch.optim.AdamW if hp.get("decoupled") else torch.optim.Adam)([p], **args)
    opt = make(kind, hp)
    params = ((jnp.asarray(theta0), jnp.zeros((4, 1), jnp.float64)),)
    state = opt.init(params)
    for g in grad_seq:
        p.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
        params, state = opt.update(((jnp.asarray(g), jnp.zeros((4, 1))),), state, params)
        np.testing.assert_allclose(np.asarray(params[0][0]), p.detach().numpy(), rtol=RTOL,
                                   atol=1e-15)


def test_adam_defaults_are_torchs():
    """adam() with no arguments is torch.optim.Adam with no arguments (lr, betas, eps, no
    weight decay), read from PyTorch, not restated here."""
    torch = pytest.importorskip("torch")
    defaults = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]).defaults
    opt = optim.adam()
    assert (opt.lr, (opt.b1, opt.b2), opt.eps, opt.weight_decay, opt.decoupled) == (
        defaults["lr"], defaults["betas"], defaults["eps"], defaults["weight_decay"], False)


def test_adamw_is_decoupled_adam_with_torchs_defaults():
    """adamw(...) is adam(..., decoupled=True) argument for argument, and adamw() is
    torch.optim.AdamW with no arguments (its weight decay 0.01), read from PyTorch."""
    assert optim.adamw(0.5, 0.6, 0.7, 0.8, 0.9) == optim.adam(0.5, 0.6, 0.7, 0.8, 0.9,
                                                              decoupled=True)
    torch = pytest.importorskip("torch")
    defaults = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults
    opt = optim.adamw()
    assert (opt.lr, (opt.b1, opt.b2), opt.eps, opt.weight_decay, opt.decoupled) == (
        defaults["lr"], defaults["betas"], defaults["eps"], defaults["weight_decay"], True)


@pytest.mark.parametrize(("kind", "hp"), CASES)
def test_update_lr_overrides_the_optimizers_own(kind, hp):
    """update(..., lr=x), as fit's schedules call it with a traced lr, is exactly the step of
    the same optimizer built with lr=x."""
    rng = np.random.default_rng(2)
    params = ((jnp.asarray(rng.normal(size=(3, 2))), jnp.asarray(rng.normal(size=(3, 1)))),)
    grads = ((jnp.asarray(rng.normal(size=(3, 2))), jnp.asarray(rng.normal(size=(3, 1)))),)
    opt, other = make(kind, hp), make(kind, {**hp, "lr": 0.5 * hp["lr"]})
    got = opt.update(grads, opt.init(params), params, lr=other.lr)
    want = other.update(grads, other.init(params), params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_adam_counts_steps_in_integers():
    """The step count t of β^t is an int32 (exact for 2^31 steps; a float32 count would stop
    at 2^24), kept so by the update and by a checkpoint."""
    params = ((jnp.zeros((2, 3)), jnp.zeros((2, 1))),)
    opt = optim.adam()
    state = opt.init(params)
    assert state.count.dtype == jnp.int32
    _, state = opt.update(params, state, params)
    assert state.count.dtype == jnp.int32 and int(state.count) == 1


# Each registered optimizer with every hyperparameter switched on: a new entry of the registry
# must be added here (the first test says so), which runs it through the tests below.
EXERCISED = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "adam": {"lr": 1e-2, "b1": 0.8, "b2": 0.99, "eps": 1e-6, "weight_decay": 0.1},
    "adamw": {"lr": 1e-2, "weight_decay": 0.1},
}


def test_every_registered_optimizer_is_exercised():
    assert set(EXERCISED) == set(optim.OPTIMIZERS)
    for name, entry in optim.OPTIMIZERS.items():
        assert isinstance(entry.factory(**EXERCISED[name]), entry.cls)


def _tree_and_grads(seed):
    rng = np.random.default_rng(seed)
    shapes = [((4, 3), (4, 1)), ((2, 4), (2, 1))]
    tree = tuple((jnp.asarray(rng.normal(size=w)), jnp.asarray(rng.normal(size=b)))
                 for w, b in shapes)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), tree)
             for _ in range(3)]
    return tree, grads


@pytest.mark.parametrize("name", sorted(EXERCISED))
def test_the_update_on_one_flat_vector_equals_the_update_on_the_tree(name):
    """`fit` hands the optimizer its parameters, gradients and moments as one vector each
    (`backends.flat`), `train_step` as the tree: every registered optimizer must give the same
    numbers both ways, bit for bit, over three steps (float64)."""
    from jax.flatten_util import ravel_pytree

    from jaxbp.backends import flat

    opt = optim.OPTIMIZERS[name].factory(**EXERCISED[name])
    tree, grads = _tree_and_grads(0)
    unflat = ravel_pytree(tree)[1]
    p_tree, s_tree = tree, opt.init(tree)
    p_flat, s_flat = flat(tree), opt.init(flat(tree))
    for g in grads:
        p_tree, s_tree = opt.update(g, s_tree, p_tree)
        p_flat, s_flat = opt.update(flat(g), s_flat, p_flat)
        for a, b in zip(jax.tree.leaves(p_tree), jax.tree.leaves(unflat(p_flat)), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(flat(p_tree), flat(tree))  # the steps moved the parameters


@pytest.mark.parametrize("name", sorted(EXERCISED))
def test_check_accepts_the_init_state_and_refuses_another(name):
    """`optim.check` compares a state with what `opt.init(params)` gives: the same NamedTuple,
    structure, shapes and dtypes; another optimizer's state, another network's or another
    dtype's is refused naming `state`."""
    opt = optim.OPTIMIZERS[name].factory(**EXERCISED[name])
    tree, _ = _tree_and_grads(1)
    optim.check(opt, opt.init(tree), tree)
    others = [opt.init(tree[:1]), opt.init(jax.tree.map(lambda x: x.astype(jnp.float32), tree))]
    others += [o.init(tree) for o in (optim.sgd(0.1), optim.adam())
               if type(o.init(tree)) is not type(opt.init(tree))]
    state = opt.init(tree)
    leaves, structure = jax.tree.flatten(state)
    if leaves:  # a Python number where an array belongs
        others.append(jax.tree.unflatten(structure, [0.0, *leaves[1:]]))
    others.append(type(state)(*[[1.0, 2.0] for _ in state]))  # lists, not arrays
    for state in others:
        with pytest.raises(ValueError, match=r"^state: expected the \w+State of opt.init"):
            optim.check(opt, state, tree)


@pytest.mark.parametrize("name", sorted(EXERCISED))
def test_a_checkpoint_restores_every_registered_optimizer(name, tmp_path):
    """Checkpoints name the optimizer's class and store its fields; loading gives back an
    equal optimizer through the registry's factory (AdamW: the Adam class, decoupled)."""
    import jaxbp

    opt = optim.OPTIMIZERS[name].factory(**EXERCISED[name])
    net = jaxbp.MLP((3, 2, 1))
    params = jaxbp.init(net, jax.random.key(0))
    jaxbp.save_checkpoint(tmp_path / "c.npz", net=net, params=params, opt=opt,
                          opt_state=opt.init(params))
    assert jaxbp.load_checkpoint(tmp_path / "c.npz").opt == opt
