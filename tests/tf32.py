"""A CPU stand-in for what an NVIDIA GPU does to float32 matmuls: the one TF32 hook of the tests.

On Ampere and newer GPUs, XLA runs a float32 `dot_general` whose precision is DEFAULT or HIGH
on the tensor cores as TF32: each operand is rounded to a 10-bit mantissa (8-bit exponent, as
float32) and the products are accumulated in float32. Only HIGHEST keeps true float32. A CPU
computes every float32 dot in float32, so a dot compiled at the wrong precision passes a CPU
test that a GPU would fail (relative errors ~1e-3 instead of ~1e-7).

`as_on_gpu(fun)` traces `fun` to a jaxpr and evaluates it, rounding the float32 operands of
every dot_general that a GPU would run as TF32 (precision DEFAULT, HIGH, or unset and not
raised by `jax.default_matmul_precision`) with `lax.reduce_precision(x, 8, 10)` before the dot.
It looks inside nested jitted calls (`jit`; `pjit` in older jax) and leaves every other
primitive as it is. What it reads is the precision that the traced program really asks for,
so it catches a dot anywhere in the program, not only in `jaxbp.backprop.matmul`.
"""

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core

TF32 = {"exponent_bits": 8, "mantissa_bits": 10}


def runs_as_tf32(precision):
    """Whether a GPU runs a float32 dot_general with this `precision` parameter as TF32."""
    if precision is None:
        precision = jax.config.jax_default_matmul_precision  # None, or a name such as "highest"
        return precision is None or str(precision).lower() not in ("highest", "float32")
    if isinstance(precision, tuple):  # one per operand: true float32 if either asks for it
        return lax.Precision.HIGHEST not in precision
    return precision != lax.Precision.HIGHEST


def round_tf32(x):
    return lax.reduce_precision(x, **TF32) if x.dtype == jnp.float32 else x


def _eval(jaxpr, consts, *args):
    env = {}

    def read(v):
        return v.val if isinstance(v, core.Literal) else env[v]

    for v, x in zip(jaxpr.constvars, consts, strict=True):
        env[v] = x
    for v, x in zip(jaxpr.invars, args, strict=True):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive.name == "dot_general" and runs_as_tf32(eqn.params["precision"]):
            invals = [round_tf32(x) for x in invals]
        if eqn.primitive.name in ("jit", "pjit"):  # a nested jitted call: look inside
            inner = eqn.params["jaxpr"]
            outs = _eval(inner.jaxpr, inner.consts, *invals)
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            subfuns, params = params if isinstance(params, tuple) else ((), params)  # jax < 0.8
            outs = eqn.primitive.bind(*subfuns, *invals, **params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        for v, x in zip(eqn.outvars, outs, strict=True):
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def as_on_gpu(fun):
    """`fun` as an Ampere-or-newer GPU would compute it (see the module docstring), jitted."""

    @jax.jit
    def run(*args):
        closed, shape = jax.make_jaxpr(fun, return_shape=True)(*args)
        outs = _eval(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shape), outs)

    return run
