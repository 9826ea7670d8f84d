"""A crashed `jaxbp train` resumed from its last checkpoint ends exactly as the uninterrupted
run; Ctrl-C leaves the last checkpoint loadable. The CLI runs in subprocesses, as a user runs
it, and is stopped by real signals mid-run: SIGKILL (a crash, the OOM killer; nothing runs
after it) and SIGINT (Ctrl-C)."""

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from test_cli import cli_env

from jaxbp.checkpoint import load_checkpoint, read_header

# digits with a small network: ~9 ms an epoch on a 2-core CPU, each epoch checkpointed
# (--checkpoint_every 0); early stopping off, since a run that stopped early restored its best
# weights and has nothing to continue (the CLI refuses to resume it).
RUN = ("train", "--dataset", "digits", "--hidden", "32", "--noearly_stopping", "--quiet",
       "--plot", "", "--checkpoint_every", "0")
# Epochs of a run to interrupt. The signal goes out once a checkpoint of epoch >= KILL_AT is
# on disk; the first count leaves ~50 epochs (~0.5 s) after that for the poll below to see it
# and the signal to land before the run ends. Where the run still ends first (a fast machine,
# or this process descheduled), the next, longer count is tried: never a silent pass.
EPOCHS = (60, 300, 1500)
KILL_AT = 5
POLL_S = 0.002  # between reads of the checkpoint's header (~1 ms each)
# For the first mid-run checkpoint: JAX's start and compiling take ~6 s on an idle 2-core
# machine; other test processes sharing it can slow that several times over.
FIRST_CHECKPOINT_S = 180


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "jaxbp", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=cli_env())


def _finish(proc, timeout=300):
    """(returncode, stdout, stderr) of a started CLI process, killed if it runs past timeout."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} ran past {timeout} s:\n{err}")
    return proc.returncode, out, err


def _run_together(*commands, timeout=300):
    """Run the CLI commands side by side (each a tuple of arguments); their (returncode,
    stdout, stderr), in order."""
    procs = [_start(*map(str, args)) for args in commands]
    try:
        return [_finish(proc, timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:  # _finish failed on another one
                proc.kill()
                proc.wait()


def _epoch_on_disk(path):
    try:
        return read_header(path)["epoch"]  # written atomically: whole or absent, never torn
    except FileNotFoundError:
        return 0


def _interrupt_once(directory, epochs, signum):
    """Run `train` for `epochs` epochs, checkpointing into `directory`, and send `signum` once
    a checkpoint of epoch >= KILL_AT is on disk. Returns (returncode, stderr) when the signal
    stopped the run mid-run, None when the run completed its epochs first."""
    proc = _start(*RUN, "--epochs", str(epochs), "--checkpoint_dir", str(directory))
    path, deadline = directory / "checkpoint.npz", time.monotonic() + FIRST_CHECKPOINT_S
    signalled = False
    try:
        while proc.poll() is None and _epoch_on_disk(path) < KILL_AT:
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint of epoch >= {KILL_AT} in {path} within "
                            f"{FIRST_CHECKPOINT_S} s of starting jaxbp train")
            time.sleep(POLL_S)
        if proc.poll() is None:
            proc.send_signal(signum)
            signalled = True
    finally:
        if not signalled and proc.poll() is None:  # failing: stop it, don't wait for it
            proc.kill()
        returncode, _, err = _finish(proc)
    if _epoch_on_disk(path) >= epochs:
        return None  # it completed every epoch before the signal landed: try a longer run
    assert signalled, f"jaxbp train ended at epoch {_epoch_on_disk(path)} of {epochs}, " \
        f"exit status {returncode}, before the signal:\n{err}"
    return returncode, err


def _interrupt(tmp_path, signum):
    """_interrupt_once with longer runs until the signal lands mid-run: (directory, epochs,
    returncode, stderr)."""
    for epochs in EPOCHS:
        directory = tmp_path / f"interrupted_{epochs}"
        stopped = _interrupt_once(directory, epochs, signum)
        if stopped is not None:
            return (directory, epochs, *stopped)
    pytest.fail(f"jaxbp train finished {EPOCHS[-1]} epochs before {signum!r} could stop it")


def _assert_same(a, b, what):
    """Every array of `a` equals `b`'s bit for bit, dtype included."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b), what
    for i, (x, y) in enumerate(zip(leaves_a, leaves_b, strict=True)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and np.array_equal(x, y), (
            f"{what}, array {i}: differs from the uninterrupted run's "
            f"({np.count_nonzero(x != y)} of {x.size} elements)")


def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path):
    directory, epochs, returncode, err = _interrupt(tmp_path, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, err
    crashed = load_checkpoint(directory / "checkpoint.npz")
    assert KILL_AT <= crashed.epoch < epochs and not crashed.extra["finished"]
    # The resumed run and the uninterrupted one, side by side (2 cores).
    (rc_r, out_r, err_r), (rc_w, out_w, err_w) = _run_together(
        (*RUN, "--epochs", epochs, "--checkpoint_dir", directory, "--resume"),
        (*RUN, "--epochs", epochs, "--checkpoint_dir", tmp_path / "whole"))
    assert rc_r == 0, err_r
    assert rc_w == 0, err_w
    assert f"resuming from {directory / 'checkpoint.npz'} at epoch {crashed.epoch}" in out_r
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    b = load_checkpoint(directory / "checkpoint.npz")
    assert a.epoch == b.epoch == epochs
    # Bit for bit on one backend (CPU here; a GPU with the deterministic kernels the CLI asks
    # for): the same arithmetic in the same order, from the same state.
    _assert_same(a.params, b.params, "params")
    _assert_same(a.opt_state, b.opt_state, "optimizer state")
    _assert_same(jax.random.key_data(a.key), jax.random.key_data(b.key), "key")
    del a.history["seconds"], b.history["seconds"]  # wall times
    assert a.history == b.history  # every epoch's lr and costs, the crashed run's included
    assert a.extra == b.extra
    assert out_w.splitlines()[-2:] == out_r.splitlines()[-2:]  # test cost, test accuracy
    assert out_r.splitlines()[-1].startswith("test accuracy: ")


def test_ctrl_c_mid_run_keeps_the_last_checkpoint(tmp_path):
    directory, epochs, returncode, err = _interrupt(tmp_path, signal.SIGINT)
    # Not a success. (Now: Python's default for an uncaught KeyboardInterrupt, a traceback and
    # death by SIGINT, status -2; this test does not judge the traceback.)
    assert returncode != 0, err
    c = load_checkpoint(directory / "checkpoint.npz")  # whole: the write is atomic
    assert KILL_AT <= c.epoch < epochs and not c.extra["finished"]
    assert c.history["epoch"] == list(range(c.epoch))
    assert not list(directory.glob(".*.tmp"))  # an interrupted write removes its temporary
