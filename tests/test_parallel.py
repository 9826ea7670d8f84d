"""Data parallelism on 4 simulated CPU devices equals one device, for even and uneven batches;
so does model parallelism (W^l split by rows).

JAX fixes its device count when it starts, so the check runs in a fresh interpreter with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (the test session itself has one device).
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r"""
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import jax.numpy as jnp
    import numpy as np
    import jaxbp
    from jaxbp import parallel

    assert jax.device_count() == 4, jax.devices()
    mesh = parallel.data_mesh()
    net = jaxbp.MLP((5, 16, 8, 3), hidden="tanh", output="softmax")
    rng = np.random.default_rng(0)
    copy = lambda t: jax.tree.map(jnp.copy, t)
    for m, weighted in ((64, False), (10, False), (7, True), (3, False)):  # 10, 7, 3: uneven
        X = jnp.asarray(rng.normal(size=(5, m)))
        Y = jnp.eye(3)[:, rng.integers(0, 3, m)]
        w = jnp.asarray(rng.random(m)) if weighted else None
        for opt in (jaxbp.optim.sgd(0.1, momentum=0.9), jaxbp.optim.adam(1e-2)):
            params = jaxbp.init(net, jax.random.key(m))
            p1, s1 = copy(params), opt.init(params)
            p4, s4 = copy(params), opt.init(params)
            for _ in range(3):
                p1, s1, J1 = jaxbp.train_step(net, opt, p1, s1, X, Y, sample_weight=w)
                p4, s4, J4 = parallel.train_step(net, opt, p4, s4, X, Y, mesh, sample_weight=w)
            # float64; the sharded sums add the same terms in another order: 1e-12 relative.
            np.testing.assert_allclose(float(J4), float(J1), rtol=1e-12)
            for a, b in zip(jax.tree.leaves((p4, s4)), jax.tree.leaves((p1, s1)), strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
            assert len(p4[0][0].sharding.device_set) == 4  # replicated over the mesh

    # fit: each batch's columns split over the 4 devices; batch 8 divides, batch 6 and the
    # ragged last batch are padded with zero-weight columns. Equal to one device, 3 epochs.
    # The compiled epoch really splits the columns: fit's own call of _epoch (caught by a spy)
    # is compiled again, and in the partitioned program each device runs, the dots that make
    # Z^1, Z^2 (forward) and Δ^1, Δ^2 (backward) have b'/4 columns (b' = the batch with its
    # padding: 8 -> 2, 6 + 2 -> 2), never b'. Were the whole batch on every device (the
    # sharding constraint in _epoch dropped, or fit not passing the mesh on), they would be
    # (16, b') and (8, b').
    import importlib, re
    fit_module = importlib.import_module("jaxbp.fit")  # jaxbp.fit is also the function
    epoch_fn, calls = fit_module._epoch, []
    def spy(*args):
        calls.append(args)
        return epoch_fn(*args)
    Xr = rng.normal(size=(50, 5))
    yr = rng.integers(0, 3, 50)
    for batch in (8, 6):
        kw = dict(opt=jaxbp.optim.adam(1e-2), epochs=3, batch_size=batch, key=1, alpha=1e-3,
                  validation_fraction=0.2, progress=False)
        one = jaxbp.fit(net, Xr, yr, params=jaxbp.init(net, jax.random.key(2)), **kw)
        fit_module._epoch, calls[:] = spy, []
        try:
            four = jaxbp.fit(net, Xr, yr, params=jaxbp.init(net, jax.random.key(2)), mesh=mesh,
                             **kw)
        finally:
            fit_module._epoch = epoch_fn
        hlo = epoch_fn.lower(*calls[0]).compile().as_text()
        dots = set(re.findall(r"= f64\[(\d+),(\d+)\][^ =]* dot\(", hlo))
        padded = batch + (-batch) % 4
        assert {("16", str(padded // 4)), ("8", str(padded // 4))} <= dots, (batch, dots)
        assert not {("16", str(padded)), ("8", str(padded))} & dots, (batch, dots)
        np.testing.assert_allclose(four.history["train_cost"], one.history["train_cost"],
                                   rtol=1e-12)
        np.testing.assert_allclose(four.history["val_cost"], one.history["val_cost"], rtol=1e-12)
        for a, b in zip(jax.tree.leaves(four.params), jax.tree.leaves(one.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
        assert len(four.params[0][0].sharding.device_set) == 4

    # A checkpoint saved from the sharded run loads on one device, and vice versa.
    import tempfile, pathlib
    from jaxbp import checkpoint as ck
    with tempfile.TemporaryDirectory() as d:
        path = ck.save_checkpoint(pathlib.Path(d) / "c.npz", net=net, params=four.params,
                                  opt=kw["opt"], opt_state=four.opt_state, epoch=3, key=four.key)
        c = ck.load_checkpoint(path)
        for a, b in zip(jax.tree.leaves((c.params, c.opt_state)),
                        jax.tree.leaves((four.params, four.opt_state)), strict=True):
            assert np.array_equal(np.asarray(a), np.asarray(b))
        assert len(c.params[0][0].sharding.device_set) == 1
        resumed = jaxbp.fit(net, Xr, yr, params=c.params, opt_state=c.opt_state, start_epoch=3,
                            history=four.history, mesh=mesh, **{**kw, "epochs": 1})
    # ...and continues exactly as the uninterrupted sharded run: bit for bit (README: a resumed
    # run repeats the uninterrupted one on one backend, same jax version and XLA flags).
    whole = jaxbp.fit(net, Xr, yr, params=jaxbp.init(net, jax.random.key(2)), mesh=mesh,
                      **{**kw, "epochs": 4})
    for k in ("epoch", "train_cost", "val_cost", "val_score"):
        assert resumed.history[k] == whole.history[k], (k, resumed.history[k], whole.history[k])
    for a, b in zip(jax.tree.leaves((resumed.params, resumed.opt_state)),
                    jax.tree.leaves((whole.params, whole.opt_state)), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))

    # Model parallelism: W^l, b^l split by rows over a "model" mesh (30 and 3 rows do not
    # divide by 4: replicated), stepped by the unchanged jaxbp.train_step. Equal to one device.
    wide = jaxbp.MLP((5, 64, 30, 3), hidden="tanh", output="softmax")
    model = parallel.model_mesh()
    X = jnp.asarray(rng.normal(size=(5, 20)))
    Y = jnp.eye(3)[:, rng.integers(0, 3, 20)]
    for opt in (jaxbp.optim.sgd(0.1, momentum=0.9), jaxbp.optim.adam(1e-2)):
        params = jaxbp.init(wide, jax.random.key(0))
        p1 = copy(params)
        s1 = opt.init(p1)
        p4 = parallel.shard_rows(params, model)
        s4 = opt.init(p4)
        assert p4[0][0].addressable_shards[0].data.shape == (16, 5)  # 64 rows / 4 devices
        assert p4[1][0].sharding.is_fully_replicated
        for _ in range(3):
            p1, s1, J1 = jaxbp.train_step(wide, opt, p1, s1, X, Y)
            p4, s4, J4 = jaxbp.train_step(wide, opt, p4, s4, X, Y)
        np.testing.assert_allclose(float(J4), float(J1), rtol=1e-12)
        for a, b in zip(jax.tree.leaves((p4, s4)), jax.tree.leaves((p1, s1)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
        assert p4[0][0].addressable_shards[0].data.shape == (16, 5)  # still split by rows
    print("OK")
""")


def test_four_devices_equal_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]
