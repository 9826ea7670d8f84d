"""Populations: member i of `fit_population` is `fit` run alone with the member's key, rows,
weights, learning rate, alpha and dropout."""

import contextlib
import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxbp
from jaxbp import population
from jaxbp.population import fit_population

NET = jaxbp.MLP((4, 8, 3), hidden="tanh", output="softmax")


def problem(m=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def alone(X, y, rows, key, lr, alpha, dropout, w, epochs, batch_size, opt, **kwargs):
    return jaxbp.fit(NET, X[rows], y[rows], key=key, opt=dataclasses.replace(opt, lr=lr),
                     alpha=alpha, dropout=dropout, sample_weight=w[rows], epochs=epochs,
                     batch_size=batch_size, progress=False, **kwargs)


@contextlib.contextmanager
def epoch_calls(record):
    """`record(static, args)` of each call of a group's compiled epoch, as a list (static:
    `_epoch_over`'s arguments, its run length last)."""
    calls, original = [], population._epoch_over

    def epoch_over(*static):
        epoch = original(*static)

        def spy(*args):
            calls.append(record(static, args))
            return epoch(*args)
        return spy

    population._epoch_over = epoch_over
    try:
        yield calls
    finally:
        population._epoch_over = original


def members_per_call():
    """The number of members in each call of a group's compiled epoch, as a list."""
    return epoch_calls(lambda static, args: args[0][0][0].shape[0])  # the stacked W^1


def run_length_per_call():
    """The run length (members sharing their batches) of each call, as a list."""
    return epoch_calls(lambda static, args: static[-1])


def assert_same_run(got, want, what):
    """Two `FitResult`s of one run: parameters, optimizer state and every recorded number to
    rtol 1e-12 (float64; see test_each_member_is_fit_alone), the epochs exactly."""
    assert (got.epochs_run, got.best_epoch, got.stopped_early) == (
        want.epochs_run, want.best_epoch, want.stopped_early), what
    for a, b in zip(jax.tree.leaves((got.params, got.opt_state)),
                    jax.tree.leaves((want.params, want.opt_state)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15,
                                   err_msg=what)
    for name in ("train_cost", "val_cost", "val_score", "epoch", "lr"):
        np.testing.assert_allclose(got.history.get(name, []), want.history.get(name, []),
                                   rtol=1e-12, err_msg=f"{what}: {name}")
    assert np.array_equal(jax.random.key_data(got.key), jax.random.key_data(want.key)), what


@pytest.mark.parametrize("dropout", [0.0, 0.25, [0.0, 0.25, 0.25, 0.1, 0.0]])
def test_each_member_is_fit_alone(dropout):
    """Five members (all 60 rows, or 45 rows whose last batch of 16 is ragged; one dropout
    probability for all or one each: with and without dropout in groups apart, 0.25 and 0.1
    in one group, traced), each with its own key, learning
    rate, alpha and weights: each member's parameters, optimizer state and costs equal `fit`
    alone (float64, rtol 1e-12). On XLA's CPU backend they came out bit for bit equal when
    groups hold two or more members; a group of one member differed by 1 ulp in 3 of 32
    weights after 4 epochs (the vmapped matmul of a batch of one rounds otherwise), so the
    test allows rounding, 1e-12 relative, four orders above it."""
    X, y = problem()
    rng = np.random.default_rng(1)
    subset = [np.sort(rng.choice(60, 45, replace=False)) for _ in range(2)]
    rows = [np.arange(60), subset[0], np.arange(60), subset[1], subset[0]]
    keys, lr = [0, 1, 2, 3, 4], [1e-2, 3e-2, 1e-2, 5e-3, 2e-2]
    alpha = [0.0, 1e-3, 0.1, 0.0, 0.5]
    w = rng.uniform(0.2, 2.0, size=(5, 60))
    opt = jaxbp.optim.adam()
    res = fit_population(NET, X, y, keys=keys, opt=opt, lr=lr, alpha=alpha, dropout=dropout,
                         rows=rows, sample_weight=w, epochs=4, batch_size=16, progress=False)
    assert res.history["train_cost"].shape == (4, 5)
    for i in range(5):
        p = dropout[i] if isinstance(dropout, list) else dropout
        want = alone(X, y, rows[i], keys[i], lr[i], alpha[i], p, w[i], 4, 16, opt)
        assert_same_run(res.member(i), want, f"member {i}")


def test_each_member_follows_its_own_schedule():
    """Learning-rate schedules per member (as `fit`'s: the epoch's rate from the member's own
    lr, epoch count and examples seen): the rates recorded and the runs equal `fit` alone."""
    X, y = problem()
    rows = [np.arange(60), np.arange(50), np.arange(60), np.arange(10, 60)]
    schedules = ["constant", "cosine", jaxbp.Schedule("step", gamma=0.5, step_size=2),
                 "invscaling"]
    lr = [0.05, 0.1, 0.2, 0.5]
    opt = jaxbp.optim.sgd(0.1)
    res = fit_population(NET, X, y, keys=[5, 6, 7, 8], opt=opt, lr=lr, schedule=schedules,
                         rows=rows, epochs=5, batch_size=16, progress=False)
    for i in range(4):
        want = alone(X, y, rows[i], 5 + i, lr[i], 0.0, 0.0, np.ones((60,)), 5, 16, opt,
                     schedule=schedules[i])
        assert_same_run(res.member(i), want, f"member {i}")
    assert res.history["lr"][:, 2].tolist() == [0.2, 0.2, 0.1, 0.1, 0.05]


@pytest.mark.parametrize("held_out", ["fraction", "rows"])
def test_members_validate_and_stop_on_their_own(held_out):
    """Early stopping per member: each holds out a fifth of its rows with its key (as `fit`
    does) or is given its validation fold, monitors its validation cost and stops on its own
    epoch; the stopped ones keep their parameters while the others run. Each member's whole
    run (epochs, best epoch, histories, restored best parameters, state) is `fit` alone's."""
    X, y = problem(80)
    folds = [(np.r_[0:16 * i, 16 * i + 16:80], np.arange(16 * i, 16 * i + 16)) for i in range(5)]
    keys, lr = [0, 1, 2, 3, 4], [0.3, 0.05, 0.2, 0.01, 0.5]
    rows = [train for train, _ in folds]
    extra = ({"validation_fraction": 0.2} if held_out == "fraction" else
             {"validation_rows": [val for _, val in folds]})
    opt = jaxbp.optim.sgd(0.1, momentum=0.9)
    w = np.ones((5, 80))
    with members_per_call() as sizes:
        res = fit_population(NET, X, y, keys=keys, opt=opt, lr=lr, rows=rows, epochs=60,
                             batch_size=16, early_stopping=True, patience=3, progress=False,
                             **extra)
    assert len(set(res.epochs_run)) > 2 and sum(res.stopped_early) >= 3  # each its own epoch
    # once at most half of the members run, the stopped ones leave the program (compaction)
    assert sizes[0] == 5 and min(sizes) <= 2
    for i in range(5):
        val = ({"validation_fraction": 0.2} if held_out == "fraction" else
               {"validation_data": (X[folds[i][1]], y[folds[i][1]])})
        want = alone(X, y, rows[i], keys[i], lr[i], 0.0, 0.0, w[i], 60, 16, opt,
                     early_stopping=True, patience=3, **val)
        assert_same_run(res.member(i), want, f"member {i}")


def test_a_group_is_compacted_once_at_most_half_its_members_run():
    """Stopped members leave their group's program once at most half of it still runs (two
    of four stopped after epoch 1: two members a call from epoch 2), not before (one of four:
    four a call to the end), and only that group's (batches of 16 and of 8: two groups, the
    second compacted, the first kept); each member equals `fit` alone every time."""
    X, y = problem()

    def stop_after(epoch):
        return lambda record: record["epoch"] == epoch

    opt = jaxbp.optim.adam()
    for stops, batch, want_sizes in [
            ([1, 1, None, None], [16] * 4, [4, 4, 2, 2, 2]),
            ([1, None, None, None], [16] * 4, [4, 4, 4, 4, 4]),
            ([None, None, 1, None], [16, 16, 8, 8], [2, 2, 2, 2] + [2, 1] * 3)]:
        callbacks = [None if e is None else stop_after(e) for e in stops]
        with members_per_call() as sizes:
            res = fit_population(NET, X, y, keys=[0, 1, 2, 3], opt=opt, epochs=5,
                                 batch_size=batch, callback=callbacks, progress=False)
        assert sizes == want_sizes, (stops, sizes)
        assert np.asarray(res.epochs_run).dtype.kind == "i", res.epochs_run
        cost = res.history["train_cost"]  # (epochs, members): NaN after a member stopped
        assert cost.dtype == np.float64 and cost.shape == (5, 4)
        for i, ran in enumerate(res.epochs_run):
            assert np.isfinite(cost[:ran, i]).all() and np.isnan(cost[ran:, i]).all()
        for i in range(4):
            want = alone(X, y, np.arange(60), i, 1e-3, 0.0, 0.0, np.ones(60), 5, batch[i],
                         opt, callback=callbacks[i])
            assert_same_run(res.member(i), want, f"member {i} of stops {stops}")


def test_min_delta_is_the_improvement_that_counts():
    """Early stopping counts an epoch as better only when its cost is below the best so far
    by more than min_delta (0.05: the small gains of later epochs do not count), as `fit`
    does: each member stops, and restores its best epoch, where `fit` alone does."""
    X, y = problem()
    opt, lr = jaxbp.optim.sgd(0.1), [0.05, 0.1, 0.2]
    res = fit_population(NET, X, y, keys=[0, 1, 2], opt=opt, lr=lr, epochs=60, batch_size=16,
                         early_stopping=True, patience=2, min_delta=0.05, progress=False)
    assert all(res.stopped_early) and max(res.epochs_run) < 60, res.epochs_run
    for i in range(3):
        want = alone(X, y, np.arange(60), i, lr[i], 0.0, 0.0, np.ones(60), 60, 16, opt,
                     early_stopping=True, patience=2, min_delta=0.05)
        assert_same_run(res.member(i), want, f"member {i}")


def test_members_that_draw_the_same_batches_share_them():
    """A grid's candidates on each fold (one key, the fold's rows: the same orders, dropout
    keys and batches) train in runs that draw and gather each batch once and stack their
    first layers into one matmul; each member, with its own learning rate, alpha, dropout
    probability, weights, validation fold and stopping epoch, still equals `fit` alone
    (float64, rtol 1e-12), a ragged last batch (40 rows, batches of 16) included. Once the
    members stopped at different epochs, the compacted program trains them one by one."""
    X, y = problem(60)
    folds = [(np.r_[0:20 * i, 20 * i + 20:60], np.arange(20 * i, 20 * i + 20)) for i in range(3)]
    grid = [(0.3, 0.0, 0.0), (0.1, 1e-2, 0.2), (0.05, 0.1, 0.1)]  # lr, alpha, dropout
    members = [(lr, alpha, p, fold) for lr, alpha, p in grid for fold in folds]
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=(9, 60))
    opt = jaxbp.optim.adam()
    with epoch_calls(lambda static, args: (static[-1], args[0][0][0].shape[0])) as calls:
        res = fit_population(NET, X, y, keys=[7] * 9, opt=opt, lr=[m[0] for m in members],
                             alpha=[m[1] for m in members], dropout=[m[2] for m in members],
                             rows=[m[3][0] for m in members], sample_weight=w,
                             validation_rows=[m[3][1] for m in members], epochs=40,
                             batch_size=16, early_stopping=True, patience=2, progress=False)
    # (run length, members) of each call: two programs, the members with dropout (runs of 2 on
    # each fold) and those without (runs of 1)
    assert sorted(calls[:2]) == [(1, 3), (2, 6)], calls
    assert len(set(res.epochs_run)) > 2 and calls[-1] == (1, 1), (calls, res.epochs_run)
    for i, (lr, alpha, p, (train, val)) in enumerate(members):
        want = alone(X, y, train, 7, lr, alpha, p, w[i], 40, 16, opt, early_stopping=True,
                     patience=2, validation_data=(X[val], y[val]))
        assert_same_run(res.member(i), want, f"member {i}")


def test_members_share_batches_only_with_their_key_and_rows():
    """Runs are made of members with one key and one set of rows: keys 7, 8 on all 60 rows and
    7 on 50 rows make three runs of two (the same number of batches, one program); runs of
    unequal length train one by one; each member equals `fit` alone (float64, rtol 1e-12)."""
    X, y = problem()
    keys, rows = [7, 8, 7, 8, 7, 7], [np.arange(60)] * 4 + [np.arange(50)] * 2
    lr, opt = [0.3, 0.1, 0.05, 0.2, 0.1, 0.02], jaxbp.optim.adam()
    with run_length_per_call() as calls:
        res = fit_population(NET, X, y, keys=keys, opt=opt, lr=lr, rows=rows, epochs=3,
                             batch_size=16, progress=False)
    assert calls == [2] * 3, calls
    for i in range(6):
        want = alone(X, y, rows[i], keys[i], lr[i], 0.0, 0.0, np.ones(60), 3, 16, opt)
        assert_same_run(res.member(i), want, f"member {i}")
    # runs of unequal length (two members with key 7, one with 8): members one by one
    with run_length_per_call() as calls:
        res = fit_population(NET, X, y, keys=[7, 7, 8], opt=opt, lr=lr[:3], epochs=3,
                             batch_size=16, progress=False)
    assert calls == [1] * 3, calls
    for i in range(3):
        want = alone(X, y, np.arange(60), [7, 7, 8][i], lr[i], 0.0, 0.0, np.ones(60), 3, 16,
                     opt)
        assert_same_run(res.member(i), want, f"member {i} of runs 2 + 1")


def test_a_populations_epoch_carries_the_parameters_as_the_tree():
    """`fit`'s epoch moves the parameters, gradients and Adam's moments as one flat vector of
    all P parameters (one fused update); a population's keeps the tree (its leaves are k
    members wide already): its compiled epoch holds no array of P, and the same program with
    the flat layout does (the control)."""
    X, y = problem()
    with epoch_calls(lambda static, args: (static, args)) as calls:
        fit_population(NET, X, y, keys=[0, 1], epochs=1, batch_size=16, progress=False)
    (net, opt, varying, cfg, shared), args = calls[0]
    P = NET.num_params()  # 4·8 + 8 + 8·3 + 3 = 67

    def text(cfg):
        return population._epoch_over(net, opt, varying, cfg, shared).lower(*args).as_text()
    assert f"x{P}xf64" in text(dataclasses.replace(cfg, flat=True))
    assert f"x{P}xf64" not in text(cfg) and f"<{P}xf64" not in text(cfg)


def test_a_populations_progress_bar_counts_its_epochs(capsys):
    """progress=True draws one bar on stderr, a step an epoch, up to the epochs the
    population ran (4 of at most 6: its callback stops every member at epoch 3); progress=False
    draws none."""
    import re

    X, y = problem()
    kw = dict(keys=[0, 1], epochs=6, batch_size=16, callback=lambda r: r["epoch"] == 3)
    fit_population(NET, X, y, progress=False, **kw)
    assert capsys.readouterr() == ("", "")
    fit_population(NET, X, y, progress=True, **kw)
    out, err = capsys.readouterr()
    counts = re.findall(r"(\d+)/6 ", err)
    assert out == "" and err.startswith("\rfit:   0%") and counts[-1] == "4", err
    assert set(counts) <= {"0", "1", "2", "3", "4"}, err


def test_per_member_values_are_placed_once_not_every_epoch(monkeypatch):
    """The members' learning rates and active mask go to the device once while they stay the
    same (a constant rate, nobody stopping: as many placements in 6 epochs as in 2), again
    when they change (a cosine schedule: more in 6 epochs)."""
    X, y = problem()
    calls, place = [], population._Group.place
    monkeypatch.setattr(population._Group, "place",
                        lambda g, tree: calls.append(1) or place(g, tree))

    def placements(epochs, schedule="constant"):
        calls.clear()
        fit_population(NET, X, y, keys=[0, 1], epochs=epochs, batch_size=16,
                       schedule=schedule, progress=False)
        return len(calls)

    assert placements(6) == placements(2)
    assert placements(6, "cosine") > placements(2, "cosine")


def test_parts_are_blocks_of_runs_even_over_the_devices():
    """`_parts`: a group's members in runs that draw the same batches, cut into one part per
    device at least and parts of at most `chunk` members, blocks of runs × their members: the
    cut whose busiest device trains the fewest members, then the fewest parts, then whole
    runs."""
    from types import SimpleNamespace

    def parts(shares, devices, chunk):
        members = [SimpleNamespace(share=s) for s in shares]
        return population._parts(members, list(range(len(shares))), devices, chunk)

    grid = [f"fold {i % 5}" for i in range(30)]  # 6 candidates × 5 folds, candidate-major
    runs = [[c * 5 + f for c in range(6)] for f in range(5)]
    assert parts(grid, 1, 100) == [[i for r in runs for i in r]]
    halves = parts(grid, 2, 100)  # 5 runs do not halve: each part has 3 of each run's 6
    assert halves == [[i for r in runs for i in r[:3]], [i for r in runs for i in r[3:]]]
    four = [f"fold {i % 4}" for i in range(24)]  # 6 candidates × 4 folds: 2 whole runs each
    assert [len(p) for p in parts(four, 2, 100)] == [12, 12]
    assert parts(four, 2, 100)[0] == [c * 4 + f for f in range(2) for c in range(6)]
    assert max(len(p) for p in parts(grid, 2, 7)) <= 7 and len(parts(grid, 2, 7)) >= 5
    square = [f"fold {i % 3}" for i in range(9)]  # 3 candidates × 3 folds, at most 5 a part:
    # every cut in 2 parts has a block of 6, so 3 parts: the 3 runs
    assert parts(square, 1, 5) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    two_by_two = ["a", "b", "a", "b"]  # 2 runs of 2, 3 devices: a part each at least,
    assert parts(two_by_two, 3, 100) == [[0], [2], [1], [3]]  # so 4 parts of 1
    eight = ["a", "b"] * 8  # 2 folds × 8 candidates, 3 devices: parts of 6, 6 and 4 members
    assert parts(eight, 3, 100) == [[0, 2, 4, 1, 3, 5], [6, 8, 10, 7, 9, 11], [12, 14, 13, 15]]
    # (not 4 parts of 4, whole runs cut in halves: one device would train 8)
    assert [len(p) for p in parts(["a"] * 6, 2, 2)] == [2, 2, 1, 1]  # 3 a device, not 4 and 2
    seeds = list(range(5))  # every member its own run
    assert parts(seeds, 2, 100) == [[0, 1, 2], [3, 4]]
    ragged = ["a", "a", "b"]  # runs of unequal length: members one by one
    assert parts(ragged, 1, 100) == [[0, 1, 2]]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"keys": 3}, r"^keys: expected a sequence of k >= 1 seeds or keys"),
    ({"keys": []}, r"^keys: expected a sequence"),
    ({"lr": [0.1, 0.2]}, r"^lr: expected one value or 3 \(one per member\), got 2"),
    ({"alpha": -1.0}, r"^alpha: expected a number >= 0, got -1.0"),
    ({"lr": [0.1, 0.0, 0.1]}, r"^lr: expected a finite number > 0, got 0.0"),
    ({"dropout": 1.0}, r"^dropout: expected a number in \[0, 1.0\), got 1.0"),
    ({"rows": [np.arange(5)] * 2}, r"^rows: expected 3 index arrays \(one per member\), got 2"),
    ({"rows": [np.arange(5), np.arange(5), np.array([0, 60])]},
     r"^rows\[2\]: expected a non-empty 1-D array of row indices in 0..59"),
    ({"sample_weight": np.ones((2, 60))}, r"^sample_weight: expected finite weights >= 0 of "
                                          r"shape \(60,\) or \(3, 60\), got shape \(2, 60\)"),
    ({"sample_weight": np.eye(3, 60)[[0, 1, 1]] * 0 + np.r_[np.ones(30), np.zeros(30)],
      "rows": [np.arange(30), np.arange(30), np.arange(30, 60)]},
     r"^sample_weight: member 2's rows all weigh 0"),
    ({"devices": []}, r"^devices: expected a non-empty sequence of distinct jax devices"),
    ({"devices": jax.devices() * 2}, r"^devices: expected a non-empty sequence of distinct"),
])
def test_bad_arguments_are_named(kwargs, match):
    X, y = problem()
    args = {"keys": [0, 1, 2], "epochs": 1, "progress": False} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        fit_population(NET, X, y, **args)


