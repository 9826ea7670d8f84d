"""Test-session settings: strict promotion and 64-bit types on.

Strict rank promotion turns a (n,) bias broadcast against an (n, m) batch into an error instead
of a silent (n, n) bug; strict dtype promotion stops float32 and float64 from mixing unnoticed.
x64 is on so the oracle tests can run in float64; float32 tests ask for float32 explicitly.
"""

import getpass
import importlib
import os
import tempfile

# Several test processes may share one GPU: allocate memory on demand, not 75% up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# One persistent compilation cache for the session, its xdist workers and the processes the
# tests start (the CLI's subprocesses compile the same programs test after test). JAX keys an
# entry by the program itself (and its version and flags), so a changed program is compiled
# anew: the cache saves time, it cannot change a result. Not under mutmut (its own is below);
# JAXBP_TEST_COMPILATION_CACHE=0 turns it off.
_MUTANT = os.environ.get("MUTANT_UNDER_TEST")
if not _MUTANT and os.environ.get("JAXBP_TEST_COMPILATION_CACHE", "1") != "0":
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
        tempfile.gettempdir(), f"jaxbp-test-compilation-cache-{getpass.getuser()}"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
elif not _MUTANT:  # nor jaxbp's own default cache (jaxbp.backends.compilation_cache)
    os.environ.setdefault("JAXBP_COMPILATION_CACHE", "off")

# (imports after the environment above: JAX reads it on import)
import jax  # noqa: E402  (importing starts no backend: XLA_FLAGS is read when one starts)
import pytest  # noqa: E402

from jaxbp.backends import deterministic_gpu_ops  # noqa: E402

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

# Mutation testing (docs/mutation.md). mutmut runs each mutant in a fresh process with
# MUTANT_UNDER_TEST set; "stats" is its one traced run that learns which tests call which
# function.
if _MUTANT:
    # A persistent compilation cache shared by the mutant processes: a program a mutant leaves
    # unchanged is compiled once for the whole run, not once per mutant (a changed program has
    # another key, so it is compiled anew). Under mutants/, deleted with it.
    _CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax-cache")
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@pytest.fixture(autouse=True)
def _fresh_traces_for_mutation_stats():
    """In mutmut's stats run only, forget every traced function after each test.

    A jitted function's Python body runs only when JAX traces it, so without this the stats
    credit a function to the first test that traces it for a given network and shape, and the
    tests served from the trace cache never run against its mutants.
    """
    yield
    if _MUTANT == "stats":
        jax.clear_caches()
