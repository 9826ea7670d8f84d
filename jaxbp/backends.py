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
