"""SIGINT (Ctrl-C) and SIGTERM stop `jaxbp train` with a checkpoint of the last completed epoch,
one line on stderr and status 130 / 143; checkpoints come every --checkpoint_every seconds
(default 2), so `kill -9` loses at most that long plus an epoch. The CLI runs in a subprocess
(test_resume's helpers) and real signals stop it mid-run."""

import contextlib
import re
import signal
import time

import pytest
from test_resume import _epoch_on_disk, _finish, _start

from jaxbp.checkpoint import load_checkpoint

# digits with a tiny network: a few ms an epoch, so the epoch in progress when the signal lands
# ends at once; far more epochs than run before the signal (one that lands too late fails).
RUN = ("train", "--dataset", "digits", "--hidden", "8", "--epochs", "100000",
       "--noearly_stopping", "--plot", "")
CADENCE_S = 2.0  # --checkpoint_every's default
# JAX's start and compiling take a few seconds on an idle 2-core machine; other test
# processes sharing it can slow that several times over.
FIRST_CHECKPOINT_S = 180


@contextlib.contextmanager
def _sigint_delivered():
    """A child inherits an ignored SIGINT (tests started by `... &` from a script), and the CLI
    leaves an ignored SIGINT ignored: let the child get it, as a terminal's foreground job
    does."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train(*args):
    with _sigint_delivered():
        return _start(*RUN, *args)


def _wait_for_epoch_after(proc, path, epoch):
    """(epoch on disk, when seen) once the checkpoint at `path` is past `epoch`."""
    deadline = time.monotonic() + FIRST_CHECKPOINT_S
    while (seen := _epoch_on_disk(path)) <= epoch:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, _, err = _finish(proc)
            pytest.fail(f"no checkpoint past epoch {epoch} in {path}:\n{err}")
        time.sleep(0.002)
    return seen, time.monotonic()


def _assert_stopped(proc, path, signum, after_epoch):
    """Send `signum`; the run ends with status 128 + signum, its last stderr line saying so,
    and leaves a loadable checkpoint of the epoch it names, past `after_epoch`. Returns the
    stderr."""
    proc.send_signal(signum)
    returncode, _, err = _finish(proc)
    name = signal.Signals(signum).name
    assert returncode == 128 + signum, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.splitlines()[-1]
    stopped = re.fullmatch(rf"jaxbp train: stopped by {name} after epoch (\d+) of 100000; "
                           rf"checkpoint {re.escape(str(path))} \(add --resume to the same "
                           rf"command to continue\)", last)
    assert stopped, err
    c = load_checkpoint(path)
    assert c.epoch == int(stopped[1]) > after_epoch
    assert not c.extra["finished"] and c.history["epoch"] == list(range(c.epoch))
    return err


def test_ctrl_c_checkpoints_the_last_epoch_and_exits_130(tmp_path):
    # with the progress bar, as at a terminal: Ctrl-C used to print a KeyboardInterrupt
    # traceback from inside tqdm
    proc = _train("--checkpoint_dir", str(tmp_path))
    path = tmp_path / "checkpoint.npz"
    first, _ = _wait_for_epoch_after(proc, path, 0)
    assert first == 1
    err = _assert_stopped(proc, path, signal.SIGINT, first)
    assert "fit:" in err  # the bar was drawn, then closed before the line


def test_sigterm_after_a_timed_checkpoint_exits_143(tmp_path):
    proc = _train("--checkpoint_dir", str(tmp_path), "--quiet")
    path = tmp_path / "checkpoint.npz"
    first, t_first = _wait_for_epoch_after(proc, path, 0)
    second, t_second = _wait_for_epoch_after(proc, path, first)
    # the next write waits --checkpoint_every seconds, then for the epoch in progress to end
    assert second > first + 1, "a checkpoint every epoch: the default is a time, not 0"
    assert CADENCE_S - 0.5 < t_second - t_first < CADENCE_S + 15  # (as polled: give or take)
    err = _assert_stopped(proc, path, signal.SIGTERM, second)
    assert len(err.splitlines()) == 1, err  # --quiet: the line alone


def test_a_signal_without_checkpoint_dir_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # see the 'network' line as it is printed
    proc = _train("--quiet")
    for line in proc.stdout:  # training starts after this line
        if line.startswith("network"):
            break
    proc.send_signal(signal.SIGINT)
    returncode, _, err = _finish(proc)
    assert returncode == 130 and err == "jaxbp train: stopped by SIGINT\n", err


def _wait_for_stderr(proc, text, timeout=FIRST_CHECKPOINT_S):
    """Read the process's stderr until `text` has appeared (its progress bar flushes as it
    draws); fail if it ends or runs past `timeout` first."""
    import os

    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, _, err = _finish(proc)
            pytest.fail(f"no {text!r} on stderr:\n{seen}{err}")
        seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_search_stops_at_once_and_writes_nothing(tmp_path, signum):
    """SIGINT and SIGTERM stop `jaxbp search` while its populations train: status 130 / 143,
    one line saying so, no traceback, and no results written (they come once every fold has
    its score)."""
    with _sigint_delivered():
        proc = _start("search", "--dataset", "digits", "--hidden", "8", "--epochs", "100000",
                      "--patience", "100000", "--cv", "2", "--grid", "lr=1e-3,3e-3",
                      "--search_dir", str(tmp_path / "s"))
    _wait_for_stderr(proc, "fit:")
    proc.send_signal(signum)
    returncode, _, err = _finish(proc)
    name = signal.Signals(signum).name
    assert returncode == 128 + signum, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.replace("\r", "\n").splitlines()[-1] == f"jaxbp search: stopped by {name}", err
    assert not (tmp_path / "s").exists()
