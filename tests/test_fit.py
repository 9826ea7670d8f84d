"""fit: the compiled epoch equals plain train_step calls; ragged batches, weights, L2,
determinism, resuming, validation, early stopping, schedules, divergence, callbacks."""

import math
import re

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.backends import IN_PLACE_MIN, in_place

NET = jaxbp.MLP((2, 6, 3), hidden="tanh", output="softmax")
RTOL = 1e-12  # float64; the same arithmetic in the same order, so agreement is to rounding


def blobs(m=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, m)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centers[labels] + 0.6 * rng.normal(size=(m, 2)), labels


def params0():
    return jaxbp.init(NET, jax.random.key(5), dtype="float64")


def assert_same(a, b, rtol=RTOL):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-15)


def test_epoch_equals_train_steps_with_ragged_last_batch():
    X, y = blobs(10)
    opt = jaxbp.optim.sgd(0.3, momentum=0.9)
    res = jaxbp.fit(NET, X, y, opt=opt, epochs=1, batch_size=4, shuffle=False,
                    params=params0(), progress=False)
    p, s = params0(), opt.init(params0())
    Y = np.eye(3)[y].T
    costs, sizes = [], []
    for cols in (slice(0, 4), slice(4, 8), slice(8, 10)):  # the last batch holds 2 examples
        p, s, J = jaxbp.train_step(NET, opt, p, s, X[cols].T, Y[:, cols])
        costs.append(float(J))
        sizes.append(cols.stop - cols.start)
    assert_same(res.params, p)
    assert_same(res.opt_state, s)
    np.testing.assert_allclose(res.history["train_cost"][0], np.average(costs, weights=sizes),
                               rtol=RTOL)


def _hand_epochs(net, opt_of_epoch, params, X, y, b, key, epochs, shuffle=True):
    """fit's epochs as its docstring states them, with train_step: epoch e orders the rows by
    `_shuffle(k, m)`, k the first key of split(fold_in(key, e)), and steps over batches of b
    with the optimizer `opt_of_epoch(e)` (its state carried over)."""
    from jaxbp.backends import shuffle as _shuffle

    Y = np.eye(net.sizes[-1])[y].T
    state = opt_of_epoch(0).init(params)
    for e in range(epochs):
        k_perm, _ = jax.random.split(jax.random.fold_in(jax.random.key(key), e))
        order = np.asarray(_shuffle(k_perm, len(y))) if shuffle else np.arange(len(y))
        for i in range(0, len(y), b):
            cols = order[i:i + b]
            params, state, _ = jaxbp.train_step(net, opt_of_epoch(e), params, state,
                                                X[cols].T, Y[:, cols])
    return params, state


def test_epochs_shuffle_by_the_documented_key():
    """shuffle=True (the default) takes each epoch's batches in the order of the documented
    key; 3 epochs of 4 batches, not in row order."""
    X, y = blobs(16)
    opt = jaxbp.optim.sgd(0.2, momentum=0.5)
    res = jaxbp.fit(NET, X, y, opt=opt, epochs=3, batch_size=4, key=7, params=params0(),
                    progress=False)
    want, state = _hand_epochs(NET, lambda e: opt, params0(), X, y, 4, key=7, epochs=3)
    assert_same(res.params, want, rtol=1e-10)
    assert_same(res.opt_state, state, rtol=1e-10)
    unshuffled, _ = _hand_epochs(NET, lambda e: opt, params0(), X, y, 4, key=7, epochs=3,
                                 shuffle=False)
    assert not np.allclose(np.asarray(res.params[0][0]), np.asarray(unshuffled[0][0]))


def test_the_schedules_rate_is_the_one_each_epoch_steps_with():
    """Schedule("step", gamma=0.5, step_size=1): epoch e steps with lr · 0.5^e, as the same
    epochs with sgd(lr · 0.5^e) do (plain SGD has no state, so the rate is all that changes)."""
    X, y = blobs(12)
    res = jaxbp.fit(NET, X, y, opt=jaxbp.optim.sgd(0.4), epochs=3, batch_size=6, key=1,
                    schedule=jaxbp.Schedule("step", gamma=0.5, step_size=1), params=params0(),
                    progress=False)
    want, _ = _hand_epochs(NET, lambda e: jaxbp.optim.sgd(0.4 * 0.5**e), params0(), X, y, 6,
                           key=1, epochs=3)
    assert_same(res.params, want, rtol=1e-10)


