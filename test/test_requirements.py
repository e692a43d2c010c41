"""Every module the requirement files promise imports here.

Other tests skip (``pytest.importorskip``) when an optional module is missing, which is right on a
partial install but would hide a broken environment in CI: this test fails instead. Set
``DEPTH_ROS_NO_ROS_WHEELS=1`` (a robot's distro rclpy) to leave the ROS wheels out, as setup_env.sh does.
"""
import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# requirement name -> module to import
MODULES = {
    "torch": "torch", "torchvision": "torchvision", "timm": "timm", "numpy": "numpy",
    "opencv-python-headless": "cv2", "open3d-cpu": "open3d", "safetensors": "safetensors", "tqdm": "tqdm",
    "rosbags": "rosbags.rosbag2", "diffusers": "diffusers", "transformers": "transformers", "scipy": "scipy",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "pytest": "pytest", "vermin": "vermin", "ruff": "ruff",
    "colcon-common-extensions": "colcon_core", "ros-ament-package": "ament_package",
    "ros-rclpy": "rclpy", "ros-sensor-msgs": "sensor_msgs.msg", "ros-std-msgs": "std_msgs.msg",
    "ros-geometry-msgs": "geometry_msgs.msg", "ros-nav-msgs": "nav_msgs.msg", "ros-diagnostic-msgs": "diagnostic_msgs.msg",
    "ros-builtin-interfaces": "builtin_interfaces.msg", "ros-rmw-fastrtps-cpp": None, "ros-wheels-bootstrapper": None,
}


def _requirements():
    files = ["runtime.txt", "test.txt"]
    if os.environ.get("DEPTH_ROS_NO_ROS_WHEELS", "0") != "1":
        files.append("ros-wheels.txt")
    for name in files:
        for line in (REPO / "requirements" / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                yield name, line.split("==")[0].split(">=")[0].strip()


REQS = sorted(set(_requirements()))


def test_every_requirement_has_a_module_to_check():
    unknown = [req for _f, req in REQS if req not in MODULES]
    assert not unknown, f"add the import name of {unknown} to MODULES"


@pytest.mark.parametrize("file,req", REQS)
def test_requirement_imports(file, req):
    module = MODULES.get(req)
    if module is None:  # a runtime library without a Python module of its own
        return
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
        pytest.fail(f"{req} (requirements/{file}) is promised but '{module}' does not import: "
                    f"{type(exc).__name__}: {exc}")