def test_a_diverging_member_stops_alone():
    """A member whose cost stops being finite stops (fit would raise DivergenceError, and
    `member(i)` raises it, with fit's message: the epoch, the cost, the rate, the alpha);
    the others run on as they would alone."""
    net = jaxbp.MLP((2, 8, 1), hidden="relu", output="identity")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = 1e3 * X[:, 0]
    opt = jaxbp.optim.sgd(1e-3)
    res = fit_population(net, X, y, keys=[0, 1], opt=opt, lr=[1e-3, 10.0], alpha=[0.0, 1e-3],
                         epochs=30, progress=False)
    assert list(res.diverged) == [False, True] and res.epochs_run[0] == 30
    with pytest.raises(jaxbp.DivergenceError) as theirs:
        jaxbp.fit(net, X, y, key=1, opt=jaxbp.optim.sgd(10.0), alpha=1e-3, epochs=30,
                  progress=False)
    assert "or a smaller alpha" in str(theirs.value)
    with pytest.raises(jaxbp.DivergenceError) as ours:
        res.member(1)
    assert str(ours.value) == str(theirs.value)
    want = jaxbp.fit(net, X, y, key=0, opt=opt, epochs=30, progress=False)
    assert_same_run(res.member(0), want, "member 0")


def test_a_population_too_large_for_its_memory_trains_in_chunks():
    """With room for two members at a time, six members train in chunks of at most two (one
    program call each) and still equal `fit` alone; too little room for even one member
    still trains them, one at a time."""
    from jaxbp import population

    X, y = problem()
    opt = jaxbp.optim.adam(1e-2)
    params = jaxbp.init(NET, jax.random.key(0))
    one = population.member_bytes(NET, opt, params, 60, 16)
    with members_per_call() as calls:
        res = fit_population(NET, X, y, keys=range(6), opt=opt, epochs=2, batch_size=16,
                             memory=2 * one + one // 2, progress=False)
        tiny = fit_population(NET, X, y, keys=range(2), opt=opt, epochs=1, batch_size=16,
                              memory=1, progress=False)
    assert calls[:3] == [2, 2, 2] and len(calls) == 6 + 2 and calls[6:] == [1, 1]
    for i in (0, 5):
        want = alone(X, y, np.arange(60), i, 1e-2, 0.0, 0.0, np.ones(60), 2, 16, opt)
        assert_same_run(res.member(i), want, f"member {i}")
    assert_same_run(tiny.member(1), alone(X, y, np.arange(60), 1, 1e-2, 0.0, 0.0, np.ones(60),
                                          1, 16, opt), "tiny member 1")


def test_member_bytes_bounds_what_a_member_adds_to_the_compiled_epoch():
    """`member_bytes` is an estimate from above: XLA's own account of an epoch program's
    arguments, outputs and temporaries grows by less than it per member added (4 -> 8)."""
    from jaxbp import population

    net = jaxbp.MLP((20, 64, 32, 5), hidden="relu", output="softmax")
    opt = jaxbp.optim.adam()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 20)), rng.integers(0, 5, 300)
    params = jaxbp.init(net, jax.random.key(0))
    Xc, Yc = jax.numpy.asarray(X.T), jax.numpy.asarray(np.eye(5)[y].T)

    def footprint(k):
        p = jax.tree.map(lambda x: jax.numpy.stack([x] * k), params)
        s = jax.tree.map(lambda x: jax.numpy.stack([x] * k), opt.init(params))
        cfg = population._Static(32, True, 0.0, False)
        compiled = population._epoch_over(net, opt, (), cfg, 1).lower(
            p, s, Xc, Yc, jax.numpy.zeros((k, 300), "int32"), jax.numpy.full(k, 300, "int32"),
            jax.numpy.ones((k, 300)), jax.random.split(jax.random.key(0), k), np.int32(0),
            np.zeros(k), np.zeros(k), np.zeros((k, 0)), np.ones(k, bool)).compile()
        mem = compiled.memory_analysis()
        return (mem.argument_size_in_bytes + mem.output_size_in_bytes
                + mem.temp_size_in_bytes)

    per_member = (footprint(8) - footprint(4)) / 4
    assert 0 < per_member <= population.member_bytes(net, opt, params, 300, 32)


