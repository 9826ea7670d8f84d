"""The benchmark contenders compute the same step, so the timings compare like with like."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from benchmarks import models as M

# float64 so that agreement is to rounding, not to float32's ~1e-6: 1e-10 relative.
RTOL = 1e-10


@pytest.mark.parametrize("name", ["seed", "small", "medium"])
def test_exact_flop_count(name):
    net = M.make_net(name)
    P = sum(W.size for W, _ in jaxbp.init(net, jax.random.key(0)))
    assert M.step_flops(net, 5) == 6 * P * 5 - 2 * net.sizes[0] * net.sizes[1] * 5


def test_autodiff_rival_is_the_same_step():
    net = jaxbp.MLP((6, 9, 4), hidden="relu", output="softmax")
    params = M.init_params(net, dtype="float64")
    _, _, X, Y = M.data(net, 32, dtype=np.float64)
    opt = jaxbp.optim.adam(1e-2)
    out = {}
    for kind, step in M.STEPS.items():
        p = M.copy_tree(params)
        out[kind] = step(net, opt, p, opt.init(p), jnp.asarray(X), jnp.asarray(Y))
    for kind in M.STEPS:  # the rivals, and jaxbp's own step without its CPU workarounds
        for a, b in zip(jax.tree.leaves(out["jaxbp"]), jax.tree.leaves(out[kind]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=1e-13,
                                       err_msg=kind)


def test_scan_loop_and_numpy_epochs_agree():
    net = jaxbp.MLP((5, 8, 3), hidden="relu", output="softmax")
    params = M.init_params(net, dtype="float64")
    _, _, X, Y = M.data(net, 64, dtype=np.float64)
    opt = jaxbp.optim.adam(1e-2)
    # One epoch of 4 batches each way; the scan returns every batch's cost, the loop the last.
    costs_scan = np.asarray(M.prepare_epoch("scan", net, opt, params, X, Y, 16).once())
    J_loop = float(M.prepare_epoch("loop", net, opt, params, X, Y, 16).once())
    np.testing.assert_allclose(costs_scan[-1], J_loop, rtol=RTOL)

    # NumPy: the same equations and the same Adam, against jaxbp's train_step, 2 epochs.
    np_model = M.NumpyMLP(net, params, lr=1e-2)
    p = M.copy_tree(params)
    state = opt.init(p)
    for _ in range(2):
        np_model.epoch(X, Y, 16)
        for i in range(4):
            cols = slice(16 * i, 16 * i + 16)
            p, state, _ = jaxbp.train_step(net, opt, p, state, X[:, cols], Y[:, cols])
    for (W, b), (Wn, bn) in zip(p, np_model.params, strict=True):
        np.testing.assert_allclose(np.asarray(W), Wn, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(b), bn, rtol=1e-9, atol=1e-12)


def test_torch_model_has_the_same_weights_and_outputs():
    torch = pytest.importorskip("torch")
    net = jaxbp.MLP((5, 8, 3), hidden="relu", output="softmax")
    params = M.init_params(net, dtype="float32")
    X_rows, _, X, _ = M.data(net, 16)
    _, cache = jaxbp.forward(net, params, X)
    logits = M.torch_model(net, params)(torch.from_numpy(X_rows)).detach().numpy()
    # float32 on both sides, sums of ≤ 8 products: 1e-5 relative.
    np.testing.assert_allclose(logits.T, np.asarray(cache.Z[-1]), rtol=1e-5, atol=1e-6)


def test_paired_ratio_compares_round_by_round():
    """Each round's ratio pairs times taken moments apart: a machine that slows down between
    rounds (here 1×, 3×, 2×) leaves the per-round ratio at 2, with quartiles 2–2."""
    from benchmarks.harness import fmt_ratio, paired_ratio

    stats = {"slow": {"samples_s": [2.0, 6.0, 4.0]}, "fast": {"samples_s": [1.0, 3.0, 2.0]}}
    assert paired_ratio(stats, "slow", "fast") == (2.0, 2.0, 2.0)
    assert fmt_ratio(stats, "slow", "fast") == "2.000× (2.00–2.00)"
    stats["fast"]["samples_s"] = [1.0, 2.0, 4.0]  # ratios 2, 3, 1: median 2, quartiles 1.5–2.5
    assert paired_ratio(stats, "slow", "fast") == (2.0, 1.5, 2.5)
    # calls doing different work (scikit-learn's call trains 3 epochs, jaxbp's one): per unit
    stats = {"three": {"samples_s": [6.0, 3.0], "units": 3}, "one": {"samples_s": [1.0, 0.5]}}
    assert paired_ratio(stats, "three", "one") == (2.0, 2.0, 2.0)


# --- GPU readiness: peaks, device naming, check_gpu's runner ---------------------------------
def _check_gpu():
    """scripts/check_gpu.py as a module (scripts/ is not a package)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "check_gpu.py"
    spec = importlib.util.spec_from_file_location("check_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peaks_match_the_exact_device_kind_only():
    from benchmarks import peaks

    sxm = peaks.lookup("NVIDIA H100 80GB HBM3")
    assert (sxm.fp32, sxm.tf32, sxm.bf16) == (67.0, 494.5, 989.5)
    assert sxm.of("tf32") == 494.5
    pcie = peaks.lookup("NVIDIA H100 PCIe")
    assert pcie.bf16 < sxm.bf16  # what the old substring match ("H100" in kind) got wrong
    for kind in ("NVIDIA H100", "H100", "nvidia h200", "NVIDIA H200 ", "cpu", "TPU v5 lite"):
        assert peaks.lookup(kind) is None, kind
    for kind, p in peaks.PEAKS.items():
        assert 0 < p.fp32 < p.tf32 < p.bf16, kind
        assert "datasheet" in p.source, kind


def test_mfu_is_skipped_and_recorded_on_cpu():
    from benchmarks import suites

    if jax.default_backend() != "cpu":
        pytest.skip("measures on a GPU")
    result = suites.mfu(quick=True)
    assert result["records"][0]["skipped"] and "skipped" in result["markdown"]


def _env(**over):
    env = {"backend": "gpu", "device_kind": "NVIDIA H200", "device_count": 1,
           "cpu_model": "AMD EPYC 9654", "cpu_threads": 16, "warning": None}
    return {**env, **over}


def test_reports_name_the_device_and_warn_of_a_cpu_fallback():
    from benchmarks import harness

    top = "\n".join(harness.report_header("t", _env())[:4])
    for fact in ("gpu", "NVIDIA H200 × 1", "AMD EPYC 9654", "16 threads"):
        assert fact in top
    hint = ["nvidia-smi on the PATH"]
    warning = harness.backend_warning("cpu", "", hint)
    assert "set JAX_PLATFORMS=cuda" in warning and "nvidia-smi" in warning
    assert harness.backend_warning("cpu", "cpu", hint) is None  # CPU asked for
    assert harness.backend_warning("gpu", "", hint) is None
    assert harness.backend_warning("cpu", "", []) is None  # no sign of a GPU
    header = harness.report_header("t", _env(backend="cpu", warning=warning))
    assert f"**{warning}**" in header[:6]
    env = harness.environment()
    assert {"backend", "device_kind", "device_count", "cpu_model", "jax_platforms",
            "warning"} <= set(env)


def test_devices_children_inherit_the_platform(monkeypatch, tmp_path):
    from benchmarks import suites

    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    env = suites._devices_env(2, False, tmp_path)
    assert env["JAX_PLATFORMS"] == "cpu"
    assert "--xla_force_host_platform_device_count=2" in env["XLA_FLAGS"]
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    env = suites._devices_env(2, True, tmp_path)
    assert (env["JAX_PLATFORMS"], env["CUDA_VISIBLE_DEVICES"]) == ("cuda", "3,5")
    assert "xla_force_host_platform_device_count" not in env.get("XLA_FLAGS", "")


def test_torch_follows_jax_backend():
    torch = pytest.importorskip("torch")
    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    assert M.torch_device() == ("cuda" if on_gpu else "cpu")


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_check_gpu_runner_budget_timeouts_and_records():
    cg = _check_gpu()
    clock = _Clock()
    written = []
    runner = cg.Runner(100 + cg.RESERVE_S, on_record=lambda r: written.append(dict(r)),
                       clock=clock)
    given = {}

    def work(name, seconds, result=None, error=None):
        def run(timeout):
            given[name] = timeout
            clock.t += seconds
            if error:
                raise error
            return result or {"summary": name}
        return run

    steps = [cg.Step("a", work("a", 30), need_s=10, cap_s=20),
             cg.Step("b", work("b", 5, error=cg.StepTimeout("killed", "tail")), need_s=10),
             cg.Step("c", work("c", 5, error=ValueError("boom")), need_s=10),
             cg.Step("d", work("d", 1, {"status": "failed"}), need_s=10),
             cg.Step("e", work("e", 1), need_s=80)]  # 59 s left: does not fit
    statuses = [runner.run(s)["status"] for s in steps]
    assert statuses == ["ok", "timeout", "failed", "failed", "skipped"]
    assert given == {"a": 20, "b": 70, "c": 65, "d": 60}  # capped, then what was left
    assert "e" not in given and "59 s of the budget left" in runner.records["e"]["reason"]
    assert runner.records["b"]["tail"] == "tail" and "boom" in runner.records["c"]["reason"]
    assert [len(w) for w in written] == [1, 2, 3, 4, 5]  # written after every step
    assert runner.failures() == ["b", "c", "d"]


def test_check_gpu_kills_a_hung_child_and_parses_pytest():
    import sys
    import time

    cg = _check_gpu()
    t0 = time.monotonic()
    with pytest.raises(cg.StepTimeout):
        cg.run_process([sys.executable, "-c", "import time; time.sleep(60)"], 0.5, None)
    assert time.monotonic() - t0 < 10
    assert cg.pytest_counts("x\n2 failed, 8 passed, 1 skipped in 3.21s\n") == {
        "failed": 2, "passed": 8, "skipped": 1}
    assert cg.pytest_counts("== 1 error, 3 passed in 0.5s ==") == {"error": 1, "passed": 3}
    assert cg.pytest_counts("no summary here") == {}


def test_check_gpu_results_name_the_device(tmp_path):
    import json

    cg = _check_gpu()
    ctx = cg.Context(cpu=True, out_root=tmp_path, stamp="T", env={}, device_env=_env())
    records = {"environment": {"status": "ok", "seconds": 1.0, "summary": "s"},
               "pytest": {"status": "skipped", "reason": "no time"}}
    cg.write_results(ctx, records, 60)
    json_path, md_path = cg.report_paths(ctx)
    assert json_path.parent.name == "gpu-nvidia-h200"
    payload = json.loads(json_path.read_text())
    assert next(iter(payload)) == "device" and "NVIDIA H200 × 1" in payload["device"]
    assert payload["steps"]["pytest"]["status"] == "skipped"
    assert "**Device:** gpu · NVIDIA H200 × 1" in md_path.read_text().splitlines()[2]
