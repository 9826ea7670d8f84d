"""Test-session settings: strict promotion and 64-bit types on.

Strict rank promotion turns a (n,) bias broadcast against an (n, m) batch into an error instead
of a silent (n, n) bug; strict dtype promotion stops float32 and float64 from mixing unnoticed.
x64 is on so the oracle tests can run in float64; float32 tests ask for float32 explicitly.
"""

import importlib
import os

# Several test processes may share one GPU: allocate memory on demand, not 75% up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # importing starts no backend: XLA_FLAGS is read when one starts

from jaxbp.backends import deterministic_gpu_ops

# Deterministic GPU kernels in this process and the processes the tests start (a resumed run
# compared with an uninterrupted one, the CLI): a no-op on CPU.
deterministic_gpu_ops()

# CI names the optional packages it installs (JAXBP_REQUIRE=torch,mnist1d): without one the run
# stops here, instead of its tests skipping, so a broken install cannot pass as a skip.
for _name in filter(None, os.environ.get("JAXBP_REQUIRE", "").split(",")):
    importlib.import_module(_name)

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_enable_x64", True)