@dataclasses.dataclass(frozen=True)
class _Halving(jaxbp.Schedule):
    """A schedule with state, as the estimators' adaptive one: the rate the hook last set."""

    box: dict = dataclasses.field(default_factory=dict, compare=False)

    def __call__(self, lr, epoch, epochs, examples_seen):
        return self.box.get("lr", lr)


def test_the_hooks_run_per_member_as_fit_runs_them():
    """`callback` and `on_epoch_end` per member: called after each epoch the member runs,
    with what `fit` gives them (its result so far: epochs run, best epoch, key, history,
    parameters, optimizer state; its record); a callback returning True stops its member; a
    hook that changes its schedule's state changes the member's next learning rate. Each
    member's calls and run equal `fit` alone's with the same hooks."""
    X, y = problem()

    def hooks(log, box, stop_at):
        def on_epoch_end(result, epoch):
            log.append((("end", epoch, result.epochs_run, result.best_epoch,
                         tuple(np.asarray(jax.random.key_data(result.key)).ravel())),
                        (result.history["train_cost"][-1],
                         float(np.asarray(result.params[0][0]).sum()),
                         float(np.asarray(result.opt_state.velocity[0][0]).sum()))))
            box["lr"] = 0.5 * result.history["lr"][-1]

        def callback(record):
            log.append((("record", record["epoch"]), (record["train_cost"], record["lr"])))
            return record["epoch"] == stop_at

        return callback, on_epoch_end

    logs, boxes = [[], [], []], [{}, {}, {}]
    made = [hooks(logs[i], boxes[i], stop) for i, stop in enumerate([2, -1, 4])]
    opt = jaxbp.optim.sgd(0.2, momentum=0.5)
    # early stopping on the training cost (patience 10: it never stops): a best epoch to see
    res = fit_population(NET, X, y, keys=[0, 1, 2], opt=opt, epochs=6, batch_size=16,
                         schedule=[_Halving(box=b) for b in boxes], early_stopping=True,
                         callback=[c for c, _ in made], on_epoch_end=[e for _, e in made],
                         progress=False)
    assert list(res.epochs_run) == [3, 6, 5]
    for i, stop in enumerate([2, -1, 4]):
        log, box = [], {}
        callback, on_epoch_end = hooks(log, box, stop)
        want = jaxbp.fit(NET, X, y, key=i, opt=opt, epochs=6, batch_size=16,
                         schedule=_Halving(box=box), early_stopping=True, callback=callback,
                         on_epoch_end=on_epoch_end, progress=False)
        assert_same_run(res.member(i), want, f"member {i}")
        assert [e[0] for e in logs[i]] == [e[0] for e in log]  # the same calls, in order
        assert any(e[0][3] is not None for e in log)  # best epochs were seen
        np.testing.assert_allclose([x for e in logs[i] for x in e[1]],
                                   [x for e in log for x in e[1]], rtol=1e-12)



