"""The command line, run as a user runs it: `python -m jaxbp ...` in a subprocess."""

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest


def cli_env():
    """The environment of a CLI subprocess: this one's without JAX_* settings (a user's shell
    has none); XLA_FLAGS (deterministic GPU kernels, as the CLI sets them) and PYTHONPATH
    (which jaxbp the CLI imports: a scratch copy's, when the tests run there) are inherited."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}


def jaxbp_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jaxbp", *args], capture_output=True,
                          text=True, cwd=cwd, env=cli_env(), timeout=300)


def test_help_lists_the_commands_and_each_command_its_own_flags():
    for args in (("--help",), ("help",)):
        out = jaxbp_cli(*args)
        assert out.returncode == 0, out.stderr
        for command in ("train", "search", "evaluate", "predict", "export", "explain"):
            assert f"\n  {command} " in out.stdout, (command, out.stdout)
        assert "--epochs" not in out.stdout  # no flag listing: that is the command's help
    train = jaxbp_cli("train", "--help")
    assert train.returncode == 0, train.stderr
    listed = train.stdout.replace("--[no]", "--")
    for flag in ("--dataset", "--target", "--task", "--hidden", "--activation", "--output",
                 "--optimizer", "--lr", "--epochs", "--batch_size", "--seed",
                 "--validation_fraction", "--early_stopping", "--checkpoint_dir",
                 "--checkpoint_every", "--plot", "--dtype", "--precision"):
        assert f"  {flag}:" in listed, flag
    assert "--checkpoint:" not in listed and "--explain_lr" not in listed  # other commands'
    predict = jaxbp_cli("help", "predict")
    assert predict.returncode == 0, predict.stderr
    assert "--checkpoint:" in predict.stdout and "--input:" in predict.stdout
    assert "--epochs" not in predict.stdout


def test_every_flag_belongs_to_a_command():
    from absl import flags

    from jaxbp import cli

    defined = {f.name for f in flags.FLAGS.get_flags_for_module(cli.__name__)}
    taken = {name for _, names in cli.COMMANDS.values() for name in names}
    assert defined == taken


def test_version_is_the_package_version():
    import importlib.metadata

    out = jaxbp_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"jaxbp {importlib.metadata.version('jaxbp')}\n"


@pytest.mark.parametrize(("args", "fragment"), [
    (("train", "--lr", "-1"), "--lr"),
    (("train", "--epochs", "0"), "--epochs"),
    (("train", "--activation", "swish"), "--activation"),
    (("train", "--output", "relu"), "--output: expected the output activation, one of auto, "
                                    "sigmoid, softmax, identity, got 'relu'"),
    (("trian",), "jaxbp: error: command: expected one of train, search, evaluate, predict, "
                 "export, explain, got 'trian'"),
    (("train", "--hidden", "abc"), "--hidden=abc: expected layer widths, whole numbers >= 1"),
    (("predict", "--epochs", "3"), "--epochs: a flag of jaxbp train, not of jaxbp predict"),
    (("train", "--dataset", "nope"), "--dataset: expected one of breast_cancer, digits"),
    (("train", "--dataset", "csv:none.csv", "--target", "y"), "--dataset: none.csv: no such"),
    (("train", "--dataset", "csv:rows.csv"), "--target: expected the name of the target column "
                                             "for a csv: dataset"),
    (("train", "--dataset", "foo:bar"), "--dataset: expected idx:DIR, csv:PATH or npz:PATH for a "
                                        "file, got 'foo:bar'"),
])
def test_bad_flags_are_one_line_errors(args, fragment):
    out = jaxbp_cli(*args)
    assert out.returncode == 2, out.stderr  # a usage error
    assert "Traceback" not in out.stderr
    assert fragment in out.stderr
    assert len(out.stderr.splitlines()) <= 2, out.stderr  # the error, and where to look


def test_explain_prints_the_worked_example():
    out = jaxbp_cli("explain")
    assert out.returncode == 0, out.stderr
    assert "J = 0.1952288" in out.stdout and "Δ^1  shape (3, 2)" in out.stdout
    info = re.compile(r"^[IDW]\d{4} ", re.MULTILINE)  # absl's log lines: I1201 23:54:39...
    assert not info.search(out.stderr), out.stderr  # JAX's 'Unable to initialize backend'
    verbose = jaxbp_cli("explain", "--verbosity", "1")
    assert verbose.returncode == 0, verbose.stderr
    assert info.search(verbose.stderr), verbose.stderr  # asked for: JAX's debug lines


def test_train_evaluate_predict(tmp_path):
    ck = tmp_path / "run"
    out = jaxbp_cli("train", "--epochs", "40", "--lr", "0.003", "--quiet", "--precision", "tf32",
                    "--checkpoint_dir", str(ck), "--plot", str(tmp_path / "curves.png"),
                    cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    assert float(last.split()[-1].rstrip("%")) > 90.0
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert (ck / "checkpoint.npz").is_file()
    from jaxbp.checkpoint import read_header

    assert read_header(ck / "checkpoint.npz")["net"]["precision"] == "tf32"

    ev = jaxbp_cli("evaluate", "--checkpoint", str(ck / "checkpoint.npz"))
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert f"{100 * result['accuracy']:.2f}%" == last.split()[-1]

    rows = tmp_path / "rows.npy"
    from sklearn.datasets import load_breast_cancer

    np.save(rows, load_breast_cancer().data[:5])
    pr = jaxbp_cli("predict", "--checkpoint", str(ck / "checkpoint.npz"), "--input", str(rows))
    assert pr.returncode == 0, pr.stderr
    assert len(pr.stdout.strip().splitlines()) == 5


def test_float64_run_evaluates(tmp_path):
    out = jaxbp_cli("train", "--epochs", "3", "--quiet", "--dtype", "float64", "--plot", "",
                    "--checkpoint_dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    ev = jaxbp_cli("evaluate", "--checkpoint", str(tmp_path / "checkpoint.npz"))
    assert ev.returncode == 0, ev.stderr
    assert f"{100 * json.loads(ev.stdout)['accuracy']:.2f}%" == out.stdout.split()[-1]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    out = jaxbp_cli("evaluate", "--checkpoint", str(tmp_path / "none.npz"))
    assert out.returncode == 2 and "Traceback" not in out.stderr  # a path to nothing
    assert f"--checkpoint: no such file {tmp_path / 'none.npz'}" in out.stderr
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    bad = jaxbp_cli("evaluate", "--checkpoint", str(tmp_path / "bad.npz"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr  # a file that cannot be read
    assert bad.stderr.startswith(f"jaxbp evaluate: error: --checkpoint: {tmp_path / 'bad.npz'}")


def test_regression_csv_and_divergence_keeps_last_good_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.5, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    csv = tmp_path / "reg.csv"
    csv.write_text("a,b,c,target\n" + "".join(
        ",".join(f"{v:.5f}" for v in (*x, t)) + "\n" for x, t in zip(X, y, strict=True)))
    ok = jaxbp_cli("train", "--dataset", f"csv:{csv}", "--target", "target", "--quiet",
                   "--plot", "", "--epochs", "60", "--lr", "0.01")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1].startswith("test R²: ")
    assert float(ok.stdout.split()[-1]) > 0.8

    ck = tmp_path / "run"
    bad = jaxbp_cli("train", "--dataset", f"csv:{csv}", "--target", "target", "--quiet",
                    "--plot", "", "--epochs", "50", "--optimizer", "sgd", "--lr", "5",
                    "--checkpoint_dir", str(ck), "--checkpoint_every", "0")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr  # the run failed
    assert "smaller learning rate" in bad.stderr
    diverged_at = int(re.search(r"epoch (\d+) \(counted from 0\): the training cost",
                                bad.stderr).group(1))
    from jaxbp.checkpoint import load_checkpoint

    c = load_checkpoint(ck / "checkpoint.npz")  # the last good epoch, intact and finite
    assert c.epoch == diverged_at
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax_leaves(c.params))


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def _run_on_a_terminal(*args, timeout=300):
    """`python -m jaxbp ARGS` with stderr on a pseudo-terminal, as a user at a terminal runs
    it (stdout piped). Returns (returncode, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    # An 80-column window, as a terminal has: a fresh pty is 0 x 0, and tqdm draws nothing in
    # 0 columns.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "jaxbp", *args], stdout=subprocess.PIPE,
                                stderr=slave, stdin=subprocess.DEVNULL, env=cli_env())
    finally:
        os.close(slave)  # the child holds its own copy: reading ends once it exits
    shown, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every copy of the terminal's slave side is closed
                break
            if not chunk:
                break
            shown += chunk
        else:
            pytest.fail(f"jaxbp {' '.join(args)} ran past {timeout} s")
        stdout = proc.communicate(timeout=60)[0].decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout, shown.decode(errors="replace")


