"""Checkpoints round-trip exactly, are written atomically, and refuse pickles and bad files."""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import checkpoint as ck

NET = jaxbp.MLP((3, 5, 2), hidden="tanh", output="softmax")
OPTS = {  # hyperparameters off their defaults, so that the header has to carry them all
    "adamw": jaxbp.optim.adam(1e-2, b1=0.8, weight_decay=0.1, decoupled=True),
    "sgd_momentum": jaxbp.optim.sgd(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
}
HISTORY = {"epoch": [0, 1, 2], "train_cost": [0.1 + 0.2, 1 / 3, 1e-300], "lr": [0.01] * 3}
EXTRA = {"dataset": "xor é", "mean": [0.5, -1.25], "classes": None, "nested": {"ok": True},
         "shape": (2, 3)}


def copy(tree):
    return jax.tree.map(jnp.copy, tree)


def trained(dtype, opt, steps=3):
    """Params and optimizer state after a few steps (so no buffer is still zero)."""
    params = jaxbp.init(NET, jax.random.key(0), dtype=dtype)
    X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8)), dtype)
    Y = jnp.eye(2, dtype=dtype)[:, jnp.arange(8) % 2]
    state = opt.init(params)
    for _ in range(steps):
        params, state, _ = jaxbp.train_step(NET, opt, params, state, X, Y)
    return params, state, X, Y