def test_epochs_dispatched_past_a_stop_are_undone():
    """With lookahead, epochs are dispatched before the earlier ones are read back; a member
    that stops (its callback, or early stopping) gets back its state of the epoch it stopped
    at, and its hooks see each epoch's own parameters: every member equals `fit` alone."""
    X, y = problem()

    def hooks(log, stop_at):
        def on_epoch_end(result, epoch):
            log.append((epoch, float(np.asarray(result.params[0][0]).sum())))

        return (lambda record: record["epoch"] == stop_at), on_epoch_end

    stops, logs = [1, 3, 2], [[], [], []]
    made = [hooks(logs[i], stop) for i, stop in enumerate(stops)]
    with members_per_call() as calls:
        res = fit_population(NET, X, y, keys=[0, 1, 2], epochs=10, batch_size=16,
                             callback=[c for c, _ in made], on_epoch_end=[e for _, e in made],
                             lookahead=4, progress=False)
    assert list(res.epochs_run) == [2, 4, 3]
    assert len(calls) > 4  # epochs past the last stop were dispatched, then undone
    for i, stop in enumerate(stops):
        log = []
        callback, on_epoch_end = hooks(log, stop)
        want = jaxbp.fit(NET, X, y, key=i, epochs=10, batch_size=16, callback=callback,
                         on_epoch_end=on_epoch_end, progress=False)
        assert_same_run(res.member(i), want, f"member {i}")
        assert [e[0] for e in logs[i]] == [e[0] for e in log]
        np.testing.assert_allclose([e[1] for e in logs[i]], [e[1] for e in log], rtol=1e-12)
    # early stopping and restore_best, run ahead (the default without hooks) and not
    kw = dict(keys=[0, 1, 2], lr=[0.3, 0.05, 0.1], epochs=40, batch_size=16,
              validation_fraction=0.25, early_stopping=True, patience=2, progress=False)
    ahead, step = fit_population(NET, X, y, **kw), fit_population(NET, X, y, lookahead=1, **kw)
    assert len(set(ahead.epochs_run)) > 1 and max(ahead.epochs_run) < 40
    for i in range(3):
        assert_same_run(ahead.member(i), step.member(i), f"member {i}")

