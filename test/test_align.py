"""depth_ros.core.align: robust scale/shift fit of an affine-invariant prediction to a metric reference."""
import math
import subprocess
import sys

import numpy as np
import pytest

from depth_ros.core.align import (
    AlignResult,
    ScaleShiftSmoother,
    apply_scale_shift,
    fit_scale_shift,
    valid_reference_mask,
)

S, T = 7.5, 0.8  # metres per unit of prediction, metres


def _scene(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    pred = 0.1 + 0.8 * (yy / h) * 0.6 + 0.3 * (xx / w) + 0.05 * rng.random((h, w))  # affine prediction
    return pred.astype(np.float32), rng


@pytest.mark.parametrize("method", ["huber", "lstsq"])
def test_exact_recovery_depth_space(method):
    pred, _ = _scene()
    ref = (S * pred.astype(np.float64) + T).astype(np.float32)
    res = fit_scale_shift(pred, ref, method=method)
    assert res.ok and res.cause == "" and res.reason == ""
    assert res.scale == pytest.approx(S, rel=1e-5) and res.shift == pytest.approx(T, abs=1e-4)
    assert res.n_valid == res.n_used == pred.size and res.inliers >= 0.99 * res.n_used
    sub = fit_scale_shift(pred, ref, method=method, max_samples=5000)   # subsampled: same answer
    assert sub.n_valid == pred.size and sub.n_used == 5000 and sub.scale == pytest.approx(S, rel=1e-5)
    np.testing.assert_allclose(res.apply(pred), ref, rtol=1e-5)


def test_exact_recovery_disparity_space():
    pred, _ = _scene()  # here: an affine *disparity* prediction
    s, t = 0.4, 0.05    # 1/m
    ref = 1.0 / (s * pred.astype(np.float64) + t)
    res = fit_scale_shift(pred, ref, space="disparity")
    assert res.ok and res.space == "disparity"
    assert res.scale == pytest.approx(s, rel=1e-5) and res.shift == pytest.approx(t, rel=1e-4)
    np.testing.assert_allclose(res.apply(pred), ref, rtol=1e-4)


@pytest.mark.parametrize("kind", ["uniform", "far", "near"])
def test_thirty_percent_outliers_within_one_percent(kind):
    pred, rng = _scene(seed=3)
    ref = S * pred.astype(np.float64) + T
    ref *= 1 + 0.002 * rng.standard_normal(ref.shape)            # small sensor noise
    bad = rng.random(ref.shape) < 0.30
    if kind == "uniform":
        ref[bad] = rng.uniform(0.2, 40.0, bad.sum())
    elif kind == "far":                                             # one-sided: all outliers behind
        ref[bad] *= rng.uniform(1.5, 4.0, bad.sum())
    else:                                                           # one-sided: all outliers in front
        ref[bad] *= rng.uniform(0.1, 0.6, bad.sum())
    res = fit_scale_shift(pred, ref)
    assert res.ok
    assert abs(res.scale / S - 1) < 0.01, res
    assert abs(res.shift - T) < 0.01 * (S + T), res
    # the non-robust fit is tilted by the same outliers (so the check above has teeth)
    ls = fit_scale_shift(pred, ref, method="lstsq")
    assert abs(ls.scale / S - 1) > 0.01 or abs(ls.shift - T) > 0.01 * (S + T)


def test_sparse_reference_with_nans():
    pred, rng = _scene()
    ref = np.full(pred.shape, np.nan, np.float32)
    pts = rng.choice(pred.size, 300, replace=False)                # a few LiDAR returns
    ref.reshape(-1)[pts] = S * pred.reshape(-1)[pts] + T
    ref[0, :] = 0.0                                                 # "no return" pixels
    res = fit_scale_shift(pred, ref)
    assert res.ok and res.n_valid == np.isfinite(ref[1:]).sum()
    assert res.scale == pytest.approx(S, rel=1e-4)


def test_range_and_mask_select_pixels():
    pred, _ = _scene()
    ref = S * pred.astype(np.float64) + T
    ref[:, :80] = 1000.0                                            # out of range: must be ignored
    res = fit_scale_shift(pred, ref, max_depth=100.0, method="lstsq")
    assert res.ok and res.n_valid == pred.size // 2 and res.scale == pytest.approx(S, rel=1e-5)
    mask = np.zeros(pred.shape, bool)
    mask[:, 80:] = True
    res2 = fit_scale_shift(pred, ref, mask=mask, method="lstsq")
    assert res2.ok and res2.scale == pytest.approx(S, rel=1e-5)
    assert valid_reference_mask(pred, ref, max_depth=100.0).sum() == pred.size // 2


def test_rejections():
    pred, _ = _scene()
    ref = np.full(pred.shape, np.nan)
    ref[5, :10] = 3.0
    r = fit_scale_shift(pred, ref)
    assert not r.ok and r.cause == "too_few_points" and "10 valid reference pixels" in r.reason
    assert math.isnan(r.scale)
    with pytest.raises(ValueError, match="rejected alignment"):
        r.apply(pred)
    # the reference decreases where the prediction increases: scale <= 0
    r = fit_scale_shift(pred, 20.0 - S * pred.astype(np.float64))
    assert not r.ok and r.cause == "nonpositive_scale" and r.scale < 0 and "scale" in r.reason
    # constant prediction: scale not identifiable
    r = fit_scale_shift(np.full(pred.shape, 0.5, np.float32), S * pred + T)
    assert not r.ok and r.cause == "degenerate"
    # all-NaN prediction
    r = fit_scale_shift(np.full(pred.shape, np.nan, np.float32), S * pred + T)
    assert not r.ok and r.cause == "too_few_points"


def test_bad_arguments():
    pred, _ = _scene()
    with pytest.raises(ValueError, match="same size"):
        fit_scale_shift(pred, pred[:-1])
    with pytest.raises(ValueError, match="space"):
        fit_scale_shift(pred, pred, space="log")
    with pytest.raises(ValueError, match="method"):
        fit_scale_shift(pred, pred, method="ransac9")
    with pytest.raises(ValueError, match="min_depth"):
        fit_scale_shift(pred, pred, min_depth=0.0)
    with pytest.raises(ValueError, match="mask"):
        fit_scale_shift(pred, pred, mask=np.ones((3, 3), bool))


def test_deterministic_for_a_seed():
    pred, rng = _scene()
    ref = S * pred + T + rng.normal(0, 0.3, pred.shape)
    a, b = fit_scale_shift(pred, ref, seed=5), fit_scale_shift(pred, ref, seed=5)
    assert a == b


def test_apply_marks_nonpositive_invalid():
    pred = np.array([[0.0, 0.5, 1.0]], np.float32)
    d = apply_scale_shift(pred, 2.0, -0.5)
    assert np.isnan(d[0, 0]) and d[0, 1] == pytest.approx(0.5) and d[0, 2] == pytest.approx(1.5)
    assert d.dtype == np.float32
    d = apply_scale_shift(pred, 1.0, 0.0, "disparity")
    assert np.isnan(d[0, 0]) and d[0, 2] == pytest.approx(1.0)


def test_smoother_ema_and_median():
    ema = ScaleShiftSmoother("ema", alpha=0.5)
    assert ema.value is None
    assert ema.update(2.0, 1.0) == pytest.approx((2.0, 1.0))
    s, t = ema.update(8.0, 3.0)
    assert s == pytest.approx(4.0) and t == pytest.approx(2.0)        # geometric mean of 2 and 8
    med = ScaleShiftSmoother("median", window=3)
    for v in (1.0, 100.0, 2.0):
        out = med.update(v, v)
    assert out == pytest.approx((2.0, 2.0))                            # the spike is gone
    assert med.update(3.0, 3.0) == pytest.approx((3.0, 3.0))           # window: 100, 2, 3
    none = ScaleShiftSmoother("none")
    none.update(2.0, 1.0)
    assert none.update(5.0, 0.0) == pytest.approx((5.0, 0.0))
    med.reset()
    assert med.value is None
    rej = AlignResult(False, float("nan"), float("nan"), cause="too_few_points", reason="x")
    assert ema.smooth(rej) is rej
    acc = ema.smooth(AlignResult(True, 4.0, 2.0))
    assert acc.ok and acc.scale == pytest.approx(4.0)


def test_smoother_rejects_bad_input():
    with pytest.raises(ValueError, match="mode"):
        ScaleShiftSmoother("kalman")
    with pytest.raises(ValueError, match="alpha"):
        ScaleShiftSmoother("ema", alpha=0.0)
    with pytest.raises(ValueError, match="scale"):
        ScaleShiftSmoother().update(-1.0, 0.0)


def test_align_is_numpy_only():
    code = "import sys, depth_ros.core.align; assert 'torch' not in sys.modules; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
