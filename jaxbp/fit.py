"""`fit`: mini-batch training with every epoch compiled as one `lax.scan` over its batches.

Per epoch, on the device: shuffle the columns with a key derived from (key, epoch), pad the
last batch with zero-weight columns (a ragged batch is trained on, not dropped: its padding
weighs nothing), then scan the hand-written step over the batches. Between epochs, in Python:
validation, history, early stopping, the learning-rate schedule, the progress bar, the
callback and checkpoints.

User data is row-major, as in NumPy and scikit-learn: X of shape (m, n_0), one example per
row. It is transposed once, here, to the engine's column-major layout.
"""

import collections
import dataclasses
import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbp import backends, data, optim, validate
from jaxbp.backends import flat, in_place, shuffle, shuffle_kind, shuffle_padded
from jaxbp.backprop import backward, dropout_masks, forward, objective
from jaxbp.losses import TARGETS
from jaxbp.model import MLP, init
from jaxbp.parallel import AXIS, replicate

SCHEDULES = ("constant", "step", "cosine", "invscaling")


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Learning rate per epoch e = 0, 1, ...:
    constant:   lr
    step:       lr · gamma^⌊e / step_size⌋
    cosine:     lr_min + (lr − lr_min)(1 + cos(π e / epochs)) / 2
    invscaling: lr / (t + 1)^power_t, t = examples seen before epoch e (scikit-learn's rule)
    """

    kind: str = "constant"
    gamma: float = 0.1
    step_size: int = 30
    lr_min: float = 0.0
    power_t: float = 0.5

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {list(SCHEDULES)}, got {self.kind!r}")
        if self.step_size < 1:
            raise ValueError(f"schedule.step_size: expected an int >= 1, got {self.step_size}")

    def __call__(self, lr, epoch, epochs, examples_seen):
        if self.kind == "step":
            return lr * self.gamma ** (epoch // self.step_size)
        if self.kind == "cosine":
            return self.lr_min + (lr - self.lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2
        if self.kind == "invscaling":
            return lr / (examples_seen + 1) ** self.power_t
        return lr


@dataclasses.dataclass
class FitResult:
    """What `fit` returns. `history` maps a name to one value per epoch run: epoch, lr,
    train_cost, seconds (wall time since the previous epoch's record), and with validation
    data val_cost and val_score (accuracy or R²)."""

    params: Any
    opt_state: Any
    history: dict
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    key: Any


# --- the compiled epoch -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Static:
    batch_size: int
    shuffle: bool
    dropout: float
    l2: bool  # alpha > 0; alpha's value is traced, so a search over it compiles once
    mesh: Any = None  # a 1-D "data" mesh: each batch's columns are split over its devices
    batch_pad: int = 0  # zero-weight columns added to each batch so the mesh divides it
    # Where each batch's columns are gathered: all before the scan (a copy and a transpose of
    # the epoch's data: fit's choice, faster at batch 32 and for 784-wide inputs on the 2-core
    # Xeon), or in each step (a population's: 70 -> 47 ms per epoch of 64 digits members).
    gather_in_step: bool = False
    # How parameters, gradients and optimizer moments travel through the steps: as one flat
    # vector each (fit's: every layer's update one fused loop, `backends.flat`), or as the
    # tree itself (a population's, whose leaves are already k members wide: flattening and
    # slicing them back took ~5% of the 30-fit search's epochs on the 2-core EPYC; the
    # numbers are the same either way).
    flat: bool = True


def _param_fields(state, params):
    """Which fields of an optimizer state are shaped like params (moments, velocities)."""
    like = jax.tree.structure(params)
    return tuple(jax.tree.structure(v) == like for v in state)


def _map_state(f, state, fields):
    """Apply f to the fields of an optimizer state that `fields` marks."""
    return type(state)(*[f(v) if is_p else v for v, is_p in zip(state, fields, strict=True)])


def _batch_step(net, opt, cfg, unflat, flat_p, flat_s, x, y, w, key, lr, alpha):
    """`step.step` on flat parameters (`unflat` shapes them back for the objective; with
    cfg.flat False, flat_p and flat_s are the trees): the objective with dropout masks and L2
    (scikit-learn's: alpha/(2n) Σ||W||², n = Σw of the batch), then the update."""
    params = unflat(flat_p) if cfg.flat else flat_p
    masks = dropout_masks(net, key, cfg.dropout, x.shape[1], x.dtype)
    J, grads, deltas = objective(net, params, x, y, w[None, :], masks, alpha if cfg.l2 else None)
    g = in_place(flat(grads) if cfg.flat else grads, J, deltas)  # reads of flat_p first
    flat_p, flat_s = opt.update(g, flat_s, flat_p, lr=lr)
    return flat_p, flat_s, J


def _epoch_program(net, opt, cfg, params, state, X, Y, weights, key, epoch, lr, alpha):
    """Epoch `epoch`: shuffle, pad to whole batches with zero weights, scan the step over them.
    Its key is fold_in(key, epoch). Returns (params, state, weighted mean of the batch costs)."""
    order, k_drop = _epoch_order(cfg, key, epoch, X.shape[1])
    return _epoch_in_order(net, opt, cfg, params, state, X, Y, weights, order, k_drop, lr, alpha)


def _epoch_order(cfg, key, epoch, m, padded_to=None):
    """(order, dropout key) of epoch `epoch`: the columns' order (shuffled, or 0..m−1) and the
    key of the dropout masks, both from fold_in(key, epoch). Apart from the epoch's body since
    the shuffle's generator (XLA's RngBitGenerator) draws one stream for a whole vmapped batch
    of keys: a population computes each member's order alone (`lax.map`). `padded_to` M: a
    traced m ≤ M (a population member's rows), the order followed by m..M−1."""
    k_perm, k_drop = jax.random.split(jax.random.fold_in(key, epoch))
    if padded_to is None:
        return (shuffle(k_perm, m) if cfg.shuffle else jnp.arange(m)), k_drop
    kind = shuffle_kind(padded_to)
    if not cfg.shuffle or kind is None:  # None: every member has M rows (their group's rule)
        return (shuffle(k_perm, padded_to) if cfg.shuffle else jnp.arange(padded_to)), k_drop
    return shuffle_padded(k_perm, m, padded_to, kind), k_drop


def _epoch_in_order(net, opt, cfg, params, state, X, Y, weights, order, k_drop, lr, alpha):
    """The epoch's body: columns taken in `order` (m of them: all of X's, or a population
    member's rows of X), padded to whole batches with zero weights, the step scanned over
    them. Returns (params, state, weighted mean of the batch costs)."""
    m, b = order.shape[0], cfg.batch_size
    nb = -(-m // b)
    pad = nb * b - m
    idx = jnp.concatenate([order, jnp.zeros(pad, order.dtype)])  # padding repeats column 0...
    valid = jnp.concatenate([jnp.ones(m, X.dtype), jnp.zeros(pad, X.dtype)])  # ...weighing 0
    if cfg.batch_pad:  # each batch padded to b' = b + batch_pad columns, the extra weighing 0
        idx = jnp.concatenate([idx.reshape(nb, b), jnp.zeros((nb, cfg.batch_pad), idx.dtype)],
                              axis=1).reshape(-1)
        valid = jnp.concatenate([valid.reshape(nb, b),
                                 jnp.zeros((nb, cfg.batch_pad), X.dtype)], axis=1).reshape(-1)
        b = b + cfg.batch_pad
    w = weights[idx] * valid

    def shard(A, spec):  # with a mesh, GSPMD splits the batch columns and all-reduces dW, db
        if cfg.mesh is None:
            return A
        return jax.lax.with_sharding_constraint(A, NamedSharding(cfg.mesh, spec))

    def split(A):  # (n, nb·b) -> (nb, n, b): batch i is columns i·b .. i·b + b − 1
        return shard(A[:, idx].reshape(A.shape[0], nb, b).transpose(1, 0, 2), P(None, None, AXIS))

    unflat = ravel_pytree(params)[1]

    def body(carry, batch):
        flat_p, flat_s = carry
        x, y, wb, i = batch
        if cfg.gather_in_step:  # x, y are the batch's column indices
            x, y = X[:, x], Y[:, y]
        flat_p, flat_s, J = _batch_step(net, opt, cfg, unflat, flat_p, flat_s, x, y, wb,
                                        jax.random.fold_in(k_drop, i), lr, alpha)
        return (flat_p, flat_s), (J, jnp.sum(wb))

    cols = idx.reshape(nb, b)
    batches = ((cols, cols) if cfg.gather_in_step else (split(X), split(Y))) + (
        shard(w.reshape(nb, b), P(None, AXIS)), jnp.arange(nb))
    fields = _param_fields(state, params)
    carry = (flat(params), _map_state(flat, state, fields)) if cfg.flat else (params, state)
    (new_params, state), (costs, batch_weights) = jax.lax.scan(body, carry, batches)
    if cfg.flat:
        new_params, state = unflat(new_params), _map_state(unflat, state, fields)
    return new_params, state, jnp.sum(costs * batch_weights) / jnp.sum(batch_weights)


# The compiled programs are jax.jit(function), not @jax.jit decorations: mutation testing
# (docs/mutation.md) cannot mutate a decorated function.
_epoch = jax.jit(_epoch_program, static_argnums=(0, 1, 2))


def _cost_and_score(net, params, X, Y):
    """(mean cost, score) on column-major data: accuracy for sigmoid/softmax, R² for identity."""
    A_L, cache = forward(net, params, X)
    J, _, _ = backward(net, params, cache, Y)
    if net.output == "softmax":
        score = jnp.mean(jnp.argmax(A_L, axis=0) == jnp.argmax(Y, axis=0))
    elif net.output == "sigmoid":
        score = jnp.mean((A_L > 0.5) == (Y > 0.5))
    else:
        ss_res = jnp.sum((Y - A_L) ** 2)
        ss_tot = jnp.sum((Y - jnp.mean(Y, axis=1, keepdims=True)) ** 2)
        score = 1.0 - ss_res / jnp.where(ss_tot > 0, ss_tot, 1.0)
    return J, score


_evaluate = jax.jit(_cost_and_score, static_argnums=0)


# --- the loop -----------------------------------------------------------------------------------
def fit(net, X, y, *, opt=None, epochs=200, batch_size=None, key=0, params=None,
        opt_state=None, sample_weight=None, validation_fraction=0.0, validation_data=None,
        early_stopping=False, patience=10, min_delta=1e-4, restore_best=True, alpha=0.0,
        schedule="constant", dropout=0.0, shuffle=True, callback=None, progress=None,
        start_epoch=0, history=None, on_epoch_end=None, mesh=None, lookahead=None,
        checkpoint=None):
    """Train `net` on row-major data with mini-batches; each epoch is one compiled `lax.scan`.

    Arguments:
        net: an `MLP`.
        X: inputs (m, n_0), one example per row. y: labels (m,) or targets (m, n_L) (see
            `targets_from_labels`).
        opt: an optimizer from `jaxbp.optim` (default: Adam, lr 1e-3).
        epochs: epochs to run (counting from `start_epoch`). batch_size: default min(200, m).
        key: int seed or PRNG key. Epoch e shuffles and draws dropout masks with
            fold_in(key, e), so a resumed run repeats the uninterrupted one exactly.
        params, opt_state: start from these (default: `init(net, key)` and `opt.init`); used
            by warm starts and resumed runs. They are copied, so the caller's arrays stay
            valid.
        sample_weight: (m,) weights ≥ 0: each batch's cost is Σ w ℓ / Σ w.
        validation_fraction: hold out this fraction of (X, y), chosen with the key, for
            validation; or give validation_data=(X_val, y_val).
        early_stopping: stop when the monitored cost (validation cost if there is validation
            data, else training cost) has not improved by min_delta for `patience` epochs;
            with restore_best, return the best epoch's params.
        alpha: L2 penalty as scikit-learn defines it: J + α/(2n) Σ_l ||W^l||² per batch, n
            its number of examples (with sample weights: their sum).
        schedule: "constant", "step", "cosine", "invscaling", or a `Schedule`.
        dropout: inverted-dropout probability p on hidden layers during training.
        callback: called as callback(record) after every epoch with that epoch's history
            record (a dict); returning True stops training.
        progress: show a tqdm bar (default: when stderr is a terminal).
        on_epoch_end: optional callable(result_so_far, epoch) called after each epoch with
            the `FitResult` so far; the CLI writes its checkpoints from it. Its arrays are not
            consumed by later epochs: it may keep them. (`checkpoint=`, its former name,
            still works, with a DeprecationWarning.)
        lookahead: how many epochs may be dispatched to the device before the oldest one's
            record is read back (JAX runs them asynchronously; the result is the same, the
            epochs run past a stop are discarded). Default: 8 (fewer for a large network)
            without callback or on_epoch_end, 1 with one, since a hook may change what the next
            epoch does (a learning rate); pass a number when your hooks only watch or stop.
            Capped so that the pending epochs' params and state take at most 64 MiB.
        mesh: a `jaxbp.parallel.data_mesh(...)`: data parallelism. The data and parameters
            are replicated on its devices and each batch's columns are split over them (a
            batch that does not divide is padded with zero-weight columns); XLA inserts the
            all-reduce of dW and db. Without dropout the result equals the single-device run.

    Compiled programs go to JAX's persistent compilation cache, turned on by the first call
    (`jaxbp.backends.compilation_cache`: ~/.cache/jaxbp/compilation; JAXBP_COMPILATION_CACHE
    moves it or, set to 0, turns it off), so another process skips the compilation.

    Returns:
        A `FitResult`. Raises `DivergenceError` naming the epoch if the cost stops being finite.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a jaxbp.MLP, got {type(net).__name__}")
    backends.compilation_cache()  # on by default (jaxbp.backends); off: JAXBP_COMPILATION_CACHE=0
    on_epoch_end = _renamed("checkpoint", checkpoint, "on_epoch_end", on_epoch_end)
    opt = optim.adam(1e-3) if opt is None else opt
    optim.check_is_optimizer(opt)
    epochs = validate.positive_int("epochs", epochs)
    patience = validate.positive_int("patience", patience)
    key = validate.prng_key(key)
    X, Y, w = _training_rows(net, X, y, sample_weight)
    dropout, schedule = _checked_settings(dropout, alpha, schedule, callback)
    X, Y, w, held_out = _hold_out(net, key, X, Y, y, w, validation_fraction, validation_data)
    m = X.shape[0]
    batch_size = min(m, 200 if batch_size is None else validate.positive_int("batch_size",
                                                                             batch_size))
    if params is None:
        params = init(net, jax.random.fold_in(key, 2**31 - 2))
    params, state, columns, val_columns, batch_pad = _place(
        net, opt, params, opt_state, X, Y, w, held_out, mesh, batch_size)
    cfg = _Static(batch_size, bool(shuffle), dropout, alpha > 0, mesh, batch_pad)
    history = _history(history, held_out is not None)
    monitor = "val_cost" if held_out is not None else "train_cost"
    best, best_epoch, best_params, waited = math.inf, None, None, 0
    bar = _progress_bar(progress, epochs)
    epochs_run = _dispatched_epochs(
        net, opt, cfg, params, state, columns, val_columns, key, schedule,
        range(start_epoch, start_epoch + epochs), alpha,
        _lookahead(lookahead, callback, on_epoch_end, params, state))
    stopped_early, epoch, t_last = False, start_epoch - 1, time.perf_counter()
    try:
        for epoch, lr, params, state, J, val in epochs_run:
            record = _record(epoch, lr, J, val, alpha)
            now = time.perf_counter()
            record["seconds"], t_last = now - t_last, now
            for k, v in record.items():
                history[k].append(v)
            if record[monitor] < best - min_delta:
                best, best_epoch, best_params, waited = record[monitor], epoch, params, 0
            else:
                waited += 1
            _show(bar, record)
            if on_epoch_end is not None:
                on_epoch_end(FitResult(params, state, history, epoch - start_epoch + 1,
                                     best_epoch, False, key), epoch)
            if callback is not None and callback(dict(record)) is True:
                break
            if early_stopping and waited >= patience:
                stopped_early = True
                break
    finally:
        epochs_run.close()  # drops the epochs dispatched past a stop
        if bar is not None:
            bar.close()
    if stopped_early and restore_best and best_params is not None:
        params = best_params
    return FitResult(params, state, history, epoch - start_epoch + 1, best_epoch, stopped_early,
                     key)


def _renamed(old, old_value, new, new_value):
    """The value of a renamed keyword argument, given by either name (the old one warned)."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"{old}: renamed {new}; got both")
    import warnings

    warnings.warn(f"fit({old}=...) is deprecated: pass {new}=...", DeprecationWarning,
                  stacklevel=3)
    return old_value


def _checked_settings(dropout, alpha, schedule, callback):
    """(dropout, schedule) checked, a schedule's name made a `Schedule`; alpha and callback
    checked."""
    validate.non_negative("alpha", alpha)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable, got {type(callback).__name__}")
    return validate.fraction("dropout", dropout), as_schedule(schedule)


def as_schedule(schedule):
    """A `Schedule` as it is, or the `Schedule` of that name."""
    return schedule if isinstance(schedule, Schedule) else Schedule(schedule)


def _training_rows(net, X, y, sample_weight):
    """X (m, n_0), its targets Y (n_L, m) and the weights w (m,) as NumPy, checked."""
    X = validate.rows("X", X, net.sizes[0])
    Y = validate.targets_from_labels(net, y)
    if Y.shape[1] != X.shape[0]:
        raise ValueError(f"y: expected {X.shape[0]} labels, one per row of X, got {Y.shape[1]}")
    m = X.shape[0]
    w = np.ones(m) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != (m,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(f"sample_weight: expected {m} finite weights >= 0 with at least one "
                         f"non-zero weight, got shape {w.shape}, min {np.min(w, initial=0):g}, "
                         f"sum {np.sum(w):g}")
    return X, Y, w


def _hold_out(net, key, X, Y, y, w, validation_fraction, validation_data):
    """(X, Y, w) left for training and (X_val, Y_val) or None: `validation_data` as given, or
    a fraction of the rows chosen with the key (stratified for class labels where every class
    can be split in proportion, as the test split is)."""
    validation_fraction = validate.fraction("validation_fraction", validation_fraction)
    if validation_data is not None:
        X_val = validate.rows("validation_data[0]", validation_data[0], net.sizes[0])
        return X, Y, w, (X_val, validate.targets_from_labels(net, validation_data[1],
                                                    name="validation_data[1]"))
    split = _held_out_rows(net, key, y, validation_fraction)
    if split is None:
        return X, Y, w, None
    train, val = split
    return X[train], Y[:, train], w[train], (X[val], Y[:, val])


def _held_out_rows(net, key, y, validation_fraction):
    """(train, val) row indices of the labels y for a validation fraction chosen with the key
    (stratified for class labels where every class can be split in proportion, as the test
    split is), or None for a fraction of 0."""
    if validation_fraction == 0:
        return None
    labels = np.asarray(y)
    m = labels.shape[0]
    if max(1, round(validation_fraction * m)) >= m:
        raise ValueError(f"validation_fraction: {validation_fraction} leaves no training "
                         f"examples of {m}")
    seed = int(jax.random.randint(jax.random.fold_in(key, 2**31 - 1), (), 0, 2**31 - 1))
    classify = TARGETS[net.loss] != "finite" and labels.ndim == 1
    try:
        return data.split_indices(labels, validation_fraction, seed=seed, stratify=classify,
                                  name="validation_fraction")
    except ValueError:  # a class with a single row cannot be split in proportion
        return data.split_indices(labels, validation_fraction, seed=seed, stratify=False,
                                  name="validation_fraction")


def _place(net, opt, params, opt_state, X, Y, w, held_out, mesh, batch_size):
    """Checked params and optimizer state, the training columns (X^T, Y, w) and the validation
    columns (or None) on the device, replicated over the mesh's devices if there is one; and
    the zero-weight columns that pad each batch to a multiple of the mesh's devices."""
    params = validate.params(net, params)
    Xc = validate.inputs(net, params, X.T)  # the one transpose to column-major
    columns = (Xc, validate.targets(net, params, Y, m=X.shape[0]),
               jnp.asarray(w, validate.param_dtype(params)))
    val_columns = None
    if held_out is not None:
        Xv = validate.inputs(net, params, held_out[0].T, name="validation X")
        val_columns = (Xv, validate.targets(net, params, held_out[1], m=Xv.shape[1],
                                            name="validation y"))
    state = opt.init(params) if opt_state is None else opt_state
    optim.check(opt, state, params)
    if mesh is None:
        return params, state, columns, val_columns, 0
    if not isinstance(mesh, jax.sharding.Mesh) or mesh.axis_names != (AXIS,):
        raise TypeError(f"mesh: expected jaxbp.parallel.data_mesh(...), got {mesh!r:.80}")
    columns, params, state = replicate((columns, params, state), mesh)
    if val_columns is not None:
        val_columns = replicate(val_columns, mesh)
    return params, state, columns, val_columns, (-batch_size) % mesh.devices.size


def _history(history, validating):
    """A copy of `history` (a resumed run's) with a list for every record's key."""
    history = {k: list(v) for k, v in (history or {}).items()}
    for k in ("epoch", "lr", "train_cost", "seconds") + (("val_cost", "val_score")
                                                         if validating else ()):
        history.setdefault(k, [])
    return history


def _progress_bar(progress, epochs):
    if not (sys.stderr.isatty() if progress is None else progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, desc="fit", unit="epoch", leave=True)


def _show(bar, record):
    if bar is not None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in record.items()
                         if k in ("train_cost", "val_cost", "val_score")})


def _lookahead(lookahead, callback, on_epoch_end, params, state):
    """How many epochs may run ahead of the one read back: see `fit`'s docstring."""
    nbytes = sum(x.nbytes for x in jax.tree.leaves((params, state)))
    within = int(max(1, backends.LOOKAHEAD_BYTES // max(nbytes, 1)))  # pending epochs
    if lookahead is not None:
        return min(validate.positive_int("lookahead", lookahead), within)
    if callback is not None or on_epoch_end is not None:
        return 1
    return min(8, within)


def _dispatched_epochs(net, opt, cfg, params, state, columns, val_columns, key, schedule,
                       epochs, alpha, lookahead):
    """Yields (epoch, lr, params, state, J, (val_cost, val_score) or None) for each epoch in
    order, keeping up to `lookahead` epochs dispatched to the device ahead of the one yielded
    (JAX runs them asynchronously): while Python records epoch e, the device already runs
    e+1, e+2, ... Each dispatched epoch keeps its own params, so stopping at e (early
    stopping, a diverging cost) returns exactly what a one-at-a-time loop returns; the epochs
    run past e are discarded when the generator is closed. With lookahead 1 every epoch is
    shown to the hooks before the next is dispatched (a hook may change what comes next,
    e.g. scikit-learn's 'adaptive' learning rate)."""
    (Xc, Yc, wc), dtype = columns, validate.param_dtype(params)
    m, end, pending = Xc.shape[1], epochs.stop, collections.deque()
    for epoch in epochs:
        lr = schedule(opt.lr, epoch, end, epoch * m)
        params, state, J = _epoch(  # scalars as NumPy: no extra dispatch
            net, opt, cfg, params, state, Xc, Yc, wc, key, np.int32(epoch),
            np.asarray(lr, dtype), np.asarray(alpha, dtype))
        val = _evaluate(net, params, *val_columns) if val_columns is not None else None
        pending.append((epoch, lr, params, state, J, val))
        if len(pending) >= lookahead:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def divergence(epoch, J, lr, alpha):
    """The DivergenceError of epoch `epoch` (counted from 0), whose training cost J is not
    finite, trained at learning rate lr with L2 alpha."""
    return DivergenceError(
        f"epoch {epoch} (counted from 0): the training cost became {float(J)}; try a smaller "
        f"learning rate (now {lr:g}){' or a smaller alpha' if alpha else ''}")


def _record(epoch, lr, J, val, alpha):
    """The epoch's history record (cost read back from the device), or DivergenceError."""
    J = float(J)
    if not math.isfinite(J):
        raise divergence(epoch, J, lr, alpha)
    record = {"epoch": epoch, "lr": lr, "train_cost": J}
    if val is not None:
        record |= {"val_cost": float(val[0]), "val_score": float(val[1])}
    return record