def assert_same(a, b):
    """Same tree structure; every leaf the same dtype and bit for bit the same values."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(np.asarray(x), np.asarray(y))


def fresh(dtype="float64", opt="adamw"):
    """Initial params and optimizer state (no training: quick, for the tests of bad input)."""
    params = jaxbp.init(NET, jax.random.key(0), dtype=dtype)
    return params, OPTS[opt].init(params)


def save(path, epoch=0, dtype="float64", opt="adamw", **kwargs):
    params, state = fresh(dtype, opt)
    return ck.save_checkpoint(path, net=NET, params=params, opt=OPTS[opt], opt_state=state,
                              epoch=epoch, **kwargs)


# --- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTS))
def test_round_trip_is_exact_and_training_continues_identically(tmp_path, dtype, name):
    opt = OPTS[name]
    params, state, X, Y = trained(dtype, opt)
    key = jax.random.key(7) if name.startswith("adam") else jax.random.PRNGKey(7)
    path = ck.save_checkpoint(tmp_path / "c.npz", net=NET, params=params, opt=opt,
                              opt_state=state, epoch=3, key=key, history=HISTORY, extra=EXTRA)
    c = ck.load_checkpoint(path)
    assert c.net == NET and c.opt == opt and type(c.opt) is type(opt) and c.epoch == 3
    assert c.history == HISTORY and c.extra == {**EXTRA, "shape": [2, 3]}  # tuples -> lists
    assert [type(v) for v in c.history["epoch"]] == [int] * 3
    assert_same(c.params, params)
    assert_same(c.opt_state, state)
    assert type(c.opt_state) is type(state)
    assert c.key.dtype == key.dtype
    assert np.array_equal(jax.random.key_data(c.key), jax.random.key_data(key))
    # One more step from the saved state and from the loaded one: bit for bit the same.
    from_saved = jaxbp.train_step(NET, opt, copy(params), copy(state), X, Y)
    from_loaded = jaxbp.train_step(NET, opt, c.params, c.opt_state, X, Y)
    assert_same(from_saved, from_loaded)


@pytest.mark.parametrize("make_key", [
    lambda: jax.random.key(11),
    lambda: jax.random.key(11, impl="rbg"),
    lambda: jax.random.PRNGKey(11),
], ids=["typed", "typed_rbg", "legacy"])
def test_keys_come_back_as_the_same_kind_and_draw_the_same_numbers(tmp_path, make_key):
    key = make_key()
    params = jaxbp.init(NET, key)
    c = ck.load_checkpoint(ck.save_checkpoint(tmp_path / "k.npz", net=NET, params=params,
                                              key=key))
    assert c.key.dtype == key.dtype and c.key.shape == key.shape
    assert np.array_equal(jax.random.normal(c.key, (4,)), jax.random.normal(key, (4,)))
    assert_same(jaxbp.init(NET, c.key), params)


def test_defaults_and_file_layout(tmp_path):
    params = jaxbp.init(NET, jax.random.key(0), dtype="float32")
    path = ck.save_checkpoint(str(tmp_path / "plain.npz"), net=NET, params=params)
    c = ck.load_checkpoint(path)
    assert (c.opt, c.opt_state, c.key, c.epoch, c.history, c.extra) == (None, None, None, 0, {}, {})
    assert_same(c.params, params)

    path = save(tmp_path / "full.npz", key=jax.random.key(1))
    with np.load(path, allow_pickle=False) as f:
        files = list(f.files)
        assert f["__header__"].dtype == np.uint8 and f["__header__"].ndim == 1
        header = json.loads(f["__header__"].tobytes().decode("utf-8"))
    assert files[0] == "__header__"
    assert set(files) == {"__header__", "key", "opt_state/count"} | {
        f"{prefix}/{l}/{wb}" for prefix in ("params", "opt_state/mu", "opt_state/nu")
        for l in (0, 1) for wb in "Wb"}
    assert header["format"] == "jaxbp-checkpoint" and header["version"] == 1
    assert header["net"] == {"sizes": [3, 5, 2], "hidden": "tanh", "output": "softmax",
                             "loss": "cross_entropy", "matmul_dtype": None,
                             "precision": "float32"}
    assert header["opt"] == {"class": "Adam", "hyperparameters": {
        "lr": 0.01, "b1": 0.8, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.1, "decoupled": True}}
    assert header["key"] == {"typed": True, "impl": "threefry2x32"}
    assert header["arrays"]["opt_state/mu/0/b"] == {"shape": [5, 1], "dtype": "float64"}
    assert header["arrays"]["opt_state/count"] == {"shape": [], "dtype": "int32"}
    assert ck.read_header(path) == header


def test_sgd_without_momentum_stores_no_state_arrays(tmp_path):
    params = jaxbp.init(NET, jax.random.key(0))
    opt = jaxbp.optim.sgd(0.5)
    path = ck.save_checkpoint(tmp_path / "c.npz", net=NET, params=params, opt=opt,
                              opt_state=opt.init(params))
    with np.load(path, allow_pickle=False) as f:
        assert not [n for n in f.files if n.startswith("opt_state")]
    assert ck.load_checkpoint(path).opt_state == jaxbp.optim.SGDState(velocity=())


def test_float64_checkpoint_is_not_silently_cast_without_x64(tmp_path):
    f32, f64 = save(tmp_path / "f32.npz", dtype="float32"), save(tmp_path / "f64.npz")
    jax.config.update("jax_enable_x64", False)
    try:
        assert ck.load_checkpoint(f32).params[0][0].dtype == jnp.float32
        # The header can still be read, to see that x64 is needed before loading.
        assert ck.read_header(f64)["arrays"]["params/0/W"]["dtype"] == "float64"
        with pytest.raises(ck.CheckpointError, match=r"f64\.npz: .*jax_enable_x64 is off"):
            ck.load_checkpoint(f64)
    finally:
        jax.config.update("jax_enable_x64", True)
    assert ck.load_checkpoint(f64).params[0][0].dtype == jnp.float64


# --- atomic writes -----------------------------------------------------------------------------
def _disk_full_midway(file, *args, **kwargs):
    file.write(b"PK\x03\x04 the first bytes of a zip that never gets finished")
    raise OSError(errno.ENOSPC, "No space left on device")


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt("killed mid-write")


def _rename_fails(*args, **kwargs):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


@pytest.mark.parametrize(("target", "replacement", "error"), [
    (np, ("savez", _disk_full_midway), OSError),  # the archive is half written
    (os, ("fsync", _interrupted), KeyboardInterrupt),  # written, not yet on disk
    (os, ("replace", _rename_fails), OSError),  # complete, but the rename fails
], ids=["disk_full_in_savez", "interrupt_in_fsync", "rename_fails"])
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, target,
                                                      replacement, error):
    path = save(tmp_path / "c.npz", epoch=1)
    before = path.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(target, *replacement)
        with pytest.raises(error) as info:
            save(path, epoch=2)
    if error is OSError:  # names the file, keeps the errno
        assert "c.npz" in str(info.value) and isinstance(info.value.__cause__, OSError)
        assert info.value.errno == info.value.__cause__.errno
    assert path.read_bytes() == before
    assert ck.load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left
    assert ck.load_checkpoint(save(path, epoch=3)).epoch == 3  # and the next save works


CHILD = r"""
import io, itertools, sys, time
import jax.numpy as jnp, numpy as np
import jaxbp
from jaxbp import checkpoint as ck

