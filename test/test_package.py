"""Packaging: colcon builds the ament_python package and installs executables and share files."""
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXECUTABLES = ("depth_node", "depth-ros", "sample_camera", "depth_recorder")


def _colcon():
    exe = Path(sys.executable).with_name("colcon")
    return str(exe) if exe.exists() else shutil.which("colcon")


@pytest.mark.skipif(_colcon() is None, reason="colcon not installed")
def test_colcon_build_installs_executables_and_share(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # Copy the tracked tree (what a user clones), not build outputs or the venv.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        if not (ROOT / rel).is_file():
            continue
        dst = src / "depth_ros" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run([_colcon(), "build", "--base-paths", "src"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    install = tmp_path / "install" / "depth_ros"
    for exe in EXECUTABLES:
        assert (install / "lib" / "depth_ros" / exe).is_file(), f"{exe} not installed under lib/depth_ros"
    share = install / "share" / "depth_ros"
    assert (share / "package.xml").is_file()
    assert (tmp_path / "install" / "depth_ros" / "share" / "ament_index" / "resource_index" / "packages"
            / "depth_ros").is_file()
    for patterns, sub in ((["launch/*.launch.py"], "launch"), (["config/*.yaml", "config/*.xml"], "config"),
                          (["rviz/*.rviz"], "rviz")):
        expected = sorted(os.path.basename(p) for pat in patterns for p in glob.glob(str(ROOT / pat)))
        assert expected, f"nothing matches {patterns}"
        installed = sorted(os.path.basename(p) for p in glob.glob(str(share / sub / "*")))
        assert expected == installed, f"{sub}: {installed} != {expected}"


def test_package_xml_is_ament_python_format3():
    import xml.etree.ElementTree as ET
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "depth_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for dep in ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "builtin_interfaces", "python3-numpy",
                "python3-opencv"):
        assert dep in deps, f"package.xml lacks dependency {dep}"
