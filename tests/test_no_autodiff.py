"""Automatic differentiation never runs inside jaxbp/: not in its source, not at run time."""

import io
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from autodiff_guard import AutodiffCalled, ad, autodiff_uses, install, jax_api, jet
from jax._src import core

import jaxbp
import jaxbp.sklearn
from jaxbp.explain import explain

PACKAGE = pathlib.Path(jaxbp.__file__).parent
# The hidden activations the README documents, written out here: not read from the code under
# test, where one removed would silently leave the tests that loop over them.
HIDDEN = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "softplus", "identity")

# Each must be flagged by the source scan.
SPELLINGS = (
    "jax.grad(f)", "from jax import vjp", "from jax import value_and_grad as v",
    "@jax.custom_jvp\ndef f(x): return x", "import jax.linearize", "jax.checkpoint(f)",
    "api.jvp(f, x, t)", "import jax as j\nj.grad(f)", "import jax as j\nj.remat(f)",
    "from jax import checkpoint as c", "from jax import remat", "jax.custom_gradient(f)",
    "jax.closure_convert(f, x)", "jax.api.vjp(f, x)", "from jax import *",
    "jax.saved_input_vjp(f)", "jax.checkpoint_policies.nothing_saveable",
    # computed names and dynamic imports
    'getattr(jax, "gr" + "ad")(f)', 'import jax\ngetattr(jax, "grad")(f)', 'getattr(obj, "vjp")',
    "import jax.numpy as jnp\ngetattr(jnp, name)", "import builtins\nbuiltins.getattr(jax, n)",
    'import importlib\nimportlib.import_module("jax._src.api")',
    'import importlib\nm = importlib.import_module("ja" + "x")',
    "from importlib import import_module as im\nim(name)", '__import__("jax").grad(f)',
    "__import__(name)", 'import jax\nvars(jax)["grad"]', 'jax.__dict__["grad"]',
    'import sys\nsys.modules["jax"]', 'import operator\noperator.attrgetter("g")(jax)',
    "import functools\nfunctools.partial(getattr, jax)(n)", "g = getattr", 'eval("jax.grad")',
    "exec(s)", "import jax\nm = jax\nn = m.lax\nn.stop_gradient(x)",
    # jet, and JAX's internals
    "import jax\njax.experimental.jet.jet(f, x, s)", "from jax.experimental import jet",
    "from jax.experimental.jet import jet", "import jax._src.interpreters.ad",
    "from jax._src.interpreters import ad", "from jax._src import api",
    "from jax.interpreters import ad", "import jax\njax._src.api.vjp(f, x)",
    "import jax.ad_checkpoint", "from jax.ad_checkpoint import checkpoint_name",
)
# None of this may be flagged: it is what jaxbp legitimately does.
LEGITIMATE = """
grads = backward(net, params, cache, Y)
grad_norm = 1
def fit(checkpoint=None): checkpoint(1)
self.checkpoint = 2
from jaxbp import checkpoint as ckpt
import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.scipy.special import erf
from jax.sharding import PartitionSpec as P
jax.lax.platform_dependent(x, cpu=f, default=g)
jax.vmap(f); lax.scan(f, c, xs); jax.jit(f); jax.shard_map(f); jax.random.key(0)
jax.tree.map(f, t); jax.dtypes.issubdtype(a, b); jax.sharding.Mesh(d, a); jax.nn.sigmoid(z)
jax.distributed.initialize(); jax.eval_shape(f, x); jax.device_put(x); jax.flatten_util.x
isinstance(x, jax.core.Tracer); isinstance(x, jax.Array); jax.config.update("a", 1)
jnp.gradient(x); jnp.transpose(x); jax.__version__
getattr(self, name); getattr(ckpt.net, f); getattr(sklearn.datasets, f"load_{name}")()
import importlib
importlib.import_module("mnist1d.data")
jax.jit(f).lower(x).compile()
"""


def test_the_scanner_sees_autodiff():
    """The check below would catch each way of spelling it, and none of jaxbp's own code."""
    missed = [src for src in SPELLINGS if not autodiff_uses(src)]
    assert not missed
    assert not autodiff_uses(LEGITIMATE)


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