path, mode = sys.argv[1], sys.argv[2]
net = jaxbp.MLP((256, 1024, 10))  # about 6 MB with Adam's state
rng = np.random.default_rng(0)
params = tuple((jnp.asarray(rng.normal(size=w), jnp.float32), jnp.zeros(b, jnp.float32))
               for w, b in net.param_shapes())
opt = jaxbp.optim.adam()
state = opt.init(params)


def save(epoch):
    ck.save_checkpoint(path, net=net, params=params, opt=opt, opt_state=state, epoch=epoch)


save(1)
if mode == "stall":  # write half of the archive, then wait to be killed
    savez = np.savez

    def half_then_stall(file, **arrays):
        buffer = io.BytesIO()
        savez(buffer, **arrays)
        data = buffer.getvalue()
        file.write(data[: len(data) // 2])
        file.flush()
        print("midway", flush=True)
        time.sleep(600)

    np.savez = half_then_stall
    save(2)
else:  # save over and over until killed, wherever that lands
    for epoch in itertools.count(2):
        save(epoch)
        if epoch == 3:
            print("looping", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_with_sigkill_leaves_a_loadable_checkpoint(tmp_path):
    """Two writers, killed with SIGKILL: one provably halfway through writing (it stalls there),
    one saving in a loop and killed wherever it happens to be."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = {}
    for mode in ("stall", "loop"):
        (tmp_path / mode).mkdir()
        procs[mode] = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path / mode / "c.npz"), mode], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdogs = [threading.Timer(120, p.kill) for p in procs.values()]
    for w in watchdogs:
        w.start()
    try:
        for mode, proc in procs.items():
            line = proc.stdout.readline().strip()
            assert line == ("midway" if mode == "stall" else "looping"), proc.stderr.read()
        time.sleep(0.1)
        for proc in procs.values():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
    finally:
        for w, proc in zip(watchdogs, procs.values(), strict=True):
            w.cancel()
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    for mode in procs:
        path = tmp_path / mode / "c.npz"
        c = ck.load_checkpoint(path)
        assert c.net == jaxbp.MLP((256, 1024, 10)) and c.params[0][0].shape == (1024, 256)
        strays = [p for p in path.parent.iterdir() if p != path]
        assert all(p.name.startswith(".c.npz.") and p.suffix == ".tmp" for p in strays)
        if mode == "stall":
            assert c.epoch == 1
            # The half-written temporary file: what a non-atomic write would have left at path.
            assert len(strays) == 1
            with pytest.raises(ck.CheckpointError, match="truncated"):
                ck.load_checkpoint(strays[0])
        else:
            assert c.epoch >= 3


# --- bad files ---------------------------------------------------------------------------------
def repack(src, dst, header=None, arrays=None):
    """Copy checkpoint `src` to `dst` with its header and/or arrays edited in place."""
    with np.load(src, allow_pickle=False) as f:
        stored = {k: f[k] for k in f.files}
    h = json.loads(stored.pop("__header__").tobytes())
    if header:
        header(h)
    if arrays:
        arrays(stored)
    np.savez(dst, __header__=np.frombuffer(json.dumps(h).encode(), np.uint8), **stored)


def flip_byte(src, dst, needle, offset=3):
    raw = bytearray(src.read_bytes())
    at = raw.find(needle)
    assert at > 0
    raw[at + offset] ^= 0xFF
    dst.write_bytes(bytes(raw))


def write_zip(dst, members):
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def short_member(src):
    """The members of `src`, with the data of params/0/W cut short by 8 bytes."""
    with zipfile.ZipFile(src) as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["params/0/W.npy"] = members["params/0/W.npy"][:-8]
    return members


def w_bytes(src):
    with np.load(src, allow_pickle=False) as f:
        return f["params/0/W"].tobytes()


def edit_header(change):
    return lambda src, dst: repack(src, dst, header=change)


def edit_arrays(change):
    return lambda src, dst: repack(src, dst, arrays=change)


def npz_with_header(raw):
    return lambda src, dst: np.savez(dst, __header__=np.frombuffer(raw, np.uint8))


def truncate(keep):
    return lambda src, dst: dst.write_bytes(src.read_bytes()[: keep(src.stat().st_size)])


BAD_FILES = {
    "empty": (lambda src, dst: dst.write_bytes(b""), "not an .npz"),
    "text": (lambda src, dst: dst.write_text("hello"), "not an .npz"),
    "truncated_half": (truncate(lambda n: n // 2), "truncated"),
    "truncated_tail": (truncate(lambda n: n - 7), "truncated"),
    "flipped_array_byte": (lambda src, dst: flip_byte(src, dst, w_bytes(src)),
                           r"array 'params/0/W' is truncated or corrupted \(BadZipFile"),
    "flipped_header_byte": (lambda src, dst: flip_byte(src, dst, b'"format"'),
                            "array '__header__' is truncated or corrupted"),
    "foreign_npz": (lambda src, dst: np.savez(dst, a=np.ones(3)),
                    r"not a jaxbp checkpoint: no '__header__' array .*\['a'\]"),
    "foreign_zip": (lambda src, dst: write_zip(dst, {"readme.txt": "hi"}),
                    "member 'readme.txt' is not an .npy array"),
    "header_not_json": (npz_with_header(b"{oops"), "header is not UTF-8 JSON"),
    "header_not_utf8": (npz_with_header(b"\xff{}"), "header is not UTF-8 JSON"),
    "header_not_object": (npz_with_header(b"[1]"), "expected a JSON object, got list"),
    "header_not_bytes": (lambda src, dst: np.savez(dst, __header__=np.zeros(3)),
                         "expected the uint8 bytes of a JSON object"),
    "wrong_format": (edit_header(lambda h: h.update(format="zz")),
                     "not a jaxbp checkpoint: header format 'zz'"),
    "newer_version": (edit_header(lambda h: h.update(version=2)),
                      "newer jaxbp: format version 2, this jaxbp reads versions up to 1"),
    "bad_version": (edit_header(lambda h: h.update(version="1")),
                    "header 'version': expected an int"),
    "missing_field": (edit_header(lambda h: h.pop("epoch")), r"header: missing \['epoch'\]"),
    "bad_net": (edit_header(lambda h: h["net"].update(hidden="swish")),
                "header 'net': not a valid MLP"),
    "sizes_do_not_fit_arrays": (
        edit_header(lambda h: h["net"].update(sizes=[3, 6, 2])),
        r"does not fit the header's network MLP\(sizes=\(3, 6, 2\).*'params/0/W' should be "
        r"shape \(6, 3\) float64, the manifest says shape \(5, 3\)"),
    "manifest_lies": (
        edit_header(lambda h: h["arrays"]["opt_state/nu/1/W"].update(shape=[2, 4])),
        r"'opt_state/nu/1/W' should be shape \(2, 5\) float64, the manifest says shape \(2, 4\)"),
    "manifest_missing_array": (edit_header(lambda h: h["arrays"].pop("key")),
                               r"missing \['key'\]"),
    "array_data_short": (lambda src, dst: write_zip(dst, short_member(src)),
                         r"array 'params/0/W' is truncated or corrupted: it holds 112 bytes of "
                         r"data, its shape \(5, 3\) and dtype float64 need 120"),
    "array_swapped": (
        edit_arrays(lambda a: a.update({"params/0/W": np.zeros((7, 7))})),
        r"array 'params/0/W' holds shape \(7, 7\) float64, the header's manifest says "
        r"shape \(5, 3\)"),
    "array_dtype": (
        edit_arrays(lambda a: a.update({"params/1/b": a["params/1/b"].astype(np.float32)})),
        r"array 'params/1/b' holds shape \(2, 1\) float32"),
    "array_missing": (edit_arrays(lambda a: a.pop("opt_state/nu/1/b")),
                      r"missing from the file \['opt_state/nu/1/b'\]"),
    "array_extra": (edit_arrays(lambda a: a.update(junk=np.ones(2))),
                    r"not in the manifest \['junk'\]"),
    "unknown_optimizer": (edit_header(lambda h: h["opt"].update({"class": "RMSprop"})),
                          r"expected optimizer class one of \['SGD', 'Adam'\], got 'RMSprop'"),
    "bad_hyperparameter": (edit_header(lambda h: h["opt"]["hyperparameters"].update(lr=-1.0)),
                           r"invalid Adam hyperparameters \(lr: expected a number > 0\.0"),
    "bad_epoch": (edit_header(lambda h: h.update(epoch=-1)),
                  "header 'epoch': expected an int >= 0, got -1"),
    "bad_history": (edit_header(lambda h: h.update(history={"a": "x"})),
                    r"header 'history'\['a'\]: expected a list"),
    "bad_key_impl": (edit_header(lambda h: h["key"].update(impl="nope")),
                     "header 'key': unknown PRNG impl 'nope'"),
    "pickled_foreign": (lambda src, dst: np.savez(dst, a=np.array([{"a": 1}], dtype=object)),
                        r"holds pickled Python objects \(arrays \['a'\] have dtype object\)"),
    "pickled_inside_a_checkpoint": (
        edit_arrays(lambda a: a.update({"params/0/b": np.array([print], dtype=object)})),
        r"holds pickled Python objects \(arrays \['params/0/b'\]"),
    "directory": (lambda src, dst: dst.mkdir(), "expected a checkpoint file, got a directory"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save(tmp_path_factory.mktemp("good") / "good.npz", key=jax.random.key(3),
                history=HISTORY, extra=EXTRA)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, monkeypatch, good, case):
    make, fragment = BAD_FILES[case]
    bad = tmp_path / f"{case}.npz"
    make(good, bad)

    def never(*args, **kwargs):
        raise AssertionError("the loader unpickled something")

    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(pickle, "loads", never)
    with pytest.raises(ck.CheckpointError, match=fragment) as info:
        ck.load_checkpoint(bad)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{bad}: ")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no raw traceback
    with pytest.raises(ck.CheckpointError, match=fragment):
        ck.read_header(bad)


def test_the_cases_start_from_a_good_file(good):
    assert ck.load_checkpoint(good).epoch == 0
    assert w_bytes(good) in good.read_bytes()  # stored uncompressed, so flip_byte finds it


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such checkpoint file: .*none\.npz"):
        ck.load_checkpoint(tmp_path / "none.npz")
    with pytest.raises(TypeError, match=r"path: expected a str or os\.PathLike"):
        ck.load_checkpoint(3)


# --- bad arguments -----------------------------------------------------------------------------
def _float32_mu(params, state):
    mu = jax.tree.map(lambda x: x.astype(jnp.float32), state.mu)
    return state._replace(mu=mu)


BAD_SAVES = {
    "path_is_a_directory": (lambda t: {"path": t}, ValueError, "got the directory"),
    "no_such_directory": (lambda t: {"path": t / "no" / "c.npz"}, ValueError,
                          r"the directory .*no of .*c\.npz does not exist"),
    "parent_is_a_file": (lambda t: {"path": t / "f.txt" / "c.npz"}, ValueError,
                         r"f\.txt, the parent of .* is not a directory"),
    "path_not_a_path": (lambda t: {"path": 3}, TypeError, "path: expected a str or os.PathLike"),
    "net_not_an_mlp": (lambda t: {"net": (3, 5, 2)}, TypeError, "net: expected a jaxbp.MLP"),
    "params_of_another_net": (
        lambda t: {"net": jaxbp.MLP((3, 6, 2), hidden="tanh", output="softmax")},
        ValueError, r"params\[0\]\[0\] \(W\^1\): expected shape \(6, 3\)"),
    "opt_state_without_opt": (lambda t: {"opt": None}, ValueError, "opt_state: given without opt"),
    "opt_without_opt_state": (lambda t: {"opt_state": None}, ValueError,
                              "opt_state: expected the state of Adam"),
    "opt_state_of_another_optimizer": (lambda t: {"opt": OPTS["sgd_momentum"]}, ValueError,
                                       "opt_state: does not fit opt and params"),
    "opt_state_in_another_dtype": (
        lambda t: {"opt_state": "float32_mu"}, ValueError,
        r"opt_state: .*(opt_state/mu/0/W of shape \(5, 3\) float64|shape or dtype)"),
    "opt_not_an_optimizer": (lambda t: {"opt": "adam"}, TypeError,
                             "opt: expected an optimizer from jaxbp.optim"),
    "opt_that_cannot_load": (lambda t: {"opt": jaxbp.optim.Adam(lr=-1.0)}, ValueError,
                             r"opt: Adam\(lr=-1.0.*cannot be saved"),
    "key_not_a_key": (lambda t: {"key": 0}, TypeError, "key: expected a JAX PRNG key"),
    "key_wrong_shape": (lambda t: {"key": jnp.zeros(3, jnp.uint32)}, ValueError,
                        r"key: expected a legacy PRNGKey of shape \(2,\)"),
    "epoch_negative": (lambda t: {"epoch": -1}, ValueError, "epoch: expected an int >= 0"),
    "epoch_float": (lambda t: {"epoch": 1.5}, ValueError, "epoch: expected an int >= 0"),
    "history_not_a_dict": (lambda t: {"history": [0.5]}, TypeError,
                           "history: expected a dict of lists of numbers"),
    "history_numpy_value": (lambda t: {"history": {"c": [0.5, np.float32(0.25)]}}, TypeError,
                            r"history\['c'\]\[1\]: expected a Python int or float, got float32"),
    "extra_not_a_dict": (lambda t: {"extra": "x"}, TypeError, "extra: expected a JSON"),
    "extra_numpy_array": (lambda t: {"extra": {"mean": np.zeros(2)}}, TypeError,
                          r"extra\['mean'\]: expected a JSON value.*\.tolist\(\)"),
    "extra_int_keys": (lambda t: {"extra": {"a": {1: "x"}}}, TypeError,
                       r"extra\['a'\]: expected str keys"),
}


@pytest.mark.parametrize("case", list(BAD_SAVES))
def test_bad_arguments_are_refused_and_nothing_is_written(tmp_path, case):
    change, error, fragment = BAD_SAVES[case]
    (tmp_path / "f.txt").write_text("not a directory")
    params, state = fresh()
    kwargs = {"path": tmp_path / "c.npz", "net": NET, "params": params, "opt": OPTS["adamw"],
              "opt_state": state, **change(tmp_path)}
    if kwargs["opt_state"] == "float32_mu":
        kwargs["opt_state"] = _float32_mu(params, state)
    with pytest.raises(error, match=fragment):
        ck.save_checkpoint(kwargs.pop("path"), **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_donated_params_are_a_clear_error(tmp_path):
    opt = OPTS["sgd_momentum"]
    params, state, X, Y = trained("float64", opt, steps=1)
    jaxbp.train_step(NET, opt, params, state, X, Y)  # consumes params and state
    with pytest.raises(ValueError, match=r"params/0/W: cannot read the array .* donates"):
        ck.save_checkpoint(tmp_path / "c.npz", net=NET, params=params, opt=opt, opt_state=state)


def test_unwritable_directory(tmp_path, monkeypatch):
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        if os.access(directory, os.W_OK):  # root ignores permissions: fake the answer
            monkeypatch.setattr(ck.os, "access", lambda *args, **kwargs: False)
        with pytest.raises(PermissionError, match=r"directory .*ro is not writable: .*c\.npz"):
            save(directory / "c.npz")
    finally:
        monkeypatch.undo()
        directory.chmod(0o700)
    assert list(directory.iterdir()) == []


# --- compatibility -----------------------------------------------------------------------------
def test_check_compatible_names_both_architectures(tmp_path):
    c = ck.load_checkpoint(save(tmp_path / "c.npz"))
    ck.check_compatible(c, NET)
    ck.check_compatible(c, NET, OPTS["adamw"])
    ck.check_compatible(c, jaxbp.MLP((3, 5, 2), "tanh", "softmax", matmul_dtype="bfloat16"),
                        jaxbp.optim.adam(0.5))  # another compute policy and lr resume fine
    wider = jaxbp.MLP((3, 6, 2), hidden="tanh", output="softmax")
    with pytest.raises(ValueError, match=r"net: expected a checkpoint of MLP\(sizes=\(3, 6, 2\), "
                                         r".*got one of MLP\(sizes=\(3, 5, 2\), .*differ in sizes"):
        ck.check_compatible(c, wider)
    with pytest.raises(ValueError, match=r"hidden='relu'.*hidden='tanh'.*differ in hidden"):
        ck.check_compatible(c, jaxbp.MLP((3, 5, 2), hidden="relu", output="softmax"))
    with pytest.raises(ValueError, match=r"opt: expected a checkpoint whose optimizer state fits "
                                         r"SGD\(.*got the state of Adam\("):
        ck.check_compatible(c, NET, OPTS["sgd_momentum"])
    bare = ck.load_checkpoint(ck.save_checkpoint(tmp_path / "b.npz", net=NET, params=c.params))
    with pytest.raises(ValueError, match="got one without an optimizer"):
        ck.check_compatible(bare, NET, OPTS["adamw"])
    with pytest.raises(TypeError, match="ckpt: expected a Checkpoint"):
        ck.check_compatible(tmp_path / "c.npz", NET)
