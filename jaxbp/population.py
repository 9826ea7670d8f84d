"""Populations: k networks of one architecture trained at once, each epoch one compiled call.

The seeds vectorise over examples; a population vectorises over models too. Member i has its
own key (initial weights, shuffles, dropout masks), learning rate, L2 alpha, training rows and
sample weights; every member runs `fit`'s epoch body (`jax.vmap` of it: batching, not
differentiation), so member i computes what `fit` computes alone on its rows:

    fit_population(net, X, y, keys=[0, 1, 2], lr=[1e-3, 3e-3, 1e-2], rows=folds)
    member i  ==  fit(net, X[rows[i]], y[rows[i]], key=keys[i], opt=adam(lr[i]), ...)

Members with the same number of rows and the same dropout probability (both shape the
compiled program) form a group: one vmapped program each, dispatched one after another every
epoch. Each member's epoch order is drawn alone (`lax.map`): XLA's random-bit generator,
batched by vmap, would draw one stream for the whole batch of keys.

This first form runs every member for the same number of epochs with a constant learning
rate; validation, early stopping and schedules per member come next.
"""

import collections
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import backends, optim, validate
from jaxbp.fit import _epoch_in_order, _epoch_order, _progress_bar, _Static, _training_rows
from jaxbp.model import MLP, init


@dataclasses.dataclass
class PopulationResult:
    """What `fit_population` returns: per member i, `params[i]` and `opt_state[i]` (as from
    `fit`), and `history["train_cost"][e][i]`, the cost of epoch e."""

    params: list
    opt_state: list
    history: dict
    keys: Any


def _population_epoch(net, opt, cfg, params, state, X, Y, rows, weights, keys, epoch, lr,
                      alpha):
    """One epoch of a group: every member's order alone, then the vmapped epoch body on its
    own rows (columns `rows[i]` of X and Y, weights w_i on them)."""
    m = rows.shape[1]
    orders, k_drops = jax.lax.map(lambda key: _epoch_order(cfg, key, epoch, m), keys)

    def member(p, s, r, w, order, k_drop, lr, alpha):
        return _epoch_in_order(net, opt, cfg, p, s, X[:, r], Y[:, r], w[r], order, k_drop, lr,
                               alpha)

    return jax.vmap(member)(params, state, rows, weights, orders, k_drops, lr, alpha)


_epoch = jax.jit(_population_epoch, static_argnums=(0, 1, 2))


def _per_member(name, value, k, check):
    """`value` for each of the k members: one value for all, or a sequence of k."""
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * k
    if len(values) != k:
        raise ValueError(f"{name}: expected one value or {k} (one per member), got "
                         f"{len(values)}")
    return [check(name, v) for v in values]


def _positive(name, v):
    if validate.non_negative(name, v) == 0 or not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number > 0, got {v!r}")
    return float(v)


def _member_rows(rows, m, k):
    """Each member's training rows, as int arrays of indices into X (default: all m rows)."""
    if rows is None:
        return [np.arange(m)] * k
    if len(rows) != k:
        raise ValueError(f"rows: expected {k} index arrays (one per member), got {len(rows)}")
    out = []
    for i, r in enumerate(rows):
        r = np.asarray(r)
        if r.ndim != 1 or r.size == 0 or r.dtype.kind not in "iu" or r.min() < 0 or \
                r.max() >= m:
            raise ValueError(f"rows[{i}]: expected a non-empty 1-D array of row indices in "
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


def _groups(sizes, batch_sizes, dropouts):
    """Members that share a compiled program: {(m_i, b_i, p_i): [i, ...]} in member order."""
    groups = collections.defaultdict(list)
    for i, key in enumerate(zip(sizes, batch_sizes, dropouts, strict=True)):
        groups[key].append(i)
    return dict(groups)


def _stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree, k):
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(k)]


