"""Layering: core <- models <- pipeline <- msgs (bag, files) <- node / cli / demo; the lower layers
import without any ROS package available, and core without torch."""
import ast
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import depth_ros

PKG = Path(depth_ros.__file__).parent
# a module's layer: it may import depth_ros modules of its own layer or below only
LAYER = {"core": 0, "models": 1, "pipeline": 2, "msgs": 3, "bag": 3, "files": 3, "ros_env": 3,
         "node": 4, "cli": 4, "demo": 4, "launch_common": 4}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER[parts[1]] if len(parts) > 1 and parts[1] in LAYER else -1


def _modules(prefixes):
    out = []
    for info in pkgutil.walk_packages([str(PKG)], "depth_ros."):
        if info.name.split(".")[1] in prefixes:
            out.append(info.name)
    return out

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


def test_pipeline_msgs_bag_and_cli_import_without_ros():
    # msgs builds rclpy messages only when asked (kit RCLPY); the CLI works without rclpy
    _run(_modules({"pipeline"}) + ["depth_ros.msgs", "depth_ros.bag", "depth_ros.files", "depth_ros.cli",
                                   "depth_ros.cli.bag", "depth_ros.cli.infer", "depth_ros.cli.export"])


def test_imports_point_down_the_layers():
    wrong = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        mine = _layer(module)
        if mine < 0:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                names = [".".join(module.split(".")[:-1] + [node.module])] if rel.name != "__init__" else [
                    f"{module}.{node.module}"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("depth_ros.") and _layer(name) > mine:
                    wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_core_does_not_import_torch():
    code = ("import sys; import depth_ros.core.encodings, depth_ros.core.camera, depth_ros.core.cloud, "
            "depth_ros.core.colormap; assert 'torch' not in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr
