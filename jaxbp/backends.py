"""Every choice jaxbp makes for one backend's sake, with what it measured, in one place.

The equations (backprop.py) say what is computed; this module says how, where that depends on
the hardware. A GPU-specific path belongs here, beside the CPU one it replaces.

    choice                     target            what it does, and elsewhere
    `matmul`                   every backend     the compute policy: the net's float32
                                                 precision (true float32 or TF32), or
                                                 bfloat16 operands with float32 accumulation
    `transposed`               CPU only          W^lᵀ materialised behind an optimization
                                                 barrier (XLA's CPU dot is slow on a transposed
                                                 operand); elsewhere W.T inside the matmul,
                                                 chosen by `lax.platform_dependent` from the
                                                 platform compiled for (an export for CUDA
                                                 from a CPU host takes the GPU form)
    `in_place`, `after`        measured on CPU,  gradients ordered after the reads of W^l, so
                               kept everywhere   a scan of steps updates the weights in place
    `flat`                     measured on CPU,  the epoch's parameters, gradients and moments
                               kept everywhere   as one vector each (one fused update)
    `shuffle`                  every backend     one sort of random Philox words: fast on CPU,
                                                 and the same epoch order on every backend
    `LOOKAHEAD_BYTES`          every backend     how much the epochs dispatched ahead may hold
    `deterministic_gpu_ops`    GPU               XLA's deterministic kernels
    `compilation_cache`        every backend     JAX's persistent cache of compiled programs
    `use_cpu_cores`            CPU               a device per core, for populations

Each of them computes the same numbers as the plain form (tests/test_fit.py, test_train_step.py
and test_gpu_paths.py check it); only speed and memory differ.

Bit for bit, jaxbp reproduces a run on the same backend and device kind, with the same jax and
jaxlib versions and XLA flags: the same key gives the same parameters, and a resumed run
continues exactly as the uninterrupted one. On a CPU that holds as it is. On a GPU, XLA's
autotuner may pick a different GEMM algorithm in another process, and some kernels (scatter,
reductions by atomics) add in an order that varies from run to run; XLA's flag
`--xla_gpu_deterministic_ops=true` makes it choose deterministic ones. The epoch order
(`shuffle`) and dropout masks (threefry) are the same on every backend; the parameters are
not: float32 sums round differently on different hardware.

The persistent compilation cache (`compilation_cache`): `fit`, the estimators and the CLI turn
on JAX's on-disk cache of compiled programs, so that a second process (the next `jaxbp train`,
the next script that fits an estimator) loads what the first compiled instead of compiling it
again. JAX keys an entry by the program, its devices, the jax/jaxlib versions and the XLA
flags: a cached program is the program that would have been compiled, so results cannot change.
"""

import contextlib
import os
import threading

import jax
import jax.numpy as jnp

from jaxbp.model import PRECISIONS


# --- the compute policy ------------------------------------------------------------------------
def matmul(net, P, Q):
    """P @ Q under the net's compute policy, the one place jaxbp multiplies matrices: the
    operands' own dtype at the net's precision (true float32 unless `precision="tf32"`), or
    bfloat16 operands with float32 accumulation."""
    if net.matmul_dtype is None:
        return jnp.matmul(P, Q, precision=PRECISIONS[net.precision])
    bf16 = jnp.bfloat16
    return jnp.matmul(P.astype(bf16), Q.astype(bf16), precision="default",
                      preferred_element_type=jnp.float32)


# --- the materialised transpose ----------------------------------------------------------------
def transposed(net, W):
    """W^lᵀ for the backward matmul Δ^{l-1} = W^lᵀ Δ^l: on CPU as its own row-major array.

    XLA's CPU backend multiplies a transposed left operand (contracting W's rows) far slower
    than a plain one: 280-320 vs 430-460 GFLOP/s (float32) on our 2-core benchmark machine.
    Materialising Wᵀ first (an O(n_l n_{l-1}) copy, against the O(n_l n_{l-1} m) matmul) and
    keeping XLA from folding it back into the dot with an optimization barrier recovers most
    of that. GPUs transpose inside the matmul for free, so there W is used as it is. The
    branch follows the platform the program is compiled for (`lax.platform_dependent`), not
    the process's default backend: a program exported for CUDA from a CPU host has no barrier.
    """
    dtype = W.dtype if net.matmul_dtype is None else jnp.dtype(net.matmul_dtype)
    if _plain:
        return W.T.astype(dtype)

    def on_cpu(W):
        return jax.lax.optimization_barrier(W.T.astype(dtype))

    return jax.lax.platform_dependent(W, cpu=on_cpu, default=lambda W: W.T.astype(dtype))


# --- switching the CPU workarounds off --------------------------------------------------------
_plain: list = []  # non-empty inside `plain()`


@contextlib.contextmanager
def plain():
    """Inside this block, programs are traced without the CPU workarounds (`transposed`'s
    barrier and `in_place`'s ordering): the plain equations, as XLA schedules them alone. The
    numbers are the same; the benchmarks time it as its own row ("jaxbp, workarounds off"),
    which says what the hand-written equations give and what the tuning adds. It acts when a
    program is traced, and JAX caches traces by the Python function traced, not knowing of the
    switch: trace a function of its own inside the block (`jax.jit(lambda *a: step.step(*a),
    ...)`, lowered and compiled there), never one traced outside it too."""
    _plain.append(True)
    try:
        yield
    finally:
        _plain.pop()


# --- the in-place ordering ---------------------------------------------------------------------
def after(tree, *values):
    """`tree` unchanged, but computed after `values`: a zero that depends on them is added to
    it. The zero is 0·[v = v] (a comparison, so it is 0 even for an infinite or NaN v)."""
    seen = sum((jnp.ravel(v)[0] == jnp.ravel(v)[0]).astype(jnp.float32) for v in values)
    return jax.tree.map(lambda x: x + (0.0 * seen).astype(x.dtype), tree)


IN_PLACE_MIN = 1 << 16  # parameters: below this, copying them is cheaper than the ordering


def in_place(grads, J, deltas):
    """The gradients, ordered so that a loop of training steps updates W^l in place.

    Inside a loop (a `lax.scan` of steps) XLA overwrites the carried W^l only if it can
    prove every read of the old W^l comes first. Two reads feed nothing the update of W^l
    needs: W^lᵀ Δ^l (it makes Δ^{l-1}) and the cost J (XLA recomputes Z^L inside the cost's
    fusion). Left unordered, they make XLA copy W^l every step: 16 MiB a step for a 2048 ×
    2048 layer. Making the gradients wait for J and Δ^1..Δ^{L-1} (`after`) orders them; the
    numbers are the same. Below IN_PLACE_MIN parameters the copy is cheap and the ordering
    measured slower (2-core CPU, epochs of Adam steps: 30-64-32-1 (4k parameters) 3.7 ms
    ordered against 2.0 ms copied, 20k and 51k parameters slower too; 85k, 270k, 289k and
    5.8M parameters 4-13% faster), so small nets keep the copy.
    """
    if _plain or sum(g.size for g in jax.tree.leaves(grads)) < IN_PLACE_MIN:
        return grads
    return after(grads, J, *deltas[1:-1])


# --- layout and order inside the compiled epoch ----------------------------------------------
# Inside the epoch the parameters, gradients and optimizer moments travel as one flat vector
# each (`flat`, in `ravel_pytree`'s layout): the update of every layer is then one fused
# loop instead of one per array (on CPU the per-kernel launch, not the arithmetic, is what a
# small network's step costs). Every optimizer of `optim.OPTIMIZERS` computes the same numbers
# on the vector as on the tree (tests/test_optim.py checks each of them). A population's
# epoch keeps the tree: its leaves are k members wide already (`fit._Static.flat`).
def flat(tree):
    """Every leaf of `tree`, raveled, one after another in tree order: one vector, laid out as
    `ravel_pytree` lays it out (its `unravel` gives the tree back). Each leaf is written into
    the vector by a dynamic_update_slice: XLA's CPU backend runs the equivalent concatenate
    some 40 times slower (7 ms against 0.15 ms for the 551k parameters of a
    40-512-512-512-10 network; an epoch flattens the params and each optimizer moment)."""
    leaves = jax.tree.leaves(tree)
    flat = jnp.zeros(sum(x.size for x in leaves), jnp.result_type(*leaves))
    offset = 0
    for x in leaves:
        flat = jax.lax.dynamic_update_slice(flat, x.reshape(-1).astype(flat.dtype), (offset,))
        offset += x.size
    return flat


def shuffle(key, m):
    """A random permutation of 0..m-1 from `key`, for the epoch's batch order.

    `jax.random.permutation` sorts (key, value) pairs by a comparator, which on CPU costs
    more than a small network's whole epoch (~570 µs for m = 1797 on the 2-core CI machine,
    against ~80 µs here for one round, ~125 µs for two). Each round draws 32-bit words, puts
    the example's current position in the low bits (so the words are distinct and the sort
    needs no second operand) and sorts them: the order of the high, random bits is the new
    order. Words whose random bits tie keep the previous round's order: index order in the
    first round, the first round's random order in a second. One round is enough while
    fewer than one tied pair is expected (m² < 2^(33 − low bits); 1 797 rows: 0.8 pairs),
    two otherwise. The words come from XLA's RngBitGenerator seeded by `key`, with the
    Philox algorithm named (not the backend's default), so the order is the same on every
    backend; above 2^20 rows, `jax.random.permutation` (threefry, computed by JAX's own ops)
    is too."""
    kind = shuffle_kind(m)
    if kind is None:  # under 12 random bits a round: ties too common; the comparator sort
        return jax.random.permutation(key, m)
    return shuffle_padded(key, m, m, kind)


def shuffle_kind(m):
    """What of `shuffle(key, m)` is fixed by m beyond its length: (low bits, rounds), or None
    for the comparator sort above 2^20 rows. Members of a population with the same kind draw
    their orders with `shuffle_padded`."""
    low_bits = max(1, int(m - 1).bit_length())
    return None if low_bits > 20 else (low_bits, 1 if m * m < 2 ** (33 - low_bits) else 2)


def shuffle_padded(key, m, M, kind):
    """`shuffle(key, m)` for a traced m ≤ M (same `shuffle_kind`), followed by m..M−1: one draw
    of M words a round, the words past m sorted last. RngBitGenerator's Philox words are a
    prefix of a longer draw (tested), so the first m words are `shuffle`'s own; round r reads
    its words at offset r·m of one flat draw, as `shuffle`'s (rounds, m) draw lays them out."""
    low_bits, rounds = kind
    low = jnp.uint32((1 << low_bits) - 1)
    data = jax.random.key_data(key).reshape(-1)[:2]
    seed = jnp.concatenate([data, data ^ jnp.uint32(0x5BD1E995)])
    _, flat = jax.lax.rng_bit_generator(seed, (1, rounds * M), jnp.uint32,
                                        algorithm=jax.lax.RandomAlgorithm.RNG_PHILOX)
    position = jnp.arange(M, dtype=jnp.uint32)
    order, mine = position, position < jnp.asarray(m).astype(jnp.uint32)
    for r in range(rounds):
        words = jax.lax.dynamic_slice(flat[0], (jnp.asarray(m, jnp.int32) * r,), (M,)) if r \
            else flat[0, :M]
        keyed = jnp.where(mine, (words & ~low) | position, jnp.uint32(0xFFFFFFFF))
        order = order[(jnp.sort(keyed) & low).astype(jnp.int32)]
        order = jnp.where(mine, order, position)  # the tail stays m..M-1
    return order.astype(jnp.int32)


# --- how far the host runs ahead of the device ------------------------------------------------
LOOKAHEAD_BYTES = 64 << 20  # the pending epochs' params and optimizer states: at most this


# --- deterministic GPU kernels -----------------------------------------------------------------
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


# --- every CPU core a device --------------------------------------------------------------------
def use_cpu_cores(n=None):
    """Make JAX's CPU backend show n devices (default: every core of the machine), so that
    `fit_population` and the searches spread their members over the cores: XLA runs one small
    network's program on about one core, and one device's programs one at a time. Call it
    before the process's first JAX computation (JAX fixes its devices then); it changes what
    `jax.devices("cpu")` returns for the whole process. Returns n.

    Measured (2-core Xeon, 2026-12-02; 64-64-10 net on digits, 64 members, benchmark suite
    `population`): 0.97 ms per member-epoch on one device, 0.65 on two."""
    n = (os.cpu_count() or 1) if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a number of devices >= 1, got {n!r}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as e:
        raise RuntimeError(f"use_cpu_cores({n}): JAX has already started its backends, with "
                           f"{jax.local_device_count('cpu')} CPU device(s); call it before "
                           f"the first JAX computation of the process") from e
    return n


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
