"""Layering: core and models import without any ROS package available."""
import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent("""
    import sys, importlib.abc
    BLOCKED = ("rclpy", "sensor_msgs", "std_msgs", "builtin_interfaces", "diagnostic_msgs", "geometry_msgs",
               "rosidl_runtime_py", "rpyutils")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked for this test: " + name)
            return None
    sys.meta_path.insert(0, Block())
    for mod in %r:
        __import__(mod)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok")
""")


def _run(mods):
    proc = subprocess.run([sys.executable, "-c", BLOCKER % (mods,)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_core_imports_without_ros():
    _run(["depth_ros.core", "depth_ros.core.encodings", "depth_ros.core.camera", "depth_ros.core.cloud",
          "depth_ros.core.colormap"])


def test_models_import_without_ros():
    _run(["depth_ros.models", "depth_ros.models.zoedepth", "depth_ros.models.depth_pro",
          "depth_ros.models.weights"])


def test_core_does_not_import_torch():
    code = ("import sys; import depth_ros.core.encodings, depth_ros.core.camera, depth_ros.core.cloud, "
            "depth_ros.core.colormap; assert 'torch' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr
