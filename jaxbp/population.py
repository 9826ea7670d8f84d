"""Populations: k networks of one architecture trained at once, each epoch one compiled call.

The seeds vectorise over examples; a population vectorises over models too. Member i has its
own key (initial weights, shuffles, dropout masks), learning rate, L2 alpha, training rows and
sample weights; every member runs `fit`'s epoch body (`jax.vmap` of it: batching, not
differentiation), so member i computes what `fit` computes alone on its rows:

    fit_population(net, X, y, keys=[0, 1, 2], lr=[1e-3, 3e-3, 1e-2], rows=folds)
    member i  ==  fit(net, X[rows[i]], y[rows[i]], key=keys[i], opt=adam(lr[i]), ...)

Members with the same batch size and number of batches (their rows may differ by less than a
batch: `shuffle_padded` draws each one's own order, and the shorter ones' last batch ends in a
zero column of weight 0), number of validation rows, shuffle setting, kind of optimizer
(`optimizer_kind`) and dropout on or off (all shape the compiled program) form a group: one
vmapped program each, dispatched one after another every epoch; within a group the dropout
probabilities and optimizer settings that differ (Adam's b1, b2, eps, SGD's momentum) are
traced values, those that all share are compiled in, as in `fit`; a group too large for
`memory=` splits into chunks (`member_bytes`), and a group spreads over the devices, a part
and a program on each (`_groups`). Each member's epoch order is drawn alone (`lax.map`):
XLA's random-bit generator, batched by vmap, would draw one stream for the whole batch of
keys. Members with the same key and rows (a grid's candidates on one fold) draw the same
orders and batches: they train in runs that draw and gather each batch once and stack their
first layers into one matmul (`_population_epoch`).

Each member holds out its own validation rows (a fraction of its rows chosen with its key,
as `fit` does, or rows given) and stops on its own (`fit`'s early-stopping rule); a stopped
member's parameters stop changing while the others run, and the population ends when every
member has stopped. Each member's learning rate follows its own schedule (`fit.Schedule`),
and `fit`'s hooks (`callback`, `on_epoch_end`) run per member as `fit` runs them: that is
how `jaxbp.sklearn.GridSearchCV` trains the estimators' own stopping rules (search.py).
"""

import collections
import dataclasses
import functools
import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import backends, optim, validate
from jaxbp.backends import shuffle_kind
from jaxbp.fit import (
    FitResult,
    _cost_and_score,
    _epoch_in_order,
    _epoch_order,
    _held_out_rows,
    _lookahead,
    _param_fields,
    _progress_bar,
    _Static,
    _training_rows,
    as_schedule,
    divergence,
)
from jaxbp.model import MLP, init


@dataclasses.dataclass
class PopulationResult:
    """What `fit_population` returns. `history` maps a name (train_cost, lr, and with
    validation val_cost, val_score) to an array (epochs, k): member i's value of each epoch,
    NaN after it stopped. `member(i)` is member i's result in `fit`'s form."""

    params: list
    opt_state: list
    history: dict
    epochs_run: np.ndarray
    best_epoch: list
    stopped_early: np.ndarray
    keys: list
    diverged: np.ndarray  # members whose cost stopped being finite (`fit` would have raised)
    alpha: list  # each member's L2 alpha

    def member(self, i):
        """Member i as a `FitResult`: what `fit` alone would have returned (for a member that
        diverged, the DivergenceError `fit` would have raised, with its message)."""
        n = int(self.epochs_run[i])
        if self.diverged[i]:  # epoch n (counted from 0) is the one whose cost was not finite
            raise divergence(n, self.history["train_cost"][n, i], self.history["lr"][n, i],
                             self.alpha[i])
        history = {"epoch": list(range(n))}
        history |= {k: [float(v) for v in self.history[k][:n, i]] for k in self.history}
        return FitResult(self.params[i], self.opt_state[i], history, n, self.best_epoch[i],
                         bool(self.stopped_early[i]), self.keys[i])


