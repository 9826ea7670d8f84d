"""Test-session settings: strict promotion and 64-bit types on.

Strict rank promotion turns a (n,) bias broadcast against an (n, m) batch into an error instead
of a silent (n, n) bug; strict dtype promotion stops float32 and float64 from mixing unnoticed.
x64 is on so the oracle tests can run in float64; float32 tests ask for float32 explicitly.
"""

import os

# Several test processes may share one GPU: allocate memory on demand, not 75% up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # importing starts no backend: XLA_FLAGS is read when one starts

from jaxbp.backends import deterministic_gpu_ops

# Deterministic GPU kernels in this process and the processes the tests start (a resumed run
# compared with an uninterrupted one, the CLI): a no-op on CPU.
deterministic_gpu_ops()

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_enable_x64", True)