def test_the_hidden_activations_are_the_documented_ones():
    """An activation added to or removed from jaxbp fails here, not silently elsewhere."""
    assert sorted(jaxbp.activations.HIDDEN) == sorted(HIDDEN)
    assert set(HIDDEN) <= set(jaxbp.activations.ACTIVATIONS) & set(jaxbp.activations.DERIVATIVES)


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_compiled_step_has_no_custom_derivative_rules(output):
    """The traced step is lax primitives only: no custom_jvp/custom_vjp rule anywhere in it."""
    for hidden in HIDDEN:
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


# --- at run time: JAX's differentiation machinery made to raise -----------------------------------
# References taken now, before any patch: code holding one bypasses a patched public name.
SAVED_GRAD, SAVED_JVP, SAVED_API_VJP = jax.grad, jax.jvp, jax_api.vjp
SAVED_LINEAR_TRANSPOSE, SAVED_JET, SAVED_JVP_TRACE = jax.linear_transpose, jet.jet, ad.JVPTrace


@jax.custom_vjp
def sin_with_rule(x):
    return jnp.sin(x)


sin_with_rule.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))


def new_jvp_trace():
    with core.take_current_trace() as parent:
        return SAVED_JVP_TRACE(parent, core.TraceTag())


@pytest.fixture
def no_autodiff(monkeypatch):
    """The guard, for one test; it fails if anything attempted autodiff, even if swallowed."""
    hits = install(monkeypatch)
    yield hits
    assert not hits, f"automatic differentiation was attempted: {hits}"


@pytest.mark.parametrize("names", [True, False], ids=["all", "machinery-only"])
def test_the_guard_is_live(monkeypatch, names):
    """Under the guard every way into differentiation raises: the public names, references
    saved before the patch, and (with `names` False: only the traces and rule tables patched)
    each of them through the machinery alone. Calls that do not differentiate still work."""
    hits = install(monkeypatch, names=names)
    attempts = {
        "jax.grad": lambda: jax.grad(jnp.sin)(1.0),
        "saved jax.grad under jit": lambda: jax.jit(SAVED_GRAD(jnp.cos))(2.0),
        "saved jax.jvp of a custom_jvp function": lambda: SAVED_JVP(
            jax.nn.relu, (1.0,), (1.0,)),
        "saved jax._src.api.vjp": lambda: SAVED_API_VJP(jnp.sin, 1.0),
        "saved vjp of a custom_vjp function": lambda: SAVED_API_VJP(sin_with_rule, 1.0),
        "saved jax.linear_transpose": lambda: SAVED_LINEAR_TRANSPOSE(lambda x: 2 * x, 1.0)(1.0),
        "saved jet": lambda: SAVED_JET(jnp.sin, (1.0,), ((1.0,),)),
        "a JVP trace built by hand": new_jvp_trace,
    }
    for what, attempt in attempts.items():
        with pytest.raises(AutodiffCalled):
            attempt()
        assert hits, what
        hits.clear()
    # Functions with custom rules, called and compiled without differentiating them.
    x = jnp.linspace(-2.0, 2.0, 17)
    f = jax.jit(lambda z: jax.nn.relu(z) + jax.nn.gelu(z) + jax.nn.softplus(z) + sin_with_rule(z))
    assert np.all(np.isfinite(f(x)))
    assert not hits
    monkeypatch.undo()  # and nothing is left patched for the tests that follow
    assert jax.grad(jnp.sin)(1.0) == pytest.approx(np.cos(1.0))
    assert SAVED_API_VJP(sin_with_rule, 1.0)[1](1.0)[0] == pytest.approx(np.cos(1.0))
    assert SAVED_JET(jnp.sin, (1.0,), ((1.0,),))[1][0] == pytest.approx(np.cos(1.0))


def tiny_problem(sizes, output, m, seed):
    """A net, float64 params, and column-major X (n_0, m), Y (n_L, m)."""
    net = jaxbp.MLP(sizes, hidden="gelu", output=output)
    params = jaxbp.init(net, jax.random.key(seed), dtype="float64")
    X = jnp.asarray(np.random.default_rng(seed).normal(size=(sizes[0], m)))
    Y = jnp.eye(sizes[-1])[:, jnp.arange(m) % sizes[-1]]
    return net, params, X, Y


def finite(tree):
    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(tree))


