"""What a GPU would compile and compute, checked on a CPU: matmul precision in every compiled
entry point, the CUDA form of the step (exported for CUDA from this host), and TF32 rounding
simulated on the CPU (tests/tf32.py) against the float32 oracle tolerance."""

import importlib
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracle import assert_matches, oracle
from test_oracle import make_problem, on_gpu
from tf32 import round_tf32

import jaxbp
from jaxbp import api, parallel, per_sample, sklearn
from jaxbp.backends import deterministic_gpu_ops

fit = importlib.import_module("jaxbp.fit")  # the module (jaxbp.fit is also the function)

# policy -> (MLP keyword arguments, the precision every dot_general must carry)
POLICIES = {
    "float32": ({}, "HIGHEST"),
    "tf32": ({"precision": "tf32"}, "DEFAULT"),
    "bfloat16": ({"matmul_dtype": "bfloat16"}, "DEFAULT"),
}


def dot_precisions(hlo_text):
    """The operand precisions of every dot_general in a StableHLO module (StableHLO's default,
    DEFAULT, where none is written, as in serialized modules)."""
    dots = re.findall(r"stablehlo\.dot_general[^\n]*", hlo_text)
    found = [re.search(r"precision = \[(\w+), (\w+)\]", d) for d in dots]
    return [m.groups() if m else ("DEFAULT", "DEFAULT") for m in found]


def _problem(policy, m=6):
    net = jaxbp.MLP((5, 8, 7, 3), hidden="tanh", output="softmax", **POLICIES[policy][0])
    params = jaxbp.init(net, jax.random.key(0), dtype="float32")
    X = jnp.asarray(np.random.default_rng(0).normal(size=(5, m)), jnp.float32)
    Y = jnp.asarray(np.eye(3)[:, np.arange(m) % 3], jnp.float32)
    return net, params, X, Y


def _lowered(entry, net, params, X, Y):
    """The StableHLO of one compiled entry point of jaxbp, lowered for this net and batch."""
    opt = jaxbp.optim.adam(1e-3)
    state, w = opt.init(params), jnp.ones((1, X.shape[1]), X.dtype)
    _, cache = api._forward(net, params, X)
    args = {
        "forward": (api._forward, net, params, X),
        "backward": (api._backward, net, params, cache, Y),
        "train_step_jit": (jaxbp.train_step_jit, net, opt, params, state, X, Y),
        "fit epoch": (fit._epoch, net, opt, fit._Static(4, True, 0.1, True), params, state,
                      X, Y, w[0], jax.random.key(0), np.int32(0), np.float32(1e-3),
                      np.float32(1e-4)),
        "evaluate": (fit._evaluate, net, params, X, Y),
        "predict": (api._forward_rows, net, params, X),
        "per-example step": (per_sample._example_step, net, opt, params, state, X, Y, 0),
        "per-example scan": (per_sample._epoch_scan, net, opt, params, state, X, Y),
        "per-example grads": (per_sample._per_example_grads, net, params, X, Y),
        "data parallel step": (parallel._sharded_step, net, opt, parallel.data_mesh(), params,
                               state, X, Y, w),
        "estimator logits": (sklearn._output_logits, net, params, X.T),
        "estimator cost": (sklearn._outputs_and_cost, net, params, X.T, Y, w),
    }[entry]
    return args[0].lower(*args[1:]).as_text()


ENTRIES = ["forward", "backward", "train_step_jit", "fit epoch", "evaluate", "predict",
           "per-example step", "per-example scan", "per-example grads", "data parallel step",
           "estimator logits", "estimator cost"]


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("entry", ENTRIES)
def test_every_dot_has_the_requested_precision(entry, policy):
    """Each compiled program asks for the policy's precision on every matmul: HIGHEST (true
    float32) by default, DEFAULT (TF32 on a GPU) only when asked for."""
    net, params, X, Y = _problem(policy)
    precisions = dot_precisions(_lowered(entry, net, params, X, Y))
    want = POLICIES[policy][1]
    assert precisions, f"{entry}: no dot_general found"
    assert all(p == (want, want) for p in precisions), f"{entry}: {precisions}"


def test_the_parser_reads_what_jax_writes():
    a, b = jnp.ones((2, 3)), jnp.ones((3, 4))
    for precision, want in ((None, "DEFAULT"), ("highest", "HIGHEST"), ("high", "HIGH")):
        dot = lambda a, b, p=precision: jnp.matmul(a, b, precision=p)  # noqa: E731
        text = jax.jit(dot).lower(a, b).as_text()
        assert dot_precisions(text) == [(want, want)], precision


