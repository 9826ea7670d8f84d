"""What differs between backends, and the switch that makes GPU runs reproducible.

Bit for bit, jaxbp reproduces a run on the same backend and device kind, with the same jax and
jaxlib versions and XLA flags: the same key gives the same parameters, and a resumed run
continues exactly as the uninterrupted one. On a CPU that holds as it is. On a GPU, XLA's
autotuner may pick a different GEMM algorithm in another process, and some kernels (scatter,
reductions by atomics) add in an order that varies from run to run; XLA's flag
`--xla_gpu_deterministic_ops=true` makes it choose deterministic ones. The epoch order (a
Philox stream, `fit._shuffle`) and dropout masks (threefry) are the same on every backend;
the parameters are not: float32 sums round differently on different hardware.

Choices made for XLA's CPU backend, and what they do elsewhere:
- `backprop.transposed` materialises W^lᵀ behind an optimization barrier on CPU only, chosen
  by `lax.platform_dependent` from the platform the program is compiled for (an export for
  CUDA from a CPU host takes the GPU form: W.T inside the matmul).
- `backprop.in_place` (gradients ordered after the reads of W^l, so a scan of steps updates
  the weights in place) and `fit._flat` (one flat vector built with dynamic_update_slice)
  were measured on CPU; they compute the same numbers and are kept on every backend.
- `fit._shuffle` (one sort of random words) is kept on every backend so that the epoch order
  is the same everywhere.

The persistent compilation cache (`compilation_cache`): `fit`, the estimators and the CLI turn
on JAX's on-disk cache of compiled programs, so that a second process (the next `jaxbp train`,
the next script that fits an estimator) loads what the first compiled instead of compiling it
again. JAX keys an entry by the program, its devices, the jax/jaxlib versions and the XLA
flags: a cached program is the program that would have been compiled, so results cannot change.
"""

import os
import threading

DETERMINISTIC_GPU_OPS = "--xla_gpu_deterministic_ops"


def deterministic_gpu_ops(environ=os.environ):
    """Ask XLA for deterministic GPU kernels: add `--xla_gpu_deterministic_ops=true` to
    XLA_FLAGS in `environ`, unless it already says either way. XLA reads XLA_FLAGS when a
    backend starts, so call this before the first JAX computation of the process (its child
    processes inherit it). Harmless on a CPU. Returns the resulting XLA_FLAGS."""
    flags = environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_GPU_OPS not in flags:
        flags = f"{flags} {DETERMINISTIC_GPU_OPS}=true".strip()
        environ["XLA_FLAGS"] = flags
    return flags


# --- the persistent compilation cache ----------------------------------------------------------
CACHE_ENV = "JAXBP_COMPILATION_CACHE"  # a directory, or 0/off/false/none: no cache
# Programs that compile faster than this are not written. JAX's default, 1 s, would leave out
# most of jaxbp's (an epoch of a small network compiles in 0.2-1 s on a 2-core CPU), and even
# the small ones add up: an estimator's first fit on digits, in a second process, took 1.1 s
# with 0.1 here (6 entries) and 0.7 s with 0 (38 entries, 0.3 MB); the first process pays
# ~0.2 s to write them (2-core Xeon, 2026-12-02).
MIN_COMPILE_SECS = 0.0
# At most this much on disk, least recently used entries evicted first; entries are read and
# written under a file lock (the `filelock` package), so processes may share the directory.
MAX_BYTES = 1 << 30
_OFF = ("0", "off", "false", "none", "")
_decided: list = []  # the directory chosen by the process's first call (None: off)
_lock = threading.Lock()


def default_cache_dir(environ=os.environ):
    """$XDG_CACHE_HOME/jaxbp/compilation, or ~/.cache/jaxbp/compilation."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxbp", "compilation")


def compilation_cache(path=None, environ=os.environ):
    """Turn on JAX's persistent compilation cache, once per process; returns its directory,
    or None when it is off.

    `path`: a directory, or False to leave the cache off. None (what `fit`, the estimators
    and the CLI pass) means: the first call decides, from $JAXBP_COMPILATION_CACHE (a
    directory, or 0/off to turn it off), else `default_cache_dir()`; later calls keep that
    choice. A cache directory the user gave JAX itself (`JAX_COMPILATION_CACHE_DIR`,
    `jax.config.update("jax_compilation_cache_dir", ...)`) is left as it is and reported.
    JAX opens the directory at the first compilation after it is set: a directory given
    after that applies to the next process. A directory that cannot be created leaves the
    cache off (with a warning), never a failed run."""
    import jax

    with _lock:
        if path is None and _decided:
            return _decided[0]
        current = jax.config.jax_compilation_cache_dir
        if current and not _decided:  # the user's own setting
            _decided.append(current)
            return current
        if path is None:
            path = environ.get(CACHE_ENV, default_cache_dir(environ))
        directory = None if path is False or str(path).strip().lower() in _OFF else (
            _usable_dir(os.path.expanduser(str(path))))
        _decided[:] = [directory]
        jax.config.update("jax_compilation_cache_dir", directory)
        if directory is not None:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
            jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)  # needs filelock
        return directory


def _usable_dir(directory):
    import warnings

    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        warnings.warn(f"{CACHE_ENV}: cannot create {directory} ({e.strerror}); compiling "
                      f"without the persistent cache", RuntimeWarning, stacklevel=3)
        return None
    return directory
