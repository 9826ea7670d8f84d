"""Data parallelism on JAX's own SPMD machinery: the batch's columns are sharded over a mesh.

Each device runs the same hand-written forward and backward on its block of columns. With
example weights w (padding columns weigh 0), device d computes its gradient g_d normalised by
its own weight W_d = Σ_{i∈d} w_i; the batch gradient is then

    g = Σ_d (W_d / W) g_d,    W = Σ_d W_d,

one `psum` over the mesh axis: exactly the single-device gradient of the whole batch,
whatever the split, so a batch that does not divide evenly is padded with zero-weight columns
instead of being dropped. Parameters and optimizer state are replicated; every device applies
the same update.

    mesh = jaxbp.parallel.data_mesh()                 # all devices on one "data" axis
    params, state, J = jaxbp.parallel.train_step(net, opt, params, state, X, Y, mesh)

Several hosts: start one process per host, each calling `initialize` (JAX's
`jax.distributed.initialize`) before anything else touches JAX; `jax.devices()` then lists
every process's devices, `data_mesh()` spans them all and `fit(..., mesh=mesh)` runs as on
one host. Every process passes the same full data; each feeds its own devices their columns.
Parameters come back replicated: every process holds them, and process 0 alone should write
files (`is_main_process`). On CPU the collectives go through Gloo.
"""

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbp import optim, validate
from jaxbp.backprop import objective

AXIS = "data"


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               local_device_ids=None):
    """Join a multi-process (multi-host) run: `jax.distributed.initialize` with checks.

    coordinator_address: "host:port" of process 0, reachable from every process.
    num_processes: how many processes take part (one per host, as JAX documents).
    process_id: this process's index, 0 .. num_processes − 1; 0 coordinates.
    local_device_ids: optional, the local devices this process uses.

    What is left None JAX detects from the cluster (SLURM, Open MPI, Cloud TPU, ...), if it
    can. Call it first, before any other JAX work. Returns this process's index."""
    if coordinator_address is not None:  # "host:port"; an IPv6 host in brackets: "[::1]:1234"
        host, _, port = str(coordinator_address).rpartition(":")
        if not isinstance(coordinator_address, str) or not host or not port.isdigit():
            raise ValueError(f"coordinator_address: expected 'host:port' of process 0, got "
                             f"{coordinator_address!r}")

    def integer(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if num_processes is not None and (not integer(num_processes) or num_processes < 1):
        raise ValueError(f"num_processes: expected an integer >= 1, got {num_processes!r}")
    if process_id is not None and (not integer(process_id) or process_id < 0 or (
            num_processes is not None and process_id >= num_processes)):
        upper = "" if num_processes is None else f", below num_processes = {num_processes}"
        raise ValueError(f"process_id: expected an integer >= 0{upper}, got {process_id!r}")
    num_processes = None if num_processes is None else int(num_processes)
    process_id = None if process_id is None else int(process_id)
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               local_device_ids=local_device_ids)
    return jax.process_index()


def is_main_process():
    """True in process 0 (and in a single-process run): the one that prints and writes."""
    return jax.process_index() == 0


def _mesh(devices, axis):
    """A 1-D mesh over `devices` (default: all of them) with the axis name `axis`."""
    if isinstance(devices, numbers.Number):
        raise ValueError(f"devices: expected a non-empty list of devices (e.g. "
                         f"jax.devices()[:{devices}]), got the number {devices!r}")
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices: expected a non-empty list of devices, got an empty one")
    return jax.sharding.Mesh(np.array(devices), (axis,))


def data_mesh(devices=None):
    """A 1-D mesh over `devices` (default: all of them) with the axis name "data"."""
    return _mesh(devices, AXIS)


def _local_step(net, opt, params, state, X, Y, w):
    """On one device: its columns' gradient, weighted into the batch gradient by one psum."""
    J_d, grads_d, _ = objective(net, params, X, Y, w)  # this device's columns, normalised
    # by W_d = Σ w over them
    W_d = jnp.sum(w)
    share = W_d / jax.lax.psum(W_d, AXIS)  # W_d / W
    grads = jax.tree.map(lambda g: jax.lax.psum(g * share, AXIS), grads_d)
    J = jax.lax.psum(J_d * share, AXIS)
    params, state = opt.update(grads, state, params)
    return params, state, J


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(3, 4))
def _sharded_step(net, opt, mesh, params, state, X, Y, w):
    step = jax.shard_map(
        functools.partial(_local_step, net, opt), mesh=mesh,
        in_specs=(P(), P(), P(None, AXIS), P(None, AXIS), P(None, AXIS)),
        out_specs=(P(), P(), P()), check_vma=False)
    return step(params, state, X, Y, w)