SHARDED = textwrap.dedent(r"""
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxbp
    from jaxbp import population

    assert jaxbp.use_cpu_cores(2) == 2 and jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    net = jaxbp.MLP((4, 8, 3), hidden="tanh", output="softmax")
    folds = [(np.r_[0:16 * i, 16 * i + 16:80], np.arange(16 * i, 16 * i + 16)) for i in range(5)]
    kw = dict(keys=range(5), opt=jaxbp.optim.adam(), lr=[0.3, 0.05, 0.2, 0.01, 0.1],
              alpha=[0.0, 1e-2, 0.0, 0.1, 0.0], dropout=0.1, rows=[t for t, _ in folds],
              validation_rows=[v for _, v in folds], sample_weight=rng.uniform(0.5, 2, (5, 80)),
              epochs=40, batch_size=16, early_stopping=True, patience=3, progress=False)
    calls, original = [], population._epoch_over

    def epoch_over(*static):
        epoch = original(*static)
        def spy(*args):
            out = epoch(*args)
            calls.append((out[0][0][0].sharding.device_set, out[0][0][0].shape[0]))
            return out
        return spy

    population._epoch_over = epoch_over
    two = jaxbp.fit_population(net, X, y, **kw)  # default: both devices
    population._epoch_over = original
    one = jaxbp.fit_population(net, X, y, devices=jax.devices()[:1], **kw)
    # each call ran on one device; the 5 members trained as 3 on one device and 2 on the
    # other (a program each), until the compaction left fewer
    assert all(len(on) == 1 for on, _ in calls), calls
    assert sorted((list(on)[0].id, k) for on, k in calls[:2]) == [(0, 3), (1, 2)], calls
    assert calls[-1][1] < 3
    assert sum(two.stopped_early) >= 3 and len(set(two.epochs_run)) > 2
    for i in range(5):
        a, b = two.member(i), one.member(i)
        assert (a.epochs_run, a.best_epoch) == (b.epochs_run, b.best_epoch), i
        # float64, the same vmapped program over fewer members: rounding at most, 1e-12
        for u, v in zip(jax.tree.leaves((a.params, a.opt_state, a.history)),
                        jax.tree.leaves((b.params, b.opt_state, b.history)), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-15)
    # the devices run their programs asynchronously: every epoch of a population with 4 epochs
    # to look ahead was dispatched before the first had finished
    outs, ready = [], []

    def epoch_over(*static):
        epoch = original(*static)
        def spy(*args):
            outs.append(epoch(*args))
            ready.append(outs[0][2].is_ready())  # the first epoch's cost on the first device
            return outs[-1]
        return spy

    big = jaxbp.MLP((16, 512, 512, 3), hidden="tanh", output="softmax")
    Xb, yb = rng.normal(size=(4000, 16)), rng.integers(0, 3, 4000)
    kw = dict(keys=range(2), epochs=4, lookahead=4, progress=False)
    jaxbp.fit_population(big, Xb, yb, **kw)  # compiles each device's program
    population._epoch_over = epoch_over
    jaxbp.fit_population(big, Xb, yb, **kw)
    population._epoch_over = original
    assert len(ready) == 8 and not any(ready), ready  # 4 epochs of 2 programs
    print("OK")
""")


