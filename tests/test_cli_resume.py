"""`jaxbp train --resume --checkpoint_dir D` continues the run of the checkpoint in D from the
checkpoint alone: it records the flags that define the run, those not given take its values,
one given again must agree with it. An older checkpoint, without that record, still resumes
when the flags are repeated. The CLI runs in subprocesses, side by side (test_resume's
helpers), on a small CSV the test writes."""

import json

import numpy as np
from test_checkpoint import repack
from test_cli_task import _csv
from test_resume import _assert_same, _run_together

from jaxbp.checkpoint import load_checkpoint, read_header

# The flags that define the run away from their defaults, so that each must come back from
# the checkpoint. (No early stopping: its patience count is not checkpointed, so a resumed run
# that could stop early may stop elsewhere. A schedule that does not depend on --epochs: the
# half-way run asks for 3 epochs, the whole one for 6. No --dropout, a float flag as --alpha
# is, whose masks take a second or two more to compile in every run.)
FLAGS = ("--task", "classification", "--hidden", "8,4", "--activation", "tanh", "--output",
         "softmax", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.8", "--nesterov",
         "--beta1", "0.8", "--beta2", "0.99", "--weight_decay", "0.0001", "--alpha", "0.001",
         "--schedule", "invscaling", "--batch_size", "16", "--seed", "3",
         "--test_fraction", "0.25", "--validation_fraction", "0.2", "--noearly_stopping",
         "--patience", "4", "--dtype", "float64", "--precision", "tf32")
QUIET = ("--quiet", "--plot", "", "--checkpoint_every", "0")


def _dataset(tmp_path):
    """A CSV of 120 rows: three features a, b, c and a class 'kind' that depends on them."""
    X = np.random.default_rng(1).normal(size=(120, 3))
    kinds = np.array(["ant", "bee", "cat"])[np.argmax(X @ [[1, -1, 0], [0, 1, -1], [1, 0, 1]],
                                                      axis=1)]
    return _csv(tmp_path / "kinds.csv", kinds, name="kind", X=X)


def _older(header):
    """The run record as jaxbp wrote it before it recorded the flags and feature names: the
    dataset, target, seed and test fraction at its top level."""
    extra = header["extra"]
    flags = extra.pop("flags")
    del extra["feature_names"]
    extra |= {name: flags[name] for name in ("dataset", "target", "seed", "test_fraction")}


def test_resume_from_the_checkpoint_alone_equals_the_uninterrupted_run(tmp_path):
    run = ("train", "--dataset", _dataset(tmp_path), "--target", "kind", *FLAGS, *QUIET)
    whole, half = tmp_path / "whole", tmp_path / "half"
    uninterrupted, first = _run_together((*run, "--epochs", 6, "--checkpoint_dir", whole),
                                         (*run, "--epochs", 3, "--checkpoint_dir", half))
    for rc, _, err in (uninterrupted, first):
        assert rc == 0, err
    recorded = read_header(half / "checkpoint.npz")["extra"]
    assert recorded["flags"]["hidden"] == [8, 4] and recorded["flags"]["epochs"] == 3
    assert recorded["feature_names"] == ["a", "b", "c"] and recorded["target"] == "kind"
    copies = {}
    for name, edit in (("older", _older), ("older_bare", _older), ("same", None)):
        copies[name] = tmp_path / name
        copies[name].mkdir()
        repack(half / "checkpoint.npz", copies[name] / "checkpoint.npz", header=edit)

    resumed, older, refused, finished, older_bare, older_dtype, evaluated = _run_together(
        ("train", "--epochs", 6, "--resume", "--checkpoint_dir", half),  # the README's line
        (*run, "--epochs", 6, "--resume", "--checkpoint_dir", copies["older"]),
        ("train", "--resume", "--checkpoint_dir", copies["same"], "--hidden", "8",
         "--epochs", 6),
        ("train", "--resume", "--checkpoint_dir", copies["same"]),  # its --epochs: 3, done
        ("train", "--resume", "--checkpoint_dir", copies["older_bare"], "--dtype", "float64",
         "--epochs", 6),
        ("train", "--resume", "--checkpoint_dir", copies["older_bare"], "--epochs", 6),
        ("evaluate", "--checkpoint", copies["older_bare"] / "checkpoint.npz"))

    for rc, _, err in (resumed, older):
        assert rc == 0, err
    lines = resumed[1].splitlines()
    assert f"resuming from {half / 'checkpoint.npz'} at epoch 3: epochs 1 to 3 of 6 are " \
           f"done" in lines
    assert "epochs run: 6 (epochs 1 to 6; 3 by this process, 4 to 6, resumed after epoch 3)" \
        in lines
    a = load_checkpoint(whole / "checkpoint.npz")
    for directory in (half, copies["older"]):
        b = load_checkpoint(directory / "checkpoint.npz")
        assert a.epoch == b.epoch == 6
        _assert_same(a.params, b.params, "params")
        _assert_same(a.opt_state, b.opt_state, "optimizer state")
        for h in (a.history, b.history):
            h.pop("seconds", None)  # wall times
        assert a.history == b.history
    assert a.extra == load_checkpoint(half / "checkpoint.npz").extra  # flags, epochs: 6
    for out in (resumed[1], older[1]):  # the test cost and accuracy
        assert out.splitlines()[-2:] == uninterrupted[1].splitlines()[-2:]

    assert refused[0] == 2, refused[2]
    assert refused[2] == (f"jaxbp train: error: --hidden: the checkpoint in {copies['same']} "
                          f"was trained with --hidden 8,4, got --hidden 8\n")
    assert finished[0] == 2 and finished[2] == (
        "jaxbp train: error: --epochs: the checkpoint has already run 3 epochs; ask for more\n")
    assert older_bare[0] == 2 and "Traceback" not in older_bare[2], older_bare[2]
    assert older_bare[2].startswith(
        f"jaxbp train: error: --resume: {copies['older_bare'] / 'checkpoint.npz'} does not "
        f"record the flags of its run (an older jaxbp wrote it): give them again, as they "
        f"were (net: expected a checkpoint of MLP(sizes=(3, 100, 3)"), older_bare[2]
    assert older_dtype[0] == 2 and older_dtype[2] == (
        f"jaxbp train: error: --dtype: the checkpoint in {copies['older_bare']} holds float64 "
        f"parameters, got --dtype float32\n")
    # evaluate reads the data and the split of an older record from its top level
    assert evaluated[0] == 0, evaluated[2]
    accuracy = json.loads(evaluated[1])["accuracy"]
    assert f"test accuracy: {100 * accuracy:.2f}%" == first[1].splitlines()[-1]
