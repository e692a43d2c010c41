"""depth_ros.core.camera: CameraInfo semantics (image_geometry), scaling, FOV."""

import math

import numpy as np
import pytest

from depth_ros.core.camera import (
    MAX_FOV_DEG,
    MIN_FOV_DEG,
    CameraInfoError,
    PinholeCamera,
    camera_from_info,
    focal_from_hfov,
)

K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
P = [480.0, 0.0, 310.0, 0.0, 0.0, 490.0, 230.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_matrices():
    cam = PinholeCamera(640, 480, 500.0, 510.0, 319.5, 239.5)
    np.testing.assert_array_equal(cam.K, [[500, 0, 319.5], [0, 510, 239.5], [0, 0, 1]])
    np.testing.assert_array_equal(cam.P, [[500, 0, 319.5, 0], [0, 510, 239.5, 0], [0, 0, 1, 0]])
    assert cam.size == (640, 480)
    assert hash(cam) == hash(PinholeCamera(640, 480, 500.0, 510.0, 319.5, 239.5))


def test_uses_p_not_k():
    cam = camera_from_info(640, 480, K, P)
    assert cam == PinholeCamera(640, 480, 480.0, 490.0, 310.0, 230.0)


def test_falls_back_to_k_when_p_zero():
    cam = camera_from_info(640, 480, K, [0.0] * 12)
    assert cam == PinholeCamera(640, 480, 500.0, 510.0, 320.0, 240.0)


def test_uncalibrated_is_none():
    assert camera_from_info(640, 480, [0.0] * 9, [0.0] * 12) is None
    # CameraInfo.msg: K[0] == 0 -> uncalibrated (also with the homogeneous 1s set)
    k = [0.0] * 9
    k[8] = 1.0
    p = [0.0] * 12
    p[10] = 1.0
    assert camera_from_info(640, 480, k, p) is None
    assert camera_from_info(0, 0, np.zeros(9), np.zeros(12)) is None
    # K[0] == 0 alone decides (README / issue: "K[0] == 0 means uncalibrated"): a half-filled
    # message is uncalibrated (-> estimated intrinsics), not a malformed one (-> skipped frames)
    assert camera_from_info(640, 480, [0.0, 0, 320, 0, 510, 240, 0, 0, 1], [0.0] * 12) is None
    assert camera_from_info(640, 480, [0.0] * 9, P) is None


@pytest.mark.parametrize("k, p, match", [
    ([math.nan] + K[1:], [0.0] * 12, r"K fx is not finite"),
    (K, [math.nan] + P[1:], r"P fx is not finite"),
    (K, P[:2] + [math.inf] + P[3:], r"P cx is not finite"),
    ([-500.0] + K[1:], [0.0] * 12, r"K fx must be > 0, got -500"),
    (K, P[:5] + [-1.0] + P[6:], r"P fy must be > 0"),
    (K[:4] + [0.0] + K[5:], [0.0] * 12, r"K fy must be > 0, got 0"),
    (K, [0.0, 0, 310, 0, 0, 490, 230, 0, 0, 0, 1, 0], r"P fx must be > 0, got 0"),
    (K[:8], P, r"K must have 9 elements, got 8"),
    (K, P + [0.0], r"P must have 12 elements, got 13"),
    ("abc", P, r"K must be 9 numbers"),
])
def test_bad_calibration(k, p, match):
    with pytest.raises(CameraInfoError, match=match):
        camera_from_info(640, 480, k, p)


def test_zero_size_with_calibration():
    with pytest.raises(CameraInfoError, match="zero size"):
        camera_from_info(0, 480, K, P)


def test_roi():
    # ROI x=100 y=50, 300 wide, 200 high: principal point moves, size = ROI
    cam = camera_from_info(640, 480, K, P, roi=(100, 50, 200, 300, False))
    assert cam == PinholeCamera(300, 200, 480.0, 490.0, 210.0, 180.0)
    # all-zero ROI == full image
    assert camera_from_info(640, 480, K, P, roi=(0, 0, 0, 0, False)) == camera_from_info(640, 480, K, P)
    # offset with zero size extends to the border
    assert camera_from_info(640, 480, K, P, roi=(40, 30, 0, 0, False)).size == (600, 450)
    with pytest.raises(CameraInfoError, match="outside the 640x480 image"):
        camera_from_info(640, 480, K, P, roi=(400, 0, 100, 300, False))


def test_binning_and_roi():
    # binning divides fx, cx by binning_x and fy, cy by binning_y; 0 == 1
    cam = camera_from_info(640, 480, K, P, binning_x=2, binning_y=4)
    assert cam == PinholeCamera(320, 120, 240.0, 122.5, 155.0, 57.5)
    assert camera_from_info(640, 480, K, P, binning_x=1, binning_y=0) == camera_from_info(640, 480, K, P)
    # ROI first (full-resolution coordinates), then binning
    cam = camera_from_info(640, 480, K, P, binning_x=2, binning_y=2, roi=(100, 50, 200, 300, True))
    assert cam == PinholeCamera(150, 100, 240.0, 245.0, 105.0, 90.0)
    # odd ROI sizes: integer division like image_geometry reducedResolution
    assert camera_from_info(641, 481, K, P, binning_x=2, binning_y=2).size == (320, 240)


def test_scaled_resize_convention():
    cam = PinholeCamera(640, 480, 500.0, 510.0, 319.5, 239.5)
    assert cam.scaled(320, 240) == PinholeCamera(320, 240, 250.0, 255.0, 159.75, 119.75)
    assert cam.scaled(1280, 240) == PinholeCamera(1280, 240, 1000.0, 255.0, 639.0, 119.75)
    assert cam.scaled(640, 480) is cam
    with pytest.raises(CameraInfoError):
        cam.scaled(0, 10)


def test_from_hfov_and_focal():
    cam = PinholeCamera.from_hfov(640, 480, 90.0)
    assert cam.fx == pytest.approx(320.0) and cam.fy == pytest.approx(320.0)
    assert (cam.cx, cam.cy) == (319.5, 239.5)  # (W-1)/2, (H-1)/2
    assert cam.hfov_deg == pytest.approx(90.0)
    assert cam.vfov_deg == pytest.approx(2 * math.degrees(math.atan(240 / 320)))
    cam = PinholeCamera.from_hfov(1920, 1080, 60.0, cx=900.0)
    assert cam.fx == pytest.approx(960.0 / math.tan(math.radians(30.0)))
    assert cam.cx == 900.0 and cam.cy == 539.5
    assert cam.hfov_deg == pytest.approx(60.0)
    f = PinholeCamera.from_focal(100, 50, 80.0, cy=20.0)
    assert f == PinholeCamera(100, 50, 80.0, 80.0, 49.5, 20.0)
    with pytest.raises(CameraInfoError):
        PinholeCamera.from_hfov(640, 480, 180.0)
    with pytest.raises(CameraInfoError):
        PinholeCamera.from_focal(640, 480, -3.0)


@pytest.mark.parametrize("kw, match", [
    (dict(fx=math.nan), "camera fx is not finite"),
    (dict(fy=-1.0), "camera fy must be > 0, got -1"),
    (dict(cx=math.inf), "camera cx is not finite"),
    (dict(fx=1e-300), r"camera fx=1e-300 gives a horizontal field of view of 180 deg over 64 px"),
    (dict(fy=1e6), r"camera fy=1e\+06 gives a vertical field of view of 0.00275\d* deg over 48 px"),
    (dict(cx=-65.0), r"camera cx=-65 lies far outside the 64 px image \(allowed -64..128\)"),
    (dict(cy=96.5), r"camera cy=96.5 lies far outside the 48 px image"),
    (dict(width=0), "positive"),
])
def test_validate(kw, match):
    base = dict(width=64, height=48, fx=50.0, fy=50.0, cx=31.5, cy=23.5)
    base.update(kw)
    with pytest.raises(CameraInfoError, match=match):
        PinholeCamera(**base).validate()
    assert PinholeCamera(64, 48, 50.0, 50.0, 31.5, 23.5).validate().fx == 50.0


# ------------------------------------------------ physically meaningful intrinsics (issue 10, defect 6)

def _k(fx, fy, cx, cy):
    return [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("fx, fy, cx, cy, match", [
    (1e-300, 510.0, 320.0, 240.0, r"CameraInfo K fx=1e-300 gives a horizontal field of view of 180 deg over 640 px; "
                                  r"expected 0.1..179.9 deg"),
    (1e-10, 510.0, 320.0, 240.0, r"K fx=1e-10 gives a horizontal field of view of 180 deg"),
    (500.0, 1e300, 320.0, 240.0, r"K fy=1e\+300 gives a vertical field of view of [0-9.e-]+ deg over 480 px"),
    (5e6, 510.0, 320.0, 240.0, r"K fx=5e\+06 gives a horizontal field of view of 0.0073\d* deg"),
    (500.0, 510.0, 1e12, 240.0, r"K cx=1e\+12 lies far outside the 640 px image \(allowed -640..1280\)"),
    (500.0, 510.0, 320.0, -481.0, r"K cy=-481 lies far outside the 480 px image"),
    (math.inf, 510.0, 320.0, 240.0, r"K fx is not finite"),
])
def test_absurd_intrinsics_are_refused(fx, fy, cx, cy, match):
    with pytest.raises(CameraInfoError, match=match) as err:
        camera_from_info(640, 480, _k(fx, fy, cx, cy), [0.0] * 12)
    assert "\n" not in str(err.value)
    # the same numbers in P (K valid) are refused naming P
    p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    with pytest.raises(CameraInfoError, match=match.replace("K ", "P ")):
        camera_from_info(640, 480, K, p)


@pytest.mark.parametrize("hfov", [MIN_FOV_DEG, 0.5, 30.0, 90.0, 150.0, 179.0, MAX_FOV_DEG])
def test_fov_bounds_are_inclusive_and_wide(hfov):
    f = focal_from_hfov(640, hfov) * (1 - 1e-12 if hfov == MIN_FOV_DEG else 1 + 1e-12 if hfov == MAX_FOV_DEG else 1)
    cam = camera_from_info(640, 640, _k(f, f, 319.5, 319.5), [0.0] * 12)
    assert cam.hfov_deg == pytest.approx(hfov)


def test_depth_pro_clamped_fov_is_valid_for_portrait_images():
    # Depth Pro clamps its FOV to 179 deg horizontally; a 9:16 portrait image then has a wider vertical FOV
    for w, h in ((1080, 1920), (480, 640), (200, 1000)):
        cam = PinholeCamera.from_focal(w, h, focal_from_hfov(w, 179.0))
        assert 179.0 < cam.vfov_deg <= MAX_FOV_DEG


def test_roi_crop_far_from_the_principal_point_is_accepted():
    # bounds apply to the full calibrated image: a corner crop of a 4000 px sensor keeps cx far outside
    k = _k(3000.0, 3000.0, 2000.0, 1500.0)
    cam = camera_from_info(4000, 3000, k, [0.0] * 12, roi=(0, 0, 200, 300, False))
    assert cam.size == (300, 200) and cam.cx == 2000.0
    cam = camera_from_info(4000, 3000, k, [0.0] * 12, roi=(3700, 2800, 200, 300, False), binning_x=2, binning_y=2)
    assert cam.size == (150, 100) and cam.cx == (2000.0 - 3700.0) / 2


def test_binning_nonsense():
    with pytest.raises(CameraInfoError, match="binning 1000000x1 leaves no pixels"):
        camera_from_info(640, 480, K, P, binning_x=1000000)
