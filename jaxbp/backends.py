"""What differs between backends, and the switch that makes GPU runs reproducible.

Bit for bit, jaxbp reproduces a run on the same backend and device kind, with the same jax and
jaxlib versions and XLA flags: the same key gives the same parameters, and a resumed run
continues exactly as the uninterrupted one. On a CPU that holds as it is. On a GPU, XLA's
autotuner may pick a different GEMM algorithm in another process, and some kernels (scatter,
reductions by atomics) add in an order that varies from run to run; XLA's flag
`--xla_gpu_deterministic_ops=true` makes it choose deterministic ones. The epoch order (a
Philox stream, `fit._shuffle`) and dropout masks (threefry) are the same on every backend;
the parameters are not: float32 sums round differently on different hardware.
"""

import os

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