@dataclasses.dataclass(frozen=True)
class _Member:
    """One member's rows (indices into X), validation rows (or None) and settings."""

    rows: np.ndarray
    val: Any
    key: Any
    lr: float
    alpha: float
    dropout: float
    batch_size: int
    schedule: Any
    shuffle: bool
    opt: Any  # its optimizer (lr aside: `lr` above)

    def lr_at(self, epoch, epochs):
        """The learning rate of epoch `epoch`, as `fit` computes it."""
        return self.schedule(self.lr, epoch, epochs, epoch * len(self.rows))

    def group(self):
        """What shapes the compiled program: members that share it train as one vmap. Members
        of different lengths share it when they have as many batches (and their shuffles the
        same `shuffle_kind`): the shorter ones' last batch ends in zero-weight columns, as
        `fit` pads a last batch."""
        m = len(self.rows)
        rows = (-(-m // self.batch_size), shuffle_kind(m) if self.shuffle else 0)
        if rows[1] is None:  # beyond `shuffle_padded`: members of one length only
            rows = (m, None)
        return (rows, 0 if self.val is None else len(self.val), self.batch_size,
                self.dropout > 0, self.shuffle, optimizer_kind(self.opt))

    @functools.cached_property
    def key_id(self):
        """Its key, hashable."""
        return str(self.key.dtype), np.asarray(jax.random.key_data(self.key)).tobytes()

    @functools.cached_property
    def share(self):
        """What its epochs' orders, dropout keys and batches' columns depend on beyond its
        group: its key and its rows. Members of a group equal in it draw the same batches."""
        return self.key_id, self.rows.tobytes()

    def value(self, field):
        """Its value of a field that may vary within a group: dropout, or its optimizer's."""
        return self.dropout if field == "dropout" else getattr(self.opt, field)


def optimizer_kind(opt):
    """What of an optimizer shapes a population's compiled program: its class and fields,
    except the learning rate and the fields members may set each (`PER_MEMBER`), of which
    only whether they are 0 (SGD's momentum 0 keeps no velocity)."""
    fields = [f.name for f in dataclasses.fields(opt)]
    return (type(opt).__name__,
            *((f, getattr(opt, f)) for f in fields if f != "lr" and f not in opt.PER_MEMBER),
            *((f, getattr(opt, f) == 0) for f in opt.PER_MEMBER))


def _population_epoch(net, opt, varying, cfg, shared, params, state, X, Y, rows, sizes,
                      weights, keys, epoch, lr, alpha, hyper, active):
    """One epoch of a group: each member's order drawn alone, then the vmapped epoch body on
    its own rows (columns `rows[i]` of X and Y, in its order; weights w_i) and with its own
    values of the optimizer's fields `varying` (hyper[i]); members not active keep their
    parameters and state. The members come in runs of `shared` that draw the same batches
    (`_Member.share`: a grid's candidates on one fold): a run's order, dropout keys and
    batches are drawn and gathered once, and its members' first-layer matmuls W^1 X (and
    dW^1 = Δ^1 Xᵀ) are one matmul with the run's W^1 stacked ((shared · n_1, n_0) rows)."""
    M = rows.shape[1]  # the longest member's rows; the others end in the zero column
    orders, k_drops = jax.lax.map(lambda a: _epoch_order(cfg, a[0], epoch, a[1], M),
                                  (keys[::shared], sizes[::shared]))

    def member(p, s, w, lr, alpha, h, r, order, k_drop):
        values = {f: h[j] for j, f in enumerate(varying)}
        own_cfg = dataclasses.replace(cfg, dropout=values.pop("dropout", cfg.dropout))
        own = dataclasses.replace(opt, **values)
        # its rows in its epoch's order, as indices into X: one gather of each batch's columns
        return _epoch_in_order(net, own, own_cfg, p, s, X, Y, w, r[order], k_drop, lr, alpha)

    run = jax.vmap(member, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))  # rows, order shared
    runs = jax.tree.map(lambda a: a.reshape((len(a) // shared, shared, *a.shape[1:])),
                        (params, state, weights, lr, alpha, hyper))
    out = jax.vmap(run)(*runs, rows[::shared], orders, k_drops)
    new_p, new_s, J = jax.tree.map(lambda a: a.reshape((len(a) * shared, *a.shape[2:])), out)
    return _where(active, new_p, params), _where(active, new_s, state), J


def _where(pick, new, old):
    """Per member (the leading axis), `new` where pick[i], else `old`."""
    return jax.tree.map(lambda a, b: jnp.where(pick.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                        new, old)


def _population_scores(net, params, X, Y, val_rows):
    """Each member's (validation cost, score) on its own validation columns."""
    return jax.vmap(lambda p, r: _cost_and_score(net, p, X[:, r], Y[:, r]))(params, val_rows)


def _split(*stacked):
    """[(tree_i, ...)] for each member i of a group: its slices of the stacked trees, as NumPy
    arrays (one transfer; a compiled split of k members compiles k outputs per leaf: minutes,
    and more memory than LLVM had, for k = 1024)."""
    stacked = jax.device_get(stacked)
    k = jax.tree.leaves(stacked)[0].shape[0]
    return [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(k)]


@functools.lru_cache(maxsize=64)
def _epoch_over(net, opt, varying, cfg, shared):
    """The group's compiled epoch (it runs on the device its arrays are on)."""
    return jax.jit(functools.partial(_population_epoch, net, opt, varying, cfg, shared))


_scores = jax.jit(_population_scores, static_argnums=0)
_keep = jax.jit(_where)


def _per_member(name, value, k, check):
    """`value` for each of the k members: one value for all, or a sequence of k."""
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * k
    if len(values) != k:
        raise ValueError(f"{name}: expected one value or {k} (one per member), got "
                         f"{len(values)}")
    return [check(name, v) for v in values]


def _optimizer(name, v):
    optim.check_is_optimizer(v)
    return v


def _bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {v!r}")
    return bool(v)


def _callable(name, v):
    if v is not None and not callable(v):
        raise TypeError(f"{name}: expected a callable or None, got {type(v).__name__}")
    return v


def _positive(name, v):
    if validate.non_negative(name, v) == 0 or not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number > 0, got {v!r}")
    return float(v)


def _member_rows(rows, m, k, name="rows"):
    """Each member's rows, as int arrays of indices into X (default: all m rows)."""
    if rows is None:
        return [np.arange(m)] * k
    if len(rows) != k:
        raise ValueError(f"{name}: expected {k} index arrays (one per member), got {len(rows)}")
    out = []
    for i, r in enumerate(rows):
        r = np.asarray(r)
        if r.ndim != 1 or r.size == 0 or r.dtype.kind not in "iu" or r.min() < 0 or \
                r.max() >= m:
            raise ValueError(f"{name}[{i}]: expected a non-empty 1-D array of row indices in "
                             f"0..{m - 1}, got shape {r.shape} and dtype {r.dtype}")
        out.append(r.astype(np.int64))
    return out


def _member_weights(sample_weight, rows, m, k):
    """(k, m) float64 weights: none (ones), one (m,) vector for all, or (k, m), one row per
    member; each member's weights on its rows finite, >= 0, with a positive sum."""
    w = np.ones((k, m)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    w = np.broadcast_to(w, (k, m)) if w.shape == (m,) else w
    if w.shape != (k, m) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"sample_weight: expected finite weights >= 0 of shape ({m},) or "
                         f"({k}, {m}), got shape {np.shape(sample_weight)}")
    for i, r in enumerate(rows):
        if not np.sum(w[i, r]) > 0:
            raise ValueError(f"sample_weight: member {i}'s rows all weigh 0")
    return w


def _members(net, y, keys, rows, settings, validation_fraction, validation_rows):
    """The k members: their rows less the validation rows they hold out (a fraction chosen
    with the member's key, as `fit` chooses it, or the rows given), and their settings."""
    members = []
    for i, (key, train) in enumerate(zip(keys, rows, strict=True)):
        val = None if validation_rows is None else validation_rows[i]
        split = None if val is not None else _held_out_rows(net, key, y[train],
                                                            validation_fraction)
        if split is not None:
            train, val = train[split[0]], train[split[1]]
        lr, alpha, dropout, schedule, batch_size, shuffle, opt = (values[i]
                                                                 for values in settings)
        members.append(_Member(train, val, key, lr, alpha, dropout, min(batch_size, len(train)),
                               schedule, shuffle, opt))
    return members


class _Group(NamedTuple):
    """Members that share one compiled program and one device, and their arrays, stacked
    member by member on that device."""

    members: list
    cfg: Any
    rows: Any  # (members, M): each member's rows, then the zero column up to the longest's M
    sizes: Any  # (members,): each member's number of rows
    val_rows: Any
    weights: Any
    keys: Any
    alpha: Any
    specs: list  # the members' `_Member`s, in the order of `members`
    dtype: Any
    shared: int = 1  # the members come in runs of `shared` that draw the same batches
    device: Any = None  # the device its members train on...
    data: tuple = ()  # ...and (X, Y) there, column-major, followed by the zero column
    opt: Any = None  # the program's optimizer: the members', but for the fields in `varying`
    varying: tuple = ()  # the fields (dropout, the optimizer's) that differ between members...
    hyper: Any = None  # ...and their values, (members, len(varying))

    def lr(self, epoch, epochs):
        """The members' learning rates of epoch `epoch`, as `fit` passes its one."""
        return np.asarray([m.lr_at(epoch, epochs) for m in self.specs], self.dtype)

    def mask(self, flags):
        """The members' flags (indexed by member number) placed on the group's device."""
        return self.place(flags[self.members])

    def place(self, tree):
        """A tree stacked over the group's members, placed on its device once (not sent
        again with each epoch's call)."""
        return jax.device_put(tree, self.device)


def _run_length(specs):
    """c where `specs` come in runs of c consecutive members that draw the same batches
    (`_Member.share`), else 1."""
    runs = [len(list(run)) for _, run in itertools.groupby(m.share for m in specs)]
    return runs[0] if len(set(runs)) == 1 else 1


def _group(members, idx, w, dtype, device, data):
    """The group of members `idx`, on `device` (where `data` is)."""
    ms = [members[i] for i in idx]
    varying = tuple(f for f in ("dropout", *ms[0].opt.PER_MEMBER)
                    if len({m.value(f) for m in ms}) > 1)  # traced; the others compiled in
    placeholders = dict.fromkeys(varying, 0.5)  # > 0, as every member's value (`group`)
    g = _Group(idx, _Static(ms[0].batch_size, ms[0].shuffle,
                            placeholders.pop("dropout", ms[0].dropout),
                            max(m.alpha for m in ms) > 0, gather_in_step=True, flat=False),
               None, None, None, None, None, None, ms, dtype, _run_length(ms), device, data,
               dataclasses.replace(ms[0].opt, lr=1.0, **placeholders), varying)
    val = None if ms[0].val is None else np.stack([m.val for m in ms]).astype(np.int32)
    M = max(len(m.rows) for m in ms)
    rows = np.full((len(ms), M), data[0].shape[1] - 1, np.int32)  # the zero column
    for j, m in enumerate(ms):
        rows[j, :len(m.rows)] = m.rows
    return g._replace(rows=g.place(jnp.asarray(rows)),
                      sizes=g.place(jnp.asarray([len(m.rows) for m in ms], jnp.int32)),
                      val_rows=None if val is None else g.place(jnp.asarray(val)),
                      weights=g.place(jnp.asarray(w[idx], dtype)),
                      keys=g.place(jnp.stack([m.key for m in ms])),
                      alpha=g.place(np.asarray([m.alpha for m in ms], dtype)),
                      hyper=g.place(np.asarray([[m.value(f) for f in varying] for m in ms],
                                               dtype).reshape(len(ms), len(varying))))


def member_bytes(net, opt, params, m, batch_size):
    """What one member adds to the device's memory, in bytes (an estimate, from above):

        itemsize · [(3 + s) P + 4 b Σ_l n_l + 2 m (n_0 + n_L + 1)]

    P parameters, held with their gradient and update (3 P) and s optimizer slots shaped like
    them (Adam 2, SGD with momentum 1); Z, A, Δ and a dropout mask per unit and batch column
    (4 b Σ n_l); the member's m training columns of X, Y and weights, gathered and then split
    into batches (twice)."""
    slots = sum(_param_fields(opt.init(params), params))
    itemsize = jnp.dtype(validate.param_dtype(params)).itemsize
    return itemsize * ((3 + slots) * net.num_params() + 4 * batch_size * sum(net.sizes)
                       + 2 * m * (net.sizes[0] + net.sizes[-1] + 1))


def _members_per_chunk(net, params, members, memory):
    """How many members one program call may train within `memory` bytes (at least 1)."""
    if memory is None:
        stats = jax.devices()[0].memory_stats() or {}
        memory = stats.get("bytes_limit", 4 << 30) // 2
    opts = {optimizer_kind(m.opt): m.opt for m in members}.values()  # one of each kind
    largest = max(member_bytes(net, opt, params, max(len(m.rows) for m in members),
                               max(m.batch_size for m in members)) for opt in opts)
    return max(1, int(validate.positive_int("memory", memory) // largest))


def _init_all(net, members):
    """Every member's initial parameters, stacked (NumPy arrays, on the host): `init` of
    fold_in(key, 2³¹ − 2), as `fit` draws them, one key at a time (compiled, or vmapped, the
    normal draws' transform rounds differently: 1 ulp in some weights); once per key (a
    grid's candidates share theirs). Stacked and cut into groups by NumPy: JAX would compile
    a stack, a gather and a slice per leaf shape (~0.2 s of a search's first call here)."""
    drawn = {}
    for m in members:
        if m.key_id not in drawn:
            drawn[m.key_id] = jax.device_get(init(net, jax.random.fold_in(m.key, 2**31 - 2)))
    params = [drawn[m.key_id] for m in members]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *params)


def _take(tree, idx):
    """The members `idx` (a list) of a tree stacked over members."""
    at = np.asarray(idx)
    return jax.tree.map(lambda x: x[at], tree)


def fit_population(net, X, y, *, keys, opt=None, lr=None, alpha=0.0, dropout=0.0,
                   schedule="constant", rows=None, sample_weight=None, epochs=200,
                   batch_size=None, shuffle=True,
                   validation_fraction=0.0, validation_rows=None, early_stopping=False,
                   patience=10, min_delta=1e-4, restore_best=True, progress=None,
                   memory=None, callback=None, on_epoch_end=None, devices=None,
                   lookahead=None):
    """Train k = len(keys) members of `net` at once; member i equals `fit` run alone on
    X[rows[i]], y[rows[i]] with key keys[i], learning rate lr[i], alpha[i] and dropout[i].

    Arguments:
        net, X, y, epochs, batch_size, shuffle, validation_fraction, early_stopping,
            patience, min_delta, restore_best, progress: as for `fit`, applied to each
            member (batch_size: min(batch_size or 200, its training rows); the validation
            fraction is held out of each member's rows with its key).
        keys: k int seeds or PRNG keys, one per member.
        opt: the optimizer (default Adam, lr 1e-3), or k of them, one per member: members
            whose optimizers differ only in lr and the fields of their class's `PER_MEMBER`
            (Adam's b1, b2, eps; SGD's momentum) share a compiled program.
        lr, alpha, dropout, schedule, batch_size, shuffle: one value for every member, or k
            values (lr default: each opt's lr; schedule: a name or a `Schedule`, as `fit`).
        rows: k arrays of row indices into X, each member's rows (e.g. the training folds of
            a cross-validation); default: every row for every member.
        validation_rows: k arrays of row indices into X, each member's validation rows (e.g.
            its held-out fold), instead of a validation fraction.
        sample_weight: (m,) weights for all members, or (k, m), a row per member.
        callback, on_epoch_end: `fit`'s hooks, one for every member or k (None: none), called
            after each epoch a member runs, as `fit` calls them (with the member's record,
            and with its `FitResult` so far and the epoch); a callback returning True stops
            its member.
        memory: bytes the members' arrays may take on the device (default: half of what the
            device reports, or 2 GiB where it reports nothing, as a CPU); a larger population
            trains in chunks of members, one program call each (`member_bytes`).
        devices: the devices the members are spread over, each training its share of every
            group (default: all of `jax.local_devices()`; a CPU shows one device unless
            `jaxbp.use_cpu_cores()` ran first). Results do not depend on them.
        lookahead: how many epochs may be dispatched before the oldest one's records are read
            back, as for `fit` (a member that stops gets back its state of the epoch it
            stopped at). Default: 8 without hooks, 1 with one (a hook may change the next
            epoch's learning rate); capped so that the pending epochs' parameters and
            optimizer states take at most `backends.LOOKAHEAD_BYTES`.

    Returns a `PopulationResult`; `result.member(i)` is member i's `FitResult`.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a jaxbp.MLP, got {type(net).__name__}")
    backends.compilation_cache()
    if isinstance(keys, (int, np.integer)) or len(keys) < 1:
        raise ValueError(f"keys: expected a sequence of k >= 1 seeds or keys, got {keys!r:.60}")
    keys = [validate.prng_key(key) for key in keys]
    k = len(keys)
    X, Y, _ = _training_rows(net, X, y, None)
    rows = _member_rows(rows, X.shape[0], k)
    if validation_rows is not None:
        validation_rows = _member_rows(validation_rows, X.shape[0], k, "validation_rows")
    w = _member_weights(sample_weight, rows, X.shape[0], k)
    opts = _per_member("opt", optim.adam(1e-3) if opt is None else opt, k, _optimizer)
    settings = (_per_member("lr", [o.lr for o in opts] if lr is None else lr, k, _positive),
                _per_member("alpha", alpha, k, validate.non_negative),
                _per_member("dropout", dropout, k, validate.fraction),
                _per_member("schedule", schedule, k, lambda name, v: as_schedule(v)),
                _per_member("batch_size", 200 if batch_size is None else batch_size, k,
                            validate.positive_int),
                _per_member("shuffle", shuffle, k, _bool), opts)
    members = _members(net, np.asarray(y), keys, rows, settings,
                       validate.fraction("validation_fraction", validation_fraction),
                       validation_rows)
    stopping = _Stopping(k, members[0].val is not None, bool(early_stopping),
                         validate.positive_int("patience", patience), float(min_delta))
    hooks = None if callback is None and on_epoch_end is None else _Hooks(
        _per_member("callback", callback, k, _callable),
        _per_member("on_epoch_end", on_epoch_end, k, _callable), keys)
    return _train(net, X, Y, w, members, validate.positive_int("epochs", epochs),
                  stopping, restore_best, progress, memory, hooks, _devices(devices), lookahead)


def _devices(devices):
    """The devices to spread members over: distinct jax Devices (default: the local ones)."""
    devices = jax.local_devices() if devices is None else devices
    if isinstance(devices, jax.Device) or not all(isinstance(d, jax.Device) for d in devices) \
            or not 0 < len(set(devices)) == len(devices):
        raise ValueError(f"devices: expected a non-empty sequence of distinct jax devices, got "
                         f"{devices!r:.80}")
    return list(devices)


def _train(net, X, Y, w, members, epochs, stopping, restore_best, progress, memory, hooks,
           devices, lookahead):
    """Place the groups on the device, run the epochs, gather the members back in order."""
    params = _init_all(net, members)
    first = validate.params(net, jax.tree.map(lambda x: x[0], params))
    dtype = validate.param_dtype(first)
    Xc = validate.inputs(net, first, X.T)
    Yc = validate.targets(net, first, Y, m=X.shape[0])
    # a zero column of weight 0 after the rows: where shorter members' last batches end
    Xc, Yc = (jnp.concatenate([A, jnp.zeros((A.shape[0], 1), A.dtype)], axis=1)
              for A in (Xc, Yc))
    w = np.concatenate([w, np.zeros((w.shape[0], 1))], axis=1)
    chunk = _members_per_chunk(net, first, members, memory)
    groups = _groups(members, w, dtype, devices, chunk, (Xc, Yc))
    carry = []
    for g in groups:
        p = _take(params, g.members)
        carry.append(list(g.place((p, jax.vmap(g.opt.init)(p)))))
    for c in carry:
        c.append(c[0])  # the best parameters so far
    done = {}  # member -> (params, state, best params) of the members compacted away
    lookahead = _lookahead(lookahead, hooks, None, [c[0] for c in carry], [c[1] for c in carry])
    history = _run(net, groups, carry, epochs, stopping, hooks, progress, done, lookahead)
    for g, c in zip(groups, carry, strict=True):
        done |= dict(zip(g.members, _split(*c), strict=True))
    k = len(members)
    params, state = [None] * k, [None] * k
    for i, (p_i, s_i, best_i) in done.items():
        keep = stopping.stopped[i] and restore_best and stopping.best_epoch[i] is not None
        params[i], state[i] = best_i if keep else p_i, s_i
    return PopulationResult(params, state, history, stopping.epochs_run, stopping.best_epoch,
                            stopping.stopped, [m.key for m in members], stopping.diverged,
                            [m.alpha for m in members])


def _run(net, groups, carry, epochs, stopping, hooks, progress, done, lookahead):
    """The epochs: each group's program dispatched up to `lookahead` epochs ahead of the one
    read back, the members' records read in order, the early-stopping rule and the hooks
    applied per member; until every member has stopped. A member that stops at epoch e
    (rule, hook or divergence) while later epochs were already dispatched gets back its state
    of epoch e (`_read`): as if it had stopped there, as `fit` drops the epochs it ran ahead."""
    history = collections.defaultdict(list)
    bar = _progress_bar(progress, epochs)
    pending, placed, epoch = collections.deque(), _Placed(), 0
    try:
        while True:
            if not pending and _compaction_due(groups, stopping.active):
                groups[:], carry[:] = _compact(groups, carry, stopping.active, done)
            if not _compaction_due(groups, stopping.active):  # else read what is pending
                while epoch < epochs and len(pending) < lookahead:
                    pending.append(_launch(net, groups, carry, epoch, epochs,
                                           stopping.active, placed))
                    epoch += 1
            if not pending:
                break
            _read(pending.popleft(), groups, carry, stopping, hooks, history)
            if bar is not None:
                bar.update(1)
            if not stopping.active.any():
                break
    finally:
        if bar is not None:
            bar.close()
    return {name: np.stack(v) for name, v in history.items()}


def _groups(members, w, dtype, devices, chunk, data):
    """The members in groups: those that share a compiled program (`_Member.group`) in parts
    (`_parts`), each on the device with the fewest members so far. Each device runs programs
    of its own: one program spread over the devices (`shard_map` over a mesh) held the
    caller in each call for most of an epoch on a 2-core CPU (5-7 ms of ~10: "Wait for
    LaunchOnDevice completion" in a profile), the devices idle meanwhile."""
    programs = collections.defaultdict(list)
    for i, m in enumerate(members):
        programs[m.group()].append(i)
    load, on = dict.fromkeys(devices, 0), {}
    groups = []
    for idx in programs.values():
        for part in _parts(members, idx, len(devices), chunk):
            device = _least_loaded(load, len(part))
            if device not in on:  # X and Y on each device once
                on[device] = jax.device_put(data, device)
            groups.append(_group(members, part, w, dtype, device, on[device]))
    return groups


def _parts(members, idx, devices, chunk):
    """The members `idx` of one program in parts of at most `chunk` members, one per device at
    least (where there are as many members), each part's members in runs that draw the same
    batches (`_Member.share`): where every run of the group has c members (a grid of
    candidates × folds), a part is a block of s' runs × c' of their members. Of the ways to
    cut the grid into blocks (s rows of runs × c' columns of members), the one whose busiest
    device (the blocks given in turn to the least loaded, as `_groups` gives them) trains the
    fewest members, then the fewest parts (program calls), then cut along the runs."""
    runs = collections.defaultdict(list)
    for i in idx:
        runs[members[i].share].append(i)
    grid = list(runs.values())
    grid = np.asarray(grid if len({len(r) for r in grid}) == 1 else [[i] for i in idx])
    least = min(devices, len(idx))  # parts at least
    cuts = []
    for across in range(1, grid.shape[1] + 1):
        widest = -(-grid.shape[1] // across)  # members of a run in a block, at most
        downs = itertools.islice((d for d in range(max(1, -(-least // across)), grid.shape[0] + 1)
                                  if -(-grid.shape[0] // d) * widest <= chunk), devices + 1)
        cuts += [(_busiest(_cut_sizes(grid.shape, d, across), devices),
                  d * across, across, d) for d in downs]
    *_, across, down = min(cuts)  # (across = c, down = every run: blocks of one, always fit)
    return [[int(i) for i in b.ravel()] for rows in np.array_split(grid, down)
            for b in np.array_split(rows, across, axis=1)]


def _cut_sizes(shape, down, across):
    """The block sizes of `np.array_split` of a (runs, c) grid into down × across blocks."""
    def sizes(n, k):
        return [n // k + 1] * (n % k) + [n // k] * (k - n % k)
    return [r * c for r in sizes(shape[0], down) for c in sizes(shape[1], across)]


def _least_loaded(load, size):
    """The device with the fewest members so far ({device: members}), given `size` more."""
    device = min(load, key=load.get)
    load[device] += size
    return device


def _busiest(sizes, devices):
    """The members of the busiest device when blocks of these sizes go, in turn, each to the
    least loaded device (`_least_loaded`, as `_groups` gives them)."""
    load = dict.fromkeys(range(devices), 0)
    for size in sizes:
        _least_loaded(load, size)
    return max(load.values())


def _half_stopped(g, active):
    """Whether at most half of group g's members are still active: `_compact` then takes
    the stopped ones out."""
    return 2 * np.count_nonzero(active[g.members]) <= len(g.members)


def _compaction_due(groups, active):
    return any(_half_stopped(g, active) for g in groups)


class _Placed:
    """Per-member values (learning rates, the active mask) placed on a group's devices, and
    placed again only when they change: most epochs repeat the previous epoch's values."""

    def __init__(self):
        self.last = {}

    def __call__(self, g, name, values):
        kept = self.last.get((id(g), name))
        if kept is not None and kept[0] is g and np.array_equal(kept[1], values):
            return kept[2]
        placed = g.place(values)
        self.last[(id(g), name)] = (g, values, placed)
        return placed


def _compact(groups, carry, active, done):
    """Groups without their stopped members, once at most half of a group is still active
    (a stopped member is frozen but still computed; halving bounds the programs compiled
    anew to log2 of the group's size). The members taken out go to `done`."""
    kept_groups, kept_carry = [], []
    for g, c in zip(groups, carry, strict=True):
        if not _half_stopped(g, active):
            kept_groups.append(g)
            kept_carry.append(c)
            continue
        parts = _split(*c)
        done |= {i: parts[j] for j, i in enumerate(g.members) if not active[i]}
        keep = [j for j, i in enumerate(g.members) if active[i]]
        if keep:
            at = np.asarray(keep)
            specs = [g.specs[j] for j in keep]
            new = g._replace(members=[g.members[j] for j in keep], specs=specs,
                             shared=_run_length(specs))
            kept_carry.append([new.place(jax.tree.map(lambda x, at=at: x[at], t)) for t in c])
            kept_groups.append(new._replace(
                rows=new.place(g.rows[at]), sizes=new.place(g.sizes[at]),
                weights=new.place(g.weights[at]),
                val_rows=None if g.val_rows is None else new.place(g.val_rows[at]),
                keys=new.place(g.keys[at]), alpha=new.place(g.alpha[at]),
                hyper=new.place(g.hyper[at])))
    return kept_groups, kept_carry


class _Pending(NamedTuple):
    """An epoch dispatched: its number, each group's learning rates, outputs (J, and the
    validation cost and score) and (params, state) after it."""

    epoch: int
    lrs: list
    outs: list
    carries: list


def _launch(net, groups, carry, epoch, epochs, active, placed):
    """Dispatch epoch `epoch` of every group (members not active keep their parameters);
    nothing waits for it."""
    lrs, outs, carries = [], [], []
    for g, c in zip(groups, carry, strict=True):
        lrs.append(g.lr(epoch, epochs))  # asked once: a schedule may keep state
        c[0], c[1], J = _epoch_over(net, g.opt, g.varying, g.cfg, g.shared)(
            c[0], c[1], *g.data, g.rows, g.sizes, g.weights, g.keys, np.int32(epoch),
            placed(g, "lr", lrs[-1]), g.alpha, g.hyper, placed(g, "active", active[g.members]))
        outs.append((J, None if g.val_rows is None else _scores(net, c[0], *g.data,
                                                                g.val_rows)))
        carries.append((c[0], c[1]))
    return _Pending(epoch, lrs, outs, carries)


def _read(epoch, groups, carry, stopping, hooks, history):
    """Read back a dispatched epoch: its record (train_cost, lr, and val_cost, val_score) into
    `history`, the stopping rule, the best parameters so far, the hooks; the members that
    stopped at it get back their state of it where later epochs were dispatched."""
    record = _record(groups, epoch.outs, len(stopping.active))
    record["lr"] = np.empty(len(stopping.active))
    for g, lr in zip(groups, epoch.lrs, strict=True):
        record["lr"][g.members] = lr
    was_active = stopping.active.copy()
    ran, improved = stopping.update(epoch.epoch, record)
    for g, c, (p, _) in zip(groups, carry, epoch.carries, strict=True):
        if stopping.early_stopping and improved[g.members].any():  # else never read
            c[2] = _keep(g.mask(improved), p, c[2])
    for name, v in record.items():
        history[name].append(np.where(ran, v, np.nan))
    if hooks is not None:
        hooks(epoch.epoch, ran, groups, epoch.carries, history, stopping)
    stopped = was_active & ~stopping.active
    for g, c, (p, s) in zip(groups, carry, epoch.carries, strict=True):
        if c[0] is not p and stopped[g.members].any():  # epochs past it ran: undo them
            c[0], c[1] = _keep(g.mask(stopped), (p, s), (c[0], c[1]))


class _Hooks:
    """`fit`'s callback and on_epoch_end, one per member, called after each epoch the member
    ran, in member order, as `fit` calls them (on_epoch_end first, with the member's result
    so far, its history growing as `fit`'s does; then callback with its record, True
    stopping it)."""

    def __init__(self, callbacks, on_epoch_end, keys):
        self.callbacks, self.on_epoch_end, self.keys = callbacks, on_epoch_end, keys
        self.histories = [collections.defaultdict(list) for _ in keys]

    def __call__(self, epoch, ran, groups, carry, history, stopping):
        for g, c in zip(groups, carry, strict=True):
            parts = functools.cache(lambda c=c: _split(c[0], c[1]))  # once per group, if read
            for j, i in enumerate(g.members):
                if not ran[i] or stopping.diverged[i]:  # fit raises before its hooks
                    continue
                record = {"epoch": epoch} | {k: float(v[-1][i]) for k, v in history.items()}
                if self.on_epoch_end[i] is not None:
                    for k, v in record.items():
                        self.histories[i][k].append(v)
                    self.on_epoch_end[i](_SoFar(parts, j, dict(self.histories[i]),
                                                int(stopping.epochs_run[i]),
                                                stopping.best_epoch[i], self.keys[i]), epoch)
                if self.callbacks[i] is not None and self.callbacks[i](record) is True:
                    stopping.active[i], stopping.stopped[i] = False, False


class _SoFar(FitResult):
    """Member j's `FitResult` so far, as `on_epoch_end` receives it; its parameters and
    optimizer state are taken out of the group's stacked arrays only when the hook reads them
    (the estimators' hook reads them only with a validation split): each take waits for the
    epoch and, on several devices, gathers the members."""

    def __init__(self, parts, j, history, epochs_run, best_epoch, key):
        self._parts, self._j = parts, j
        self.history, self.epochs_run, self.best_epoch = history, epochs_run, best_epoch
        self.stopped_early, self.key = False, key

    @property
    def params(self):
        return self._parts()[self._j][0]

    @property
    def opt_state(self):
        return self._parts()[self._j][1]


def _record(groups, out, k):
    """{train_cost, and val_cost, val_score with validation: (k,) float64} read back."""
    record = collections.defaultdict(lambda: np.full(k, np.nan))
    for g, (J, val) in zip(groups, out, strict=True):
        record["train_cost"][g.members] = np.asarray(J)
        if val is not None:
            record["val_cost"][g.members] = np.asarray(val[0])
            record["val_score"][g.members] = np.asarray(val[1])
    return dict(record)


class _Stopping:
    """`fit`'s early-stopping rule, per member, on the host: the monitored cost (validation
    cost with validation rows, else training cost) must improve by min_delta within
    `patience` epochs; a member whose cost stops being finite stops too (diverged)."""

    def __init__(self, k, validating, early_stopping, patience, min_delta):
        self.monitor = "val_cost" if validating else "train_cost"
        self.early_stopping, self.patience, self.min_delta = early_stopping, patience, min_delta
        self.best, self.best_epoch = np.full(k, np.inf), [None] * k
        self.waited, self.epochs_run = np.zeros(k, int), np.zeros(k, int)
        self.active = np.ones(k, bool)
        self.stopped, self.diverged = np.zeros(k, bool), np.zeros(k, bool)

    def update(self, epoch, record):
        """Apply epoch `epoch`'s record; returns (members that ran it, members improved)."""
        ran = self.active.copy()
        diverged = ran & ~np.isfinite(record["train_cost"])
        value = record[self.monitor]
        improved = ran & ~diverged & (value < self.best - self.min_delta)
        self.best = np.where(improved, value, self.best)
        self.waited = np.where(improved, 0, self.waited + ran)
        for i in np.flatnonzero(improved):
            self.best_epoch[i] = epoch
        self.epochs_run += ran & ~diverged
        stop = ran & ~diverged & self.early_stopping & (self.waited >= self.patience)
        self.stopped |= stop
        self.diverged |= diverged
        self.active &= ~(stop | diverged)
        return ran, improved
