"""Fuzz the core decoders with ``fuzz_inputs`` (seeded, a few seconds): every input either decodes to a
valid array / camera or raises the documented ValueError subclass with a one-line message naming the
problem; never another exception, never +-inf in an output (issue 10, item 9)."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fuzz_inputs import all_cases, camera_info_cases, compressed_cases, image_cases  # noqa: E402

from depth_ros.core.camera import CameraInfoError, PinholeCamera, camera_from_info  # noqa: E402
from depth_ros.core.cloud import backproject  # noqa: E402
from depth_ros.core.encodings import ImageEncodingError, decode_compressed, decode_image, image_to_rgb8  # noqa: E402

SEED = int(os.environ.get("DEPTH_ROS_FUZZ_SEED", "0"))


def _clear(exc):
    msg = str(exc)
    assert len(msg) >= 15 and "\n" not in msg, repr(msg)
    return msg


def _outcome(case, fn, errors):
    """Run ``fn``; returns ("ok", result) or ("error", message); anything else fails the test."""
    try:
        return "ok", fn()
    except errors as exc:
        return "error", _clear(exc)
    except Exception as exc:  # pragma: no cover - the point of the test
        pytest.fail(f"{case['label']}: {type(exc).__name__} escaped: {exc}")


def _check_expect(case, status, detail):
    if case["expect"] != "any":
        assert status == case["expect"], f"{case['label']}: expected {case['expect']}, got {status}: {detail}"


def check_image(case):
    args = (case["data"], case["height"], case["width"], case["encoding"], case["step"], bool(case["is_bigendian"]))
    status, raw = _outcome(case, lambda: decode_image(*args), ImageEncodingError)
    _check_expect(case, status, raw)
    if status == "ok":
        assert raw.shape[:2] == (case["height"], case["width"]) and raw.dtype.isnative
    status2, rgb = _outcome(case, lambda: image_to_rgb8(*args), ImageEncodingError)
    if status == "error":
        assert status2 == "error"
    if status2 == "ok":
        assert rgb.shape == (case["height"], case["width"], 3) and rgb.dtype == np.uint8
    return status


def check_compressed(case):
    status, out = _outcome(case, lambda: decode_compressed(case["data"], case["format"]), ImageEncodingError)
    _check_expect(case, status, out)
    if status == "ok":
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8 and out.size > 0
    return status


def check_camera_info(case):
    roi = case["roi"]
    roi_t = (roi["x_offset"], roi["y_offset"], roi["height"], roi["width"], roi["do_rectify"])
    status, cam = _outcome(case, lambda: camera_from_info(case["width"], case["height"], case["k"], case["p"],
                                                          case["binning_x"], case["binning_y"], roi_t),
                           CameraInfoError)
    _check_expect(case, status, cam)
    if status == "ok" and cam is not None:
        assert isinstance(cam, PinholeCamera) and cam.width > 0 and cam.height > 0
        assert all(math.isfinite(v) for v in (cam.fx, cam.fy, cam.cx, cam.cy)) and cam.fx > 0 and cam.fy > 0
        if cam.width * cam.height <= 20_000:   # the cloud from it never holds +-inf
            d = np.random.default_rng(0).uniform(0.1, 10.0, (cam.height, cam.width)).astype(np.float32)
            d.flat[::7] = np.inf
            d.flat[::11] = 3e38
            pts = backproject(d, cam)
            assert not np.isinf(pts).any(), case["label"]
    return status


CHECKS = {"image": check_image, "compressed": check_compressed, "camera_info": check_camera_info}


@pytest.mark.parametrize("gen, n_min", [(image_cases, 1000), (compressed_cases, 100), (camera_info_cases, 200)])
def test_every_generated_input_is_decoded_or_clearly_refused(gen, n_min):
    seen = {"ok": 0, "error": 0}
    for case in gen(SEED):
        seen[CHECKS[case["kind"]](case)] += 1
    assert sum(seen.values()) >= n_min and seen["ok"] > 0 and seen["error"] > 0, seen


def test_generator_is_deterministic_and_message_representable():
    a = [(c["kind"], c["label"], c.get("data"), c.get("k")) for c in all_cases(3, n_random=20)]
    b = [(c["kind"], c["label"], c.get("data"), c.get("k")) for c in all_cases(3, n_random=20)]
    assert repr(a) == repr(b)
    kinds = set()
    for c in all_cases(SEED, n_random=20):
        kinds.add(c["kind"])
        assert isinstance(c["frame_id"], str) and 0 <= c["stamp"][0] <= 2 ** 31 - 1 and 0 <= c["stamp"][1] < 10 ** 9
        if c["kind"] == "image":
            assert all(0 <= c[k] <= 2 ** 32 - 1 for k in ("height", "width", "step")) and c["is_bigendian"] in (0, 1)
            assert isinstance(c["data"], bytes) and len(c["data"]) < 4 << 20
        elif c["kind"] == "compressed":
            assert isinstance(c["format"], str) and isinstance(c["data"], bytes)
        else:
            assert len(c["k"]) == 9 and len(c["p"]) == 12 and len(c["r"]) == 9
            assert all(0 <= c[k] <= 2 ** 32 - 1 for k in ("width", "height", "binning_x", "binning_y"))
            assert all(0 <= c["roi"][k] <= 2 ** 32 - 1 for k in ("x_offset", "y_offset", "height", "width"))
    assert kinds == {"image", "compressed", "camera_info"}
