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
    for a, b in zip(jax.tree.leaves(out["jaxbp"]), jax.tree.leaves(out["autodiff"]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=1e-13)


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