@pytest.mark.parametrize("n", [IN_PLACE_MIN - 1, IN_PLACE_MIN])
def test_in_place_orders_the_gradients_after_J_and_the_inner_deltas(n):
    """What `in_place` compiles (its numbers are the gradients either way): from IN_PLACE_MIN
    parameters on, the gradients depend on J and on Δ^1..Δ^{L-1}, not on Δ^L; below, on
    nothing but themselves. Read off the traced program: which inputs its equations use."""
    grads = (jnp.zeros(n - 3, jnp.float32), jnp.zeros(3, jnp.float32))  # n in all
    deltas = (None, jnp.ones((3, 2)), jnp.ones((4, 2)), jnp.ones((1, 2)))
    jaxpr = jax.make_jaxpr(in_place)(grads, jnp.float64(1.0), deltas).jaxpr
    _, J, d1, d2, d3 = jaxpr.invars[1:]
    used = {v for eqn in jaxpr.eqns for v in eqn.invars
            if not isinstance(v, jax.extend.core.Literal)}
    ordered = n >= IN_PLACE_MIN
    assert {J in used, d1 in used, d2 in used} == {ordered} and d3 not in used


def test_a_network_above_the_in_place_threshold_trains_as_the_steps_do():
    """From IN_PLACE_MIN parameters on, the step orders its reads before its writes (`in_place`)
    so XLA updates the weights in place: the numbers stay those of train_step."""
    from jaxbp.backends import IN_PLACE_MIN

    net = jaxbp.MLP((256, 256, 3), hidden="tanh", output="softmax")
    assert net.num_params() >= IN_PLACE_MIN
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 256)), rng.integers(0, 3, 8)
    params = jaxbp.init(net, jax.random.key(0), dtype="float64")
    opt = jaxbp.optim.adam(1e-3)
    res = jaxbp.fit(net, X, y, opt=opt, epochs=2, batch_size=4, key=2, params=params,
                    progress=False)
    want, state = _hand_epochs(net, lambda e: opt, params, X, y, 4, key=2, epochs=2)
    assert_same(res.params, want, rtol=1e-10)
    assert_same(res.opt_state, state, rtol=1e-10)


def test_padding_each_batch_with_zero_weight_columns_changes_nothing():
    """The epoch program's batch_pad (used so a mesh divides each batch) adds columns that
    weigh 0: the epoch is the unpadded one (float64: to rounding), and a float32 network's
    padded program still holds no float64 array."""
    import re

    from jaxbp.fit import _epoch, _Static

    X, y = blobs(10)  # batches of 4: 4, 4, 2 rows
    Xc, Yc = jnp.asarray(X.T), jnp.asarray(np.eye(3)[y].T)
    opt = jaxbp.optim.sgd(0.3, momentum=0.9)

    def epoch(pad, params, X, Y, dtype):
        args = (params, opt.init(params), X, Y, jnp.ones(10, dtype), jax.random.key(3),
                np.int32(1), np.asarray(0.3, dtype), np.asarray(0.1, dtype))
        return _epoch, (NET, opt, _Static(4, True, 0.0, True, None, pad), *args)

    f, args = epoch(0, params0(), Xc, Yc, np.float64)
    want = f(*args)
    f, args = epoch(3, params0(), Xc, Yc, np.float64)
    assert_same(f(*args), want, rtol=1e-12)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), params0())
    f, args = epoch(3, p32, Xc.astype(jnp.float32), Yc.astype(jnp.float32), np.float32)
    text = f.lower(*args).as_text()
    assert not re.findall(r"tensor<(?:\d+x)+f64>", text)


def test_sample_weight_integer_weights_equal_repeated_rows():
    X, y = blobs(12)
    w = np.array([1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 2, 1])
    opt = jaxbp.optim.sgd(0.5)
    kw = dict(opt=opt, epochs=3, shuffle=False, params=params0(), progress=False)
    weighted = jaxbp.fit(NET, X, y, batch_size=12, sample_weight=w, **kw)
    kw["params"] = params0()
    repeated = jaxbp.fit(NET, np.repeat(X, w, axis=0), np.repeat(y, w), batch_size=int(w.sum()),
                         **kw)
    assert_same(weighted.params, repeated.params, rtol=1e-10)