def test_steps_run_under_the_guard(no_autodiff):
    net, params, X, Y = tiny_problem((7, 5, 3, 2), "softmax", 11, 3)
    opt = jaxbp.optim.adam(1e-2)
    state = opt.init(params)
    costs = []
    for _ in range(3):
        params, state, J = jaxbp.train_step(net, opt, params, state, X, Y)
        costs.append(float(J))
    assert costs[-1] < costs[0]
    A_L, cache = jaxbp.forward(net, params, X)
    assert finite((A_L, jaxbp.backward(net, params, cache, Y)))
    assert finite(jaxbp.per_sample.per_example_grads(net, params, X, Y))
    sgd = jaxbp.optim.sgd(1e-2)
    for epoch in (jaxbp.per_sample.sgd_epoch_scan, jaxbp.per_sample.sgd_epoch_loop):
        fresh = jax.tree.map(jnp.copy, params)  # the epochs donate their params
        assert finite(epoch(net, sgd, fresh, sgd.init(fresh), X, Y))
    mesh = jaxbp.parallel.data_mesh()
    params, state, J = jaxbp.parallel.train_step(net, opt, params, state, X, Y, mesh)
    assert finite((params, state, J))
    y = np.arange(11) % 2
    assert np.isfinite(jaxbp.evaluate(net, params, X.T, y)["cost"])
    assert finite(jaxbp.predict(net, params, X.T))
    assert "network" in explain(file=io.StringIO())


def test_fit_runs_under_the_guard(no_autodiff):
    net = jaxbp.MLP((6, 9, 3), hidden="softplus", output="softmax")
    X = np.random.default_rng(5).normal(size=(40, 6))
    y = np.arange(40) % 3
    result = jaxbp.fit(net, X, y, epochs=2, batch_size=8, dropout=0.2, alpha=1e-3,
                       validation_fraction=0.25, early_stopping=True, progress=False)
    assert finite(result.params) and np.all(np.isfinite(result.history["val_cost"]))
    result = jaxbp.fit(net, X, y, epochs=2, batch_size=8, progress=False,
                       mesh=jaxbp.parallel.data_mesh())
    assert finite(result.params) and result.epochs_run == 2


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=2
@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_the_estimators_run_under_the_guard(no_autodiff, kind):
    X = np.random.default_rng(6).normal(size=(30, 5))
    y = np.arange(30) % 2 if kind == "MLPClassifier" else X[:, 0] - X[:, 1]
    est = getattr(jaxbp.sklearn, kind)(hidden_layer_sizes=(6, 4), max_iter=2, alpha=1e-3,
                                       early_stopping=True, random_state=0)
    est.fit(X, y)
    assert finite(est.predict(X))
    partial = getattr(jaxbp.sklearn, kind)(hidden_layer_sizes=(6, 4), random_state=0)
    extra = {"classes": np.array([0, 1])} if kind == "MLPClassifier" else {}
    partial.partial_fit(X, y, **extra)
    partial.partial_fit(X, y)
    assert finite(partial.predict(X))
    lbfgs = getattr(jaxbp.sklearn, kind)(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=3,
                                         alpha=1e-3, random_state=0).fit(X, y)
    assert finite(lbfgs.predict(X)) and lbfgs.n_iter_ == 3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=2
def test_populations_searches_and_ensembles_run_under_the_guard(no_autodiff):
    """`fit_population` (its members' own optimizer settings and dropout traced, validation,
    early stopping, hooks), `jaxbp.sklearn.GridSearchCV` and an ensemble estimator."""
    X = np.random.default_rng(7).normal(size=(40, 5))
    y = np.arange(40) % 3
    net = jaxbp.MLP((5, 6, 3), hidden="tanh", output="softmax")
    opts = [jaxbp.optim.adam(1e-2, b1=b1) for b1 in (0.9, 0.8)] + [jaxbp.optim.sgd(0.1, 0.5)]
    res = jaxbp.fit_population(net, X, y, keys=range(3), opt=opts, dropout=[0.1, 0.2, 0.0],
                               epochs=2, batch_size=8, validation_fraction=0.25,
                               early_stopping=True, on_epoch_end=lambda r, e: r.params,
                               progress=False)
    assert finite(res.params) and np.all(np.isfinite(res.history["val_cost"]))
    est = jaxbp.sklearn.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    search = jaxbp.sklearn.GridSearchCV(est, {"beta_1": [0.9, 0.8]}, cv=2).fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    ensemble = est.set_params(ensemble=2).fit(X, y)
    assert finite(ensemble.predict_proba(X))