@pytest.mark.parametrize("policy", ["float32", "tf32"])
def test_step_exported_for_cuda_takes_the_gpu_form(policy):
    """`jax.export` for CUDA on this CPU host: the CPU-only transposed-W barrier is absent, the
    precision is the policy's; exported for CPU, the barrier is there (the branch follows
    the compile target, not the process's backend)."""
    net, params, X, Y = _problem(policy)
    opt = jaxbp.optim.sgd(0.1)
    args = (net, opt, params, opt.init(params), X, Y)
    cuda = jax.export.export(jaxbp.train_step_jit, platforms=["cuda"])(*args)
    assert cuda.platforms == ("cuda",)
    text = cuda.mlir_module()
    assert "optimization_barrier" not in text
    want = POLICIES[policy][1]
    assert dot_precisions(text) and set(dot_precisions(text)) == {(want, want)}
    cpu = jax.export.export(jaxbp.train_step_jit, platforms=["cpu"])(*args)
    assert "optimization_barrier" in cpu.mlir_module()
    both = jax.export.export(jaxbp.train_step_jit, platforms=["cpu", "cuda"])(*args)
    assert both.platforms == ("cpu", "cuda")  # one module, the branch chosen when it runs


def test_round_tf32_keeps_ten_mantissa_bits():
    x = jnp.asarray([1.0 + 2.0 ** -10, 1.0 + 2.0 ** -11 + 2.0 ** -12, 3.0], jnp.float32)
    np.testing.assert_array_equal(round_tf32(x), [1.0 + 2.0 ** -10, 1.0 + 2.0 ** -10, 3.0])


NETS = [((5, 4, 6, 3), "relu", "softmax"), ((5, 6, 3), "tanh", "sigmoid"),
        ((5, 4, 6, 4, 3), "gelu", "identity")]


@pytest.mark.parametrize(("sizes", "hidden", "output"), NETS)
def test_tf32_breaks_the_float32_tolerance_and_the_default_holds_it(sizes, hidden, output):
    """Simulated on the CPU, a GPU's TF32 matmuls take jaxbp's float32 gradients outside the
    float32 oracle tolerance (rtol 1e-4; TF32 rounds each operand by up to 2^-11 ≈ 4.9e-4),
    so a regression of the default policy to DEFAULT precision fails the suite; the default
    policy (HIGHEST) stays within it. Every float32 oracle case in test_oracle.py runs
    through the same simulation."""
    m = 64
    for precision, within in (("float32", True), ("tf32", False)):
        net = jaxbp.MLP(sizes, hidden=hidden, output=output, precision=precision)
        want = oracle(net, *make_problem(net, m, "float64"))
        got = on_gpu(net, *make_problem(net, m, "float32"))
        if within:
            assert_matches(got, want, "float32")
        else:
            with pytest.raises(AssertionError):
                assert_matches(got, want, "float32")


@pytest.mark.skipif(jax.default_backend() == "cpu", reason="needs an accelerator (GPU)")
def test_data_parallel_step_on_every_local_accelerator():
    """Multi-GPU smoke test: `parallel.train_step` over all local accelerators (one is
    enough) equals the single-device step."""
    net, params, X, Y = _problem("float32", m=64)
    opt = jaxbp.optim.sgd(0.1)
    copy = lambda t: jax.tree.map(jnp.array, t)  # noqa: E731  (params are donated)
    p1, _, J1 = jaxbp.train_step(net, opt, copy(params), opt.init(params), X, Y)
    mesh = parallel.data_mesh(jax.local_devices())
    p2, _, J2 = parallel.train_step(net, opt, copy(params), opt.init(params), X, Y, mesh)
    np.testing.assert_allclose(float(J2), float(J1), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p2), jax.tree.leaves(p1), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_deterministic_gpu_ops_flag():
    """Added to XLA_FLAGS unless already set either way; the test session runs with it."""
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert deterministic_gpu_ops(env) == ("--xla_force_host_platform_device_count=2 "
                                          "--xla_gpu_deterministic_ops=true")
    assert env["XLA_FLAGS"].endswith("--xla_gpu_deterministic_ops=true")
    off = {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"}
    assert deterministic_gpu_ops(off) == "--xla_gpu_deterministic_ops=false"
    empty = {}
    assert deterministic_gpu_ops(empty) == "--xla_gpu_deterministic_ops=true" == empty["XLA_FLAGS"]
    assert "--xla_gpu_deterministic_ops=true" in os.environ["XLA_FLAGS"]