def test_alpha_is_scikit_learns_l2():
    X, y = blobs(16)
    alpha = 0.3
    opt = jaxbp.optim.sgd(0.1)
    res = jaxbp.fit(NET, X, y, opt=opt, epochs=1, batch_size=16, shuffle=False, alpha=alpha,
                    params=params0(), progress=False)
    p = params0()
    _, cache = jaxbp.forward(NET, p, X.T)
    J, grads = jaxbp.backward(NET, p, cache, np.eye(3)[y].T)
    J = float(J) + 0.5 * alpha / 16 * sum(float(jnp.sum(W**2)) for W, _ in p)
    want = tuple((W - 0.1 * (dW + alpha / 16 * W), b - 0.1 * db)
                 for (W, b), (dW, db) in zip(p, grads, strict=True))
    assert_same(res.params, want)
    np.testing.assert_allclose(res.history["train_cost"][0], J, rtol=RTOL)


def test_deterministic_and_resumable():
    X, y = blobs(50)
    kw = dict(opt=jaxbp.optim.adam(0.05), batch_size=8, key=11, dropout=0.2, progress=False)
    a = jaxbp.fit(NET, X, y, epochs=6, params=params0(), **kw)
    b = jaxbp.fit(NET, X, y, epochs=6, params=params0(), **kw)
    for x1, x2 in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        assert np.array_equal(x1, x2)  # bit for bit
    first = jaxbp.fit(NET, X, y, epochs=3, params=params0(), **kw)
    rest = jaxbp.fit(NET, X, y, epochs=3, params=first.params, opt_state=first.opt_state,
                     start_epoch=3, history=first.history, **kw)
    for x1, x2 in zip(jax.tree.leaves(a.params), jax.tree.leaves(rest.params), strict=True):
        assert np.array_equal(x1, x2)
    assert rest.history["train_cost"] == a.history["train_cost"]
    assert rest.history["epoch"] == list(range(6))


