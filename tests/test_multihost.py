"""Multi-host data parallelism: two processes on this machine, two simulated CPU devices each,
joined by `jaxbp.parallel.initialize` (jax.distributed, Gloo collectives on CPU), train as one
four-device mesh. Their result must equal a single-device run: float64, ≤ 1e-12 relative
(the same sums in a different grouping, a few ulps over 3 epochs)."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

import jaxbp

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 240  # seconds for a pair of processes: start-up, Gloo rendezvous, compiles

WORKER = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import jaxbp

address, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
assert jaxbp.parallel.initialize(address, 2, pid) == pid
rng = np.random.default_rng(0)
X = rng.normal(size=(101, 5))  # 101 rows, batch 30: batches of 30, 30, 30, 11; 30 = 4·7 + 2
y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
net = jaxbp.MLP((5, 7, 1), hidden="tanh")
kw = dict(opt=jaxbp.optim.adam(0.01), epochs=3, batch_size=30, validation_fraction=0.2,
          progress=False)
mesh = jaxbp.parallel.data_mesh()
sharded = jaxbp.fit(net, X, y, mesh=mesh, params=jaxbp.init(net, jax.random.key(1),
                                                             dtype="float64"), **kw)
single = jaxbp.fit(net, X, y, params=jaxbp.init(net, jax.random.key(1), dtype="float64"), **kw)
info = {"process_count": jax.process_count(), "devices": jax.device_count(),
        "local": jax.local_device_count(), "main": jaxbp.parallel.is_main_process(),
        "history": {k: sharded.history[k] for k in ("train_cost", "val_cost")},
        "single_history": {k: single.history[k] for k in ("train_cost", "val_cost")}}
arrays = {f"sharded_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(sharded.params))}
arrays |= {f"single_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(single.params))}
np.savez(f"{out}/process{pid}.npz", **arrays)
pathlib = __import__("pathlib")
pathlib.Path(f"{out}/process{pid}.json").write_text(json.dumps(info))
"""


def free_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def env():
    e = dict(os.environ)
    e["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    e["JAX_PLATFORMS"] = "cpu"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("JAX_ENABLE_X64", None)
    return e


def run_pair(commands, cwd):
    """Start both processes, wait for both; on failure show both outputs."""
    procs = [subprocess.Popen(c, cwd=cwd, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for c in commands]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            p.kill()
    for p in procs:
        assert p.returncode == 0, "\n\n".join(outs)
    return outs


def test_two_processes_train_as_one_mesh_and_equal_one_device(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    address = free_address()
    run_pair([[sys.executable, str(script), address, str(pid), str(tmp_path)] for pid in (0, 1)],
             cwd=tmp_path)
    for pid in (0, 1):
        info = json.loads((tmp_path / f"process{pid}.json").read_text())
        assert (info["process_count"], info["devices"], info["local"]) == (2, 4, 2)
        assert info["main"] == (pid == 0)
        for k in ("train_cost", "val_cost"):
            np.testing.assert_allclose(info["history"][k], info["single_history"][k],
                                       rtol=1e-12)
        arrays = np.load(tmp_path / f"process{pid}.npz")
        n = len(arrays.files) // 2
        for i in range(n):
            np.testing.assert_allclose(arrays[f"sharded_{i}"], arrays[f"single_{i}"],
                                       rtol=1e-12, atol=1e-15)
    a, b = np.load(tmp_path / "process0.npz"), np.load(tmp_path / "process1.npz")
    for f in a.files:  # both processes hold the same replicated parameters
        np.testing.assert_array_equal(a[f], b[f])


def test_cli_two_processes(tmp_path):
    address = free_address()
    flags = ["--dataset=moons", "--hidden=8", "--epochs=4", "--batch_size=50", "--seed=3",
             "--dtype=float64", "--quiet", "--plot=", "--noearly_stopping"]
    outs = run_pair([[sys.executable, "-m", "jaxbp", "train", *flags, "--num_processes=2",
                      f"--process_id={pid}", f"--coordinator_address={address}",
                      f"--checkpoint_dir={tmp_path / 'ckpt'}"] for pid in (0, 1)],
                    cwd=tmp_path)
    assert "data parallel over 4 devices in 2 processes" in outs[0]
    assert "test accuracy" in outs[0] and "test accuracy" not in outs[1]
    c = jaxbp.load_checkpoint(tmp_path / "ckpt" / "checkpoint.npz")
    assert c.epoch == 4
    single = subprocess.run([sys.executable, "-m", "jaxbp", "train", *flags], cwd=tmp_path,
                            env=env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert single.returncode == 0, single.stderr
    line = [x for x in outs[0].splitlines() if x.startswith("test accuracy")]
    assert line == [x for x in single.stdout.splitlines() if x.startswith("test accuracy")]


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(coordinator_address="localhost", num_processes=2, process_id=0), "host:port"),
    (dict(coordinator_address="localhost:1", num_processes=0, process_id=0), "num_processes"),
    (dict(coordinator_address="localhost:1", num_processes=2, process_id=2), "process_id"),
    (dict(coordinator_address=":1", num_processes=2, process_id=0), "host:port"),
    (dict(coordinator_address="[::1]:x", num_processes=2, process_id=0), "host:port"),
    (dict(coordinator_address="[::1]:1", num_processes=np.int64(0), process_id=0),
     "num_processes"),
    (dict(coordinator_address="[::1]:1", num_processes=2, process_id=True), "process_id"),
])
def test_initialize_checks_its_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        jaxbp.parallel.initialize(**kwargs)


@pytest.mark.parametrize("make", [jaxbp.parallel.data_mesh, jaxbp.parallel.model_mesh])
def test_mesh_wants_devices_not_a_count(make):
    with pytest.raises(ValueError, match=r"devices: .*jax.devices\(\)\[:3\]"):
        make(3)
    with pytest.raises(ValueError, match=r"devices: .*empty"):
        make([])


@pytest.mark.parametrize("flags, fragment", [
    (["--num_processes=2"], "--coordinator_address"),
    (["--num_processes=2", "--coordinator_address=127.0.0.1:1", "--process_id=2"],
     "--process_id"),
    (["--num_processes=2", "--coordinator_address=127.0.0.1:1", "--devices=2"], "--devices"),
])
def test_cli_multihost_flag_errors_are_one_line(flags, fragment):
    r = subprocess.run([sys.executable, "-m", "jaxbp", "train", *flags], env=env(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0 and fragment in r.stderr and "Traceback" not in r.stderr
