"""Checkpoints round-trip exactly, are written atomically, and refuse pickles and bad files."""

import io
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp import checkpoint as ck

NET = jaxbp.MLP((3, 5, 2), hidden="tanh", output="softmax")


def trained(dtype, opt):
    params = jaxbp.init(NET, jax.random.key(0), dtype=dtype)
    X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8)), dtype)
    Y = jnp.eye(2, dtype=dtype)[:, jnp.arange(8) % 2]
    state = opt.init(params)
    for _ in range(3):
        params, state, _ = jaxbp.train_step(NET, opt, params, state, X, Y)
    return params, state, X, Y


def same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", [jaxbp.optim.adam(1e-2), jaxbp.optim.sgd(0.1, momentum=0.9),
                                 jaxbp.optim.sgd(0.1)])
@pytest.mark.parametrize("key", [jax.random.key(7), jax.random.PRNGKey(7)])
def test_round_trip_and_resume(tmp_path, dtype, opt, key):
    params, state, X, Y = trained(dtype, opt)
    history = {"train_cost": [0.7, 0.5], "epoch": [0, 1]}
    path = ck.save_checkpoint(tmp_path / "c.npz", net=NET, params=params, opt=opt,
                              opt_state=state, epoch=2, key=key, history=history,
                              extra={"dataset": "x", "mean": [0.5, 1.0]})
    c = ck.load_checkpoint(path)
    assert c.net == NET and c.opt == opt and c.epoch == 2
    assert c.history == history and c.extra == {"dataset": "x", "mean": [0.5, 1.0]}
    same(c.params, params)
    same(c.opt_state, state)
    assert np.array_equal(jax.random.key_data(c.key) if c.key.dtype != jnp.uint32 else c.key,
                          jax.random.key_data(key) if key.dtype != jnp.uint32 else key)
    assert (c.key.dtype == jnp.uint32) == (key.dtype == jnp.uint32)
    # Training continues identically from the saved and from the loaded state.
    copy = lambda t: jax.tree.map(jnp.copy, t)  # noqa: E731
    a = jaxbp.train_step(NET, opt, copy(params), copy(state), X, Y)
    b = jaxbp.train_step(NET, opt, c.params, c.opt_state, X, Y)
    same(a, b)


def test_atomic_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    opt = jaxbp.optim.adam()
    params, state, _, _ = trained("float64", opt)
    path = ck.save_checkpoint(tmp_path / "c.npz", net=NET, params=params, opt=opt,
                              opt_state=state, epoch=1)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ck.os, "fsync", dies)  # the write is interrupted before the rename
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, net=NET, params=params, opt=opt, opt_state=state, epoch=2)
    monkeypatch.undo()
    assert ck.load_checkpoint(path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temporary left


def test_bad_files_are_clear_errors(tmp_path):
    opt = jaxbp.optim.sgd(0.1)
    params, state, _, _ = trained("float64", opt)
    good = ck.save_checkpoint(tmp_path / "good.npz", net=NET, params=params, opt=opt,
                              opt_state=state)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "foreign.npz", a=np.ones(3))
    np.savez(tmp_path / "pickled.npz", __header__=np.array([{"a": 1}], dtype=object), a=1)
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        ck.load_checkpoint(tmp_path / "missing.npz")
    for name, fragment in [("trunc", "truncated"), ("text", "not an .npz"),
                           ("foreign", "not a jaxbp checkpoint"), ("pickled", "pickled")]:
        with pytest.raises(ValueError, match=fragment) as info:
            ck.load_checkpoint(tmp_path / f"{name}.npz")
        assert f"{name}.npz" in str(info.value)
    # A manifest that disagrees with the arrays (e.g. an array swapped in by hand).
    buf = io.BytesIO(raw)
    with zipfile.ZipFile(buf) as z:
        members = {n: z.read(n) for n in z.namelist()}
    other = io.BytesIO()
    np.save(other, np.zeros((7, 7)))
    members["params/0/W.npy"] = other.getvalue()
    with zipfile.ZipFile(tmp_path / "swapped.npz", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ValueError, match="header says"):
        ck.load_checkpoint(tmp_path / "swapped.npz")


def test_bad_arguments_and_architecture_mismatch(tmp_path):
    params, state, _, _ = trained("float64", jaxbp.optim.sgd(0.1))
    with pytest.raises(ValueError, match="does not exist"):
        ck.save_checkpoint(tmp_path / "no" / "c.npz", net=NET, params=params)
    with pytest.raises(ValueError, match="directory"):
        ck.save_checkpoint(tmp_path, net=NET, params=params)
    with pytest.raises(ValueError, match="opt and opt_state together"):
        ck.save_checkpoint(tmp_path / "c.npz", net=NET, params=params, opt_state=state)
    path = ck.save_checkpoint(tmp_path / "c.npz", net=NET, params=params)
    with pytest.raises(ValueError, match=r"expected a network .*'sizes': \[3, 6, 2\]"):
        ck.check_compatible(ck.load_checkpoint(path), jaxbp.MLP((3, 6, 2), hidden="tanh",
                                                                output="softmax"))