def test_train_draws_the_progress_bar_on_a_terminal(tmp_path):
    # The README's main job, `jaxbp train` at a terminal: a tqdm bar on stderr, the test
    # accuracy last on stdout. (The CLI passes progress=not --quiet, so the bar is drawn when
    # stderr is not a terminal too; a terminal is what a user has.)
    rc, stdout, terminal = _run_on_a_terminal("train", "--epochs", "3", "--plot", "",
                                              "--checkpoint_dir", str(tmp_path))
    assert rc == 0, terminal
    assert "Traceback" not in terminal
    for drawn in ("fit:   0%", "0/3", "fit: 100%", "3/3", "epoch/s", "train_cost="):
        assert drawn in terminal, (drawn, terminal)
    assert "fit:" not in stdout and "3/3" not in stdout  # the bar stays off stdout
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("test accuracy: ") and lines[-1].endswith("%"), stdout
    assert "epochs run: 3 (epochs 1 to 3)" in lines


def test_fit_progress_bar_goes_to_stderr_and_changes_nothing(capsys):
    import jax

    import jaxbp

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(90, 4)), rng.integers(0, 3, 90)
    net = jaxbp.MLP((4, 8, 3), hidden="tanh", output="softmax")
    kw = dict(epochs=3, batch_size=16, validation_fraction=0.2, key=3)
    quiet = jaxbp.fit(net, X, y, progress=False, **kw)
    assert capsys.readouterr() == ("", "")
    shown = jaxbp.fit(net, X, y, progress=True, **kw)
    out, err = capsys.readouterr()
    assert out == ""
    for drawn in ("fit:   0%", "fit: 100%", "3/3", "epoch/s", "train_cost=", "val_score="):
        assert drawn in err, (drawn, err)
    for a, b in zip(jax.tree.leaves((quiet.params, quiet.opt_state)),
                    jax.tree.leaves((shown.params, shown.opt_state)), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))  # bit for bit: the bar only watches
    del quiet.history["seconds"], shown.history["seconds"]  # wall times
    assert quiet.history == shown.history