def test_learns_with_validation_and_history():
    X, y = blobs(300)
    res = jaxbp.fit(NET, X, y, opt=jaxbp.optim.adam(0.02), epochs=30, batch_size=32,
                    validation_fraction=0.2, progress=False)
    h = res.history
    assert set(h) >= {"epoch", "lr", "train_cost", "val_cost", "val_score", "seconds"}
    assert all(len(v) == 30 for v in h.values())
    assert h["train_cost"][-1] < 0.5 * h["train_cost"][0]
    assert h["val_score"][-1] > 0.9
    ev = jaxbp.evaluate(NET, res.params, X, y)
    assert ev["score"] > 0.9
    proba = np.asarray(jaxbp.predict(NET, res.params, X))
    assert proba.shape == (300, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_early_stopping_restores_best():
    X, y = blobs(200)
    Xv, yv = blobs(100, seed=1)
    yv = (yv + 1) % 3  # validation labels that training can only get worse at
    res = jaxbp.fit(NET, X, y, opt=jaxbp.optim.adam(0.05), epochs=100, batch_size=50,
                    validation_data=(Xv, yv), early_stopping=True, patience=3,
                    params=params0(), progress=False)
    assert res.stopped_early and res.epochs_run < 100
    best = res.best_epoch
    assert res.history["val_cost"][best] == min(res.history["val_cost"])
    ev = jaxbp.evaluate(NET, res.params, Xv, yv)
    np.testing.assert_allclose(ev["cost"], res.history["val_cost"][best], rtol=1e-10)


def test_epochs_dispatched_ahead_stop_where_one_at_a_time_stops():
    # Without hooks fit dispatches epochs ahead of the one it reads back; with a callback it
    # runs one at a time. Early stopping must pick the same epoch and the same params.
    X, y = blobs(200)
    Xv, yv = blobs(100, seed=1)
    yv = (yv + 1) % 3
    kw = dict(opt=jaxbp.optim.adam(0.05), epochs=100, batch_size=50, validation_data=(Xv, yv),
              early_stopping=True, patience=3, progress=False)
    ahead = jaxbp.fit(NET, X, y, params=params0(), **kw)
    single = jaxbp.fit(NET, X, y, params=params0(), callback=lambda record: None, **kw)
    assert ahead.epochs_run == single.epochs_run < 100
    assert ahead.best_epoch == single.best_epoch
    for k in ("epoch", "lr", "train_cost", "val_cost", "val_score"):
        assert ahead.history[k] == single.history[k]
    assert_same(ahead.params, single.params, rtol=0)
    assert_same(ahead.opt_state, single.opt_state, rtol=0)


@pytest.mark.parametrize("m", [1, 2, 7, 200, 1797, 70_000, 2**20 + 1])  # the last: fallback
def test_shuffle_is_a_permutation_fixed_by_the_key(m):
    from jaxbp.backends import shuffle as _shuffle

    p = np.asarray(_shuffle(jax.random.key(3), m))
    np.testing.assert_array_equal(np.sort(p), np.arange(m))
    np.testing.assert_array_equal(p, np.asarray(_shuffle(jax.random.key(3), m)))
    if m >= 200:
        assert not np.array_equal(p, np.asarray(_shuffle(jax.random.key(4), m)))


def shuffle_oracle(key, m):
    """fit's epoch order as its docstring specifies it, restated in NumPy: with b = the bits of
    m − 1 (at least 1) and above 20 of them, jax.random.permutation; else 1 round if m² <
    2^(33 − b), 2 otherwise, each a stable sort of the order by the high 32 − b bits of one row
    of Philox words (XLA's RngBitGenerator, seeded by the key's first two words and the same
    xor 0x5BD1E995)."""
    bits = max(1, (m - 1).bit_length())
    if bits > 20:
        return np.asarray(jax.random.permutation(key, m))
    rounds = 1 if m * m < 2 ** (33 - bits) else 2
    data = np.asarray(jax.random.key_data(key), np.uint32).reshape(-1)[:2]
    seed = jnp.asarray(np.concatenate([data, data ^ np.uint32(0x5BD1E995)]))
    _, words = jax.lax.rng_bit_generator(seed, (rounds, m), jnp.uint32,
                                         algorithm=jax.lax.RandomAlgorithm.RNG_PHILOX)
    high = np.asarray(words) >> np.uint32(bits)
    order = np.arange(m)
    for r in range(rounds):  # row r's word p goes with the order's position p
        order = order[np.argsort(high[r], kind="stable")]
    return order


@pytest.mark.parametrize("m", [1, 2, 3, 200, 1797, 2047, 2048, 5000, 2**19 + 1, 2**20 + 1])
def test_shuffle_is_the_documented_philox_sort(m):
    """Every branch: 1 round (m ≤ 2047 here: 2047² is just under 2^(33 − 11)), 2 rounds (2048,
    whose square is exactly 2^(33 − 11); 5000), 20 bits (the last sort), the permutation
    fallback; two keys each below 2^19 rows, and a key of the 4-word "rbg" kind (the first two
    words seed the stream, as for threefry's 2)."""
    from jaxbp.backends import shuffle as _shuffle

    keys = [jax.random.key(3)] + ([jax.random.key(12345), jax.random.key(7, impl="rbg")]
                                  if m < 2**19 else [])  # the large ones: one key (~1 s each)
    for key in keys:
        np.testing.assert_array_equal(np.asarray(_shuffle(key, m)), shuffle_oracle(key, m))


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_epoch_order_is_a_philox_stream_on_every_backend(platform):
    """fit's shuffle names XLA's Philox algorithm (a backend's default may differ), so the
    epoch order is the same on CPU and GPU."""
    from jaxbp.backends import shuffle as _shuffle

    shuffle = jax.jit(_shuffle, static_argnums=1)
    text = jax.export.export(shuffle, platforms=[platform])(jax.random.key(0), 1797).mlir_module()
    generators = re.findall(r"stablehlo\.rng_bit_generator[^\n]*", text)
    assert generators and all(re.search(r"algorithm =\s+PHILOX", g) for g in generators), (
        generators)


def test_l2_divides_by_each_batchs_weight_and_by_1_for_a_weightless_batch():
    """alpha with sample weights: each batch adds α/(2n) Σ||W||² to J and (α/n) W to dW with n
    the batch's weight, also below 1 (0.6 here), and n = 1 for a batch whose weights are all
    0 (its data term is 0: the step is weight decay alone). Plain SGD, no shuffle: the three
    batches by hand with `backward`."""
    X, y = blobs(12)
    w = np.array([0.1, 0.2, 0.1, 0.2, 0, 0, 0, 0, 1, 1, 1, 1], float)
    lr, alpha = 0.3, 0.5
    res = jaxbp.fit(NET, X, y, opt=jaxbp.optim.sgd(lr), epochs=1, batch_size=4, shuffle=False,
                    sample_weight=w, alpha=alpha, params=params0(), progress=False)
    params, Y = params0(), np.eye(3)[y].T
    for i in range(0, 12, 4):
        cols = slice(i, i + 4)
        n = w[cols].sum() if w[cols].sum() > 0 else 1.0
        _, cache = jaxbp.forward(NET, params, X[cols].T)
        grads = (jaxbp.backward(NET, params, cache, Y[:, cols], w[cols])[1] if w[cols].any()
                 else jax.tree.map(jnp.zeros_like, params))
        params = tuple((W - lr * (dW + alpha / n * W), b - lr * db)
                       for (W, b), (dW, db) in zip(params, grads, strict=True))
    assert_same(res.params, params)


def test_shuffle_is_uniform():
    # Where each of 6 examples lands, over 3000 keys: a chi-square test of the 36 counts
    # against the uniform 3000/6 = 500. The keys are fixed, so the test is deterministic;
    # p = 0.90 was seen. 1e-3 flags a broken shuffle (identity, a fixed shift: p ~ 0).
    from scipy.stats import chisquare

    from jaxbp.backends import shuffle as _shuffle

    shuffle = jax.jit(_shuffle, static_argnums=1)
    counts = np.zeros((6, 6))
    for seed in range(3000):
        counts[np.arange(6), np.asarray(shuffle(jax.random.key(seed), 6))] += 1
    assert chisquare(counts.ravel()).pvalue > 1e-3


def test_schedules():
    s = jaxbp.Schedule
    assert s("constant")(0.1, 7, 10, 0) == 0.1
    assert s("step", gamma=0.5, step_size=3)(0.1, 7, 10, 0) == pytest.approx(0.1 * 0.25)
    assert s("cosine")(0.1, 0, 10, 0) == pytest.approx(0.1)
    assert s("cosine")(0.1, 5, 10, 0) == pytest.approx(0.05)
    assert s("invscaling", power_t=0.5)(0.1, 2, 10, 99) == pytest.approx(0.01)
    X, y = blobs(20)
    res = jaxbp.fit(NET, X, y, epochs=4, schedule=s("step", gamma=0.5, step_size=1),
                    opt=jaxbp.optim.sgd(0.2), progress=False)
    assert res.history["lr"] == pytest.approx([0.2, 0.1, 0.05, 0.025])


def test_divergence_names_the_epoch():
    net = jaxbp.MLP((2, 8, 1), hidden="relu", output="identity")
    X, _ = blobs(40)
    y = 1e3 * X[:, 0]
    with pytest.raises(jaxbp.DivergenceError, match=r"epoch \d+.*smaller learning rate"):
        jaxbp.fit(net, X, y, opt=jaxbp.optim.sgd(10.0), epochs=50, progress=False)


def test_on_epoch_end_sees_each_epoch_and_checkpoint_is_its_deprecated_name():
    """`on_epoch_end(result_so_far, epoch)` after every epoch; `checkpoint=`, its former name,
    still works with a DeprecationWarning; both at once are refused."""
    X, y = blobs(30)
    seen, old = [], []
    res = jaxbp.fit(NET, X, y, epochs=3, progress=False, params=params0(),
                    on_epoch_end=lambda r, e: seen.append((e, r.epochs_run)))
    assert seen == [(0, 1), (1, 2), (2, 3)]
    with pytest.warns(DeprecationWarning, match=r"fit\(checkpoint=...\) is deprecated"):
        res_old = jaxbp.fit(NET, X, y, epochs=3, progress=False, params=params0(),
                            checkpoint=lambda r, e: old.append((e, r.epochs_run)))
    assert old == seen
    np.testing.assert_array_equal(res.params[0][0], res_old.params[0][0])
    with pytest.raises(TypeError, match="checkpoint: renamed on_epoch_end; got both"):
        jaxbp.fit(NET, X, y, epochs=1, progress=False, on_epoch_end=print, checkpoint=print)


@pytest.mark.parametrize("lookahead", [None, 4])  # one at a time; 4 dispatched ahead
def test_callback_can_stop_and_sees_records(lookahead):
    X, y = blobs(30)
    seen = []

    def watch(record):
        seen.append(record)
        return record["epoch"] == 2

    res = jaxbp.fit(NET, X, y, epochs=10, callback=watch, progress=False, lookahead=lookahead,
                    params=params0())
    assert res.epochs_run == 3 and [r["epoch"] for r in seen] == [0, 1, 2]
    assert len(res.history["train_cost"]) == 3
    three = jaxbp.fit(NET, X, y, epochs=3, progress=False, params=params0())
    assert_same(res.params, three.params, rtol=0)  # the epochs run past the stop are dropped
    assert all(math.isfinite(r["train_cost"]) for r in seen)


def test_bad_arguments():
    X, y = blobs(20)
    with pytest.raises(ValueError, match=r"X: expected row-major shape \(m, n_0\) = \(m, 2\)"):
        jaxbp.fit(NET, X.T, y, progress=False)
    with pytest.raises(ValueError, match="y: expected 20 labels"):
        jaxbp.fit(NET, X, y[:-1], progress=False)
    with pytest.raises(ValueError, match=r"class ids in 0\.\.2"):
        jaxbp.fit(NET, X, y + 1, progress=False)
    with pytest.raises(TypeError, match="y: expected numeric labels"):
        jaxbp.fit(NET, X, y.astype(str), progress=False)
    with pytest.raises(ValueError, match="epochs: expected an int >= 1, got 0"):
        jaxbp.fit(NET, X, y, epochs=0, progress=False)
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got -3"):
        jaxbp.fit(NET, X, y, batch_size=-3, progress=False)
    with pytest.raises(ValueError, match="X: expected finite values"):
        jaxbp.fit(NET, np.where(X > 1, np.nan, X), y, progress=False)
    with pytest.raises(ValueError, match="validation_fraction"):
        jaxbp.fit(NET, X, y, validation_fraction=1.5, progress=False)
    with pytest.raises(ValueError, match="schedule: expected one of"):
        jaxbp.fit(NET, X, y, schedule="exp", progress=False)
    with pytest.raises(ValueError, match="sample_weight"):
        jaxbp.fit(NET, X, y, sample_weight=-np.ones(20), progress=False)
    with pytest.raises(ValueError, match="lookahead: expected an int >= 1, got 0"):
        jaxbp.fit(NET, X, y, lookahead=0, progress=False)


def test_dropout_trains_and_is_off_at_inference():
    X, y = blobs(200)
    res = jaxbp.fit(NET, X, y, opt=jaxbp.optim.adam(0.02), epochs=30, batch_size=32,
                    dropout=0.3, key=3, progress=False)
    assert jaxbp.evaluate(NET, res.params, X, y)["score"] > 0.9
    # inference uses no mask: predict is the plain forward pass, written out here in NumPy
    (W1, b1), (W2, b2) = (tuple(np.asarray(a) for a in layer) for layer in res.params)
    Z = W2 @ np.tanh(W1 @ X.T + b1) + b2
    want = np.exp(Z - Z.max(axis=0)) / np.exp(Z - Z.max(axis=0)).sum(axis=0)
    np.testing.assert_allclose(np.asarray(jaxbp.predict(NET, res.params, X)), want.T,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("p", [0.2, 0.7])  # not 0.5, where keep and drop rates coincide
def test_dropout_masks_drop_p_and_keep_the_mean(p):
    # Inverted dropout: each hidden unit of each example is kept with probability 1 − p and
    # then scaled by 1/(1 − p), so the mask's entries are 0 or 1/(1 − p), a fraction p of them
    # 0, mean 1. N = 2 · 500 · 1000 = 10^6 draws: the zero fraction's standard error is
    # sqrt(p(1 − p)/N) (4.0e-4 at p = 0.2, 4.6e-4 at 0.7) and the mean's is that divided by
    # (1 − p). 5 standard errors: a deterministic test (the key is fixed) that a correct mask
    # would fail with probability 6e-7 over keys; keeping with probability p instead of 1 − p
    # moves the zero fraction by |1 − 2p| >= 0.4, ~900 standard errors.
    from jaxbp.backprop import dropout_masks

    net = jaxbp.MLP((3, 500, 500, 1), hidden="relu", output="identity")
    m = 1000
    masks = dropout_masks(net, jax.random.key(0), p, m, jnp.float64)
    assert len(masks) == net.L and masks[0] is None  # M^1 .. M^{L-1}; none on the input
    M = np.stack([np.asarray(M_l) for M_l in masks[1:]])
    assert M.shape == (2, 500, m) and M.dtype == np.float64
    assert set(np.unique(M)) == {0.0, 1 / (1 - p)}
    se = math.sqrt(p * (1 - p) / M.size)
    assert abs(np.mean(M == 0) - p) < 5 * se
    assert abs(M.mean() - 1.0) < 5 * se / (1 - p)
    assert not np.array_equal(M[0], M[1])  # each layer draws its own mask
    other = dropout_masks(net, jax.random.key(1), p, m, jnp.float64)
    assert not np.array_equal(M[0], np.asarray(other[1]))  # another key, another mask
    assert dropout_masks(net, jax.random.key(0), 0.0, m, jnp.float64) == ()


def test_dropout_changes_training_and_p0_is_no_dropout():
    X, y = blobs(60)
    kw = dict(opt=jaxbp.optim.sgd(0.1), epochs=2, batch_size=16, key=3, progress=False)
    off = jaxbp.fit(NET, X, y, params=params0(), **kw)
    p0 = jaxbp.fit(NET, X, y, dropout=0.0, params=params0(), **kw)
    assert_same(p0.params, off.params, rtol=0)  # p = 0 is exactly the no-dropout path
    drop = jaxbp.fit(NET, X, y, dropout=0.3, params=params0(), **kw)
    for u, v in zip(jax.tree.leaves(drop.params), jax.tree.leaves(off.params), strict=True):
        assert not np.allclose(u, v, rtol=1e-3)


def test_dropout_epochs_equal_hand_steps_with_their_masks():
    """Two epochs of two batches with dropout and plain SGD equal four hand-computed steps
    whose masks are drawn here, by the derivation fit documents: epoch e's key is
    fold_in(key, e), split into (shuffle key, dropout key); batch i draws with
    fold_in(dropout key, i), split into one key per layer; layer l keeps a unit with
    probability 1 − p and scales it by 1/(1 − p). float64, the same arithmetic: 1e-12."""
    X, y = blobs(20)
    p, lr, seed = 0.3, 0.5, 4
    res = jaxbp.fit(NET, X, y, opt=jaxbp.optim.sgd(lr), epochs=2, batch_size=10, shuffle=False,
                    dropout=p, key=seed, params=params0(), progress=False)
    params, Y, key = params0(), np.eye(3)[y].T, jax.random.key(seed)
    for epoch in range(2):
        _, k_drop = jax.random.split(jax.random.fold_in(key, epoch))
        for i, cols in enumerate((slice(0, 10), slice(10, 20))):
            keys = jax.random.split(jax.random.fold_in(k_drop, i), NET.L)
            masks = (None, *[jax.random.bernoulli(keys[l], 1 - p, (NET.sizes[l], 10))
                             .astype(jnp.float64) / (1 - p) for l in range(1, NET.L)])
            assert 0 < np.mean(np.asarray(masks[1]) == 0) < 1  # some units dropped, not all
            _, cache = jaxbp.backprop.forward(NET, params, jnp.asarray(X[cols].T), masks)
            _, grads = jaxbp.backward(NET, params, cache, Y[:, cols])
            params = jax.tree.map(lambda a, g: a - lr * g, params, grads)
    assert_same(res.params, params)