def shard_batch(X, Y, mesh, weights=None):
    """Pad the m columns to a multiple of the device count with zero-weight columns and place
    them on the mesh, columns split over the "data" axis. Returns (X, Y, w) with w (1, m')."""
    n = mesh.devices.size
    m = X.shape[1]
    pad = (-m) % n
    w = jnp.ones((1, m), X.dtype) if weights is None else jnp.asarray(weights, X.dtype)
    w = w.reshape(1, m)
    if pad:
        X = jnp.concatenate([X, jnp.zeros((X.shape[0], pad), X.dtype)], axis=1)
        Y = jnp.concatenate([Y, jnp.zeros((Y.shape[0], pad), Y.dtype)], axis=1)
        w = jnp.concatenate([w, jnp.zeros((1, pad), w.dtype)], axis=1)
    columns = NamedSharding(mesh, P(None, AXIS))
    return jax.device_put(X, columns), jax.device_put(Y, columns), jax.device_put(w, columns)


def replicate(tree, mesh):
    """Put every leaf on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def train_step(net, opt, params, state, X, Y, mesh, sample_weight=None):
    """`jaxbp.train_step` with the batch's columns sharded over `mesh` (from `data_mesh`).

    Same arguments and result as `jaxbp.train_step`; the gradient equals the single-device
    gradient of the whole batch (m need not divide by the device count). params and state are
    donated and come back replicated on the mesh.
    """
    if not isinstance(mesh, jax.sharding.Mesh) or mesh.axis_names != (AXIS,):
        raise TypeError(f"mesh: expected a 1-D Mesh with axis {AXIS!r} (jaxbp.parallel."
                        f"data_mesh()), got {mesh!r:.80}")
    params = validate.params(net, params)
    optim.check(opt, state, params)
    X = validate.inputs(net, params, X)
    Y = validate.targets(net, params, Y, m=X.shape[1])
    w = validate.sample_weight(params, sample_weight, m=X.shape[1])
    X, Y, w = shard_batch(X, Y, mesh, w)
    params, state = replicate((params, state), mesh)
    return _sharded_step(net, opt, mesh, params, state, X, Y, w)


# --- model parallelism: W^l split by rows ---------------------------------------------------------
MODEL_AXIS = "model"


def model_mesh(devices=None):
    """A 1-D mesh over `devices` (default: all of them) with the axis name "model"."""
    return _mesh(devices, MODEL_AXIS)


def shard_rows(params, mesh):
    """Model parallelism for wide layers: put the rows of every W^l and b^l (the n_l units of
    layer l) on the devices of `mesh`'s "model" axis, a block of rows each.

    The step is then `jaxbp.train_step` itself, unchanged: jit follows the shardings of its
    inputs and GSPMD partitions the same hand-written equations. Per layer,
    Z^l = W^l A^{l-1} + b^l needs all of A^{l-1} on every device (an all-gather of an
    (n_{l-1}, m) block) and yields Z^l, A^l, Δ^l split by rows, with no other traffic;
    dW^l = (1/m) Δ^l A^{l-1}ᵀ and db^l are computed where their rows live; the transpose in
    Δ^{l-1} = W^lᵀ Δ^l ⊙ g′(Z^{l-1}) contracts over the split n_l, so each device holds a
    partial sum and one all-reduce of an (n_{l-1}, m) block completes it. Weights, their
    gradients and the optimizer's moments never move. It pays when a layer's
    n_l · n_{l−1} weights (times 3 or 4 with Adam's moments and the gradient) do not fit one
    device, or when n_l · n_{l−1} is large against (n_{l−1} + n_l) · m, the activations that
    travel; for the networks of the benchmarks it does not: data parallelism wins.

    A layer whose n_l the mesh size does not divide (an output layer of 10 units on 4
    devices) is replicated instead. Returns the params placed on the mesh; the optimizer
    state made from them by `opt.init` follows."""
    if not isinstance(mesh, jax.sharding.Mesh) or mesh.axis_names != (MODEL_AXIS,):
        raise TypeError(f"mesh: expected a 1-D Mesh with axis {MODEL_AXIS!r} (jaxbp.parallel."
                        f"model_mesh()), got {mesh!r:.80}")
    n = mesh.devices.size
    rows, every = NamedSharding(mesh, P(MODEL_AXIS, None)), NamedSharding(mesh, P())
    return tuple(jax.device_put((W, b), rows if W.shape[0] % n == 0 else every)
                 for W, b in params)