def fit_population(net, X, y, *, keys, opt=None, lr=None, alpha=0.0, dropout=0.0, rows=None,
                   sample_weight=None, epochs=200, batch_size=None, shuffle=True,
                   progress=None):
    """Train k = len(keys) members of `net` at once; member i equals `fit` run alone on
    X[rows[i]], y[rows[i]] with key keys[i], learning rate lr[i], alpha[i] and dropout[i].

    Arguments:
        net, X, y, epochs, batch_size, shuffle, progress: as for `fit` (batch_size applies to
            each member: min(batch_size or 200, its rows)).
        keys: k int seeds or PRNG keys, one per member.
        opt: the optimizer (default Adam, lr 1e-3); its hyperparameters other than the
            learning rate are shared by the members.
        lr, alpha, dropout: one value for every member, or k values (lr default: opt.lr).
        rows: k arrays of row indices into X, each member's training rows (e.g. the training
            folds of a cross-validation); default: every row for every member.
        sample_weight: (m,) weights for all members, or (k, m), a row per member.

    Returns a `PopulationResult`: params[i], opt_state[i] and history["train_cost"][e][i].
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a jaxbp.MLP, got {type(net).__name__}")
    backends.compilation_cache()
    opt = optim.adam(1e-3) if opt is None else opt
    optim.check_is_optimizer(opt)
    epochs = validate.positive_int("epochs", epochs)
    if isinstance(keys, (int, np.integer)) or len(keys) < 1:
        raise ValueError(f"keys: expected a sequence of k >= 1 seeds or keys, got {keys!r:.60}")
    keys = [validate.prng_key(key) for key in keys]
    k = len(keys)
    X, Y, _ = _training_rows(net, X, y, None)
    rows = _member_rows(rows, X.shape[0], k)
    w = _member_weights(sample_weight, rows, X.shape[0], k)
    lr = _per_member("lr", opt.lr if lr is None else lr, k, _positive)
    alpha = _per_member("alpha", alpha, k, validate.non_negative)
    dropout = _per_member("dropout", dropout, k, validate.fraction)
    b = 200 if batch_size is None else validate.positive_int("batch_size", batch_size)
    groups = _groups([len(r) for r in rows], [min(b, len(r)) for r in rows], dropout)
    params = [init(net, jax.random.fold_in(key, 2**31 - 2)) for key in keys]
    params = [validate.params(net, p) for p in params]
    dtype = validate.param_dtype(params[0])
    Xc = validate.inputs(net, params[0], X.T)
    Yc = validate.targets(net, params[0], Y, m=X.shape[0])
    settings = {g: (_Static(g[1], bool(shuffle), g[2], max(alpha[i] for i in members) > 0),
                    jnp.asarray(np.stack([rows[i] for i in members]), jnp.int32),
                    jnp.asarray(w[members], dtype), jnp.stack([keys[i] for i in members]),
                    np.asarray([lr[i] for i in members], dtype),
                    np.asarray([alpha[i] for i in members], dtype))
                for g, members in groups.items()}
    carry = {g: (_stack([params[i] for i in members]),
                 _stack([opt.init(params[i]) for i in members])) for g, members in groups.items()}
    return _run(net, opt, groups, settings, carry, Xc, Yc, epochs, k, keys, progress)


def _run(net, opt, groups, settings, carry, Xc, Yc, epochs, k, keys, progress):
    """The epochs: every group's program dispatched, then the members' costs read back."""
    history = {"train_cost": []}
    bar = _progress_bar(progress, epochs)
    try:
        for epoch in range(epochs):
            costs = {}
            for g, (cfg, rows, w, g_keys, lr, alpha) in settings.items():
                p, s, J = _epoch(net, opt, cfg, *carry[g], Xc, Yc, rows, w, g_keys,
                                 np.int32(epoch), lr, alpha)
                carry[g], costs[g] = (p, s), J
            row = np.empty(k)
            for g, members in groups.items():
                row[members] = np.asarray(costs[g])
            history["train_cost"].append(row)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    params, state = [None] * k, [None] * k
    for g, members in groups.items():
        for i, p, s in zip(members, _unstack(carry[g][0], len(members)),
                           _unstack(carry[g][1], len(members)), strict=True):
            params[i], state[i] = p, s
    history["train_cost"] = np.stack(history["train_cost"])
    return PopulationResult(params, state, history, keys)