def test_members_spread_over_two_devices_train_as_on_one():
    """With two CPU devices (`use_cpu_cores(2)`, in a fresh interpreter: JAX fixes its
    devices when it starts), each device trains its share of the members in a program of its
    own, and every member's run (epochs, best epoch, parameters, state, histories) equals the
    run on one device."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]


def test_use_cpu_cores_refuses_once_jax_has_started():
    jax.numpy.zeros(1).block_until_ready()  # the backend has started (whatever ran before)
    with pytest.raises(RuntimeError, match=r"^use_cpu_cores\(2\): JAX has already started "
                                           r"its backends, with 1 CPU device\(s\)"):
        jaxbp.use_cpu_cores(2)
    with pytest.raises(ValueError, match=r"^n: expected a number of devices >= 1, got 0"):
        jaxbp.use_cpu_cores(0)


def test_members_with_their_own_optimizer_settings_share_a_program():
    """k optimizers, one per member: Adam's β1, β2, ε and SGD's momentum differ from member
    to member inside one compiled program each (traced values), an optimizer of another
    class or weight decay in a program of its own; every member equals `fit` alone with its
    own optimizer (float64, rtol 1e-12)."""
    X, y = problem()
    opts = [jaxbp.optim.adam(1e-2, b1=0.9, b2=0.999, eps=1e-8),
            jaxbp.optim.adam(3e-2, b1=0.8, b2=0.99, eps=1e-6),
            jaxbp.optim.adam(1e-2, b1=0.95, b2=0.9, eps=1e-3),
            jaxbp.optim.sgd(0.1, momentum=0.9, nesterov=True),
            jaxbp.optim.sgd(0.05, momentum=0.5, nesterov=True),
            jaxbp.optim.adam(1e-2, weight_decay=1e-3)]
    with members_per_call() as sizes:
        res = fit_population(NET, X, y, keys=range(6), opt=opts, epochs=3, batch_size=16,
                             progress=False)
    assert sorted(sizes[:3]) == [1, 2, 3]  # Adam ×3, SGD ×2, Adam with weight decay
    for i, opt in enumerate(opts):
        want = alone(X, y, np.arange(60), i, opt.lr, 0.0, 0.0, np.ones(60), 3, 16, opt)
        assert_same_run(res.member(i), want, f"member {i}: {opt}")
    with pytest.raises(TypeError, match=r"^opt: expected "):
        fit_population(NET, X, y, keys=range(2), opt=[opts[0], "adam"], epochs=1,
                       progress=False)


@pytest.mark.parametrize(("m", "M"), [(1437, 1438), (45, 47), (2990, 3000), (7, 7)])
def test_a_shuffle_drawn_longer_begins_with_the_shuffle_itself(m, M):
    """`shuffle_padded(key, m, M)` (m traced) is `shuffle(key, m)` followed by m..M−1: XLA's
    Philox words are a prefix of a longer draw, round two read at offset m (2 990 and 3 000
    rows shuffle in two rounds). Populations rely on it to share one program between members
    of different lengths."""
    from jaxbp import backends

    kind = backends.shuffle_kind(m)
    assert kind == backends.shuffle_kind(M) and (kind[1] == 2) == (m >= 2990)
    padded = jax.jit(backends.shuffle_padded, static_argnums=(2, 3))
    for seed in range(3):
        key = jax.random.key(seed)
        got = np.asarray(padded(key, np.int32(m), M, kind))
        np.testing.assert_array_equal(got[:m], np.asarray(backends.shuffle(key, m)))
        np.testing.assert_array_equal(got[m:], np.arange(m, M))


def test_members_of_different_lengths_with_as_many_batches_share_a_program():
    """45, 47 and 48 rows in batches of 16 (3 batches each, the last ragged) train as one
    program, each member equal to `fit` alone on its own rows (float64, rtol 1e-12), with
    dropout and weights; 60 rows (4 batches) in a program of its own."""
    X, y = problem()
    rng = np.random.default_rng(3)
    rows = [np.sort(rng.choice(60, n, replace=False)) for n in (45, 47, 48)] + [np.arange(60)]
    w = rng.uniform(0.5, 2.0, size=(4, 60))
    opt = jaxbp.optim.adam()
    with members_per_call() as sizes:
        res = fit_population(NET, X, y, keys=range(4), opt=opt, lr=2e-2, dropout=0.2,
                             rows=rows, sample_weight=w, epochs=3, batch_size=16,
                             progress=False)
    assert sorted(sizes[:2]) == [1, 3]
    for i, r in enumerate(rows):
        want = alone(X, y, r, i, 2e-2, 0.0, 0.2, w[i], 3, 16, opt)
        assert_same_run(res.member(i), want, f"member {i} ({len(r)} rows)")
