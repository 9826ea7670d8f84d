"""Automatic differentiation never runs inside jaxbp/: not in its source, not at run time."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp

PACKAGE = pathlib.Path(jaxbp.__file__).parent
AUTODIFF = {
    "grad", "value_and_grad", "vjp", "jvp", "linearize", "custom_vjp", "custom_jvp",
    "jacfwd", "jacrev", "hessian", "linear_transpose", "checkpoint", "remat",
}


GENERIC = {"checkpoint", "remat"}  # common words: flagged only as jax.checkpoint / jax.remat


def autodiff_uses(source):
    """AUTODIFF names used as attributes (jax.grad, anything.vjp) or imported by name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in AUTODIFF:
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if node.attr not in GENERIC or owner == "jax":
                found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom | ast.Import):  # imports from jax, not jaxbp
            module = getattr(node, "module", None) or ""
            from_jax = module == "jax" or module.startswith("jax.")
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[-1] in AUTODIFF
                      and (from_jax or a.name.startswith("jax."))]
    return found


def test_the_scanner_sees_autodiff():
    """The check below would catch each way of spelling it."""
    for src in ("jax.grad(f)", "from jax import vjp", "from jax import value_and_grad as v",
                "@jax.custom_jvp\ndef f(x): return x", "import jax.linearize",
                "jax.checkpoint(f)", "api.jvp(f, x, t)"):
        assert autodiff_uses(src), src
    assert not autodiff_uses("grads = backward(net, params, cache, Y)\ngrad_norm = 1\n"
                             "def fit(checkpoint=None): checkpoint(1)\nself.checkpoint = 2\n"
                             "from jaxbp import checkpoint as ckpt")


def test_no_file_under_jaxbp_uses_autodiff():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 5
    offenders = {f.name: autodiff_uses(f.read_text()) for f in files}
    assert not {k: v for k, v in offenders.items() if v}


def sub_jaxprs(value):
    """Jaxprs held in an equation's parameter (pjit's jaxpr, scan's body, cond's branches)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):  # a ClosedJaxpr
        yield value.jaxpr
    elif isinstance(value, tuple | list):
        for v in value:
            yield from sub_jaxprs(v)


def primitives(jaxpr):
    """Every primitive name in a jaxpr, sub-jaxprs included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in sub_jaxprs(value):
                names |= primitives(sub)
    return names


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_compiled_step_has_no_custom_derivative_rules(output):
    """The traced step is lax primitives only: no custom_jvp/custom_vjp rule anywhere in it."""
    for hidden in jaxbp.activations.HIDDEN:
        net = jaxbp.MLP((3, 4, 2), hidden=hidden, output=output)
        params = jaxbp.init(net, jax.random.key(0), dtype="float64")
        opt = jaxbp.optim.adam()
        Y = jnp.eye(2)[:, jnp.array([0, 1, 0])]
        jaxpr = jax.make_jaxpr(jaxbp.train_step_jit, static_argnums=(0, 1))(
            net, opt, params, opt.init(params), jnp.ones((3, 3)), Y)
        names = primitives(jaxpr.jaxpr)
        assert "dot_general" in names  # the walk reached inside the jitted function
        custom = {n for n in names if "custom" in n or "jvp" in n}
        assert not custom, (hidden, custom)


def test_train_step_runs_with_autodiff_patched_to_raise(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("automatic differentiation was called")

    for name in AUTODIFF & set(dir(jax)):
        monkeypatch.setattr(jax, name, forbidden)
    with pytest.raises(AssertionError, match="automatic differentiation"):
        jax.grad(jnp.sin)  # the patch is live

    # A net no other test uses, so everything is traced and compiled under the patch.
    net = jaxbp.MLP((7, 5, 3, 2), hidden="gelu", output="softmax")
    params = jaxbp.init(net, jax.random.key(3), dtype="float64")
    X = jnp.asarray(np.random.default_rng(3).normal(size=(7, 11)))
    Y = jnp.eye(2)[:, jnp.arange(11) % 2]
    opt = jaxbp.optim.adam(1e-2)
    state = opt.init(params)
    costs = []
    for _ in range(3):
        params, state, J = jaxbp.train_step(net, opt, params, state, X, Y)
        costs.append(float(J))
    assert costs[-1] < costs[0]
    _, cache = jaxbp.forward(net, params, X)
    jaxbp.backward(net, params, cache, Y)
    jaxbp.per_sample.per_example_grads(net, params, X, Y)
    jaxbp.per_sample.sgd_epoch_scan(net, opt, params, state, X, Y)
