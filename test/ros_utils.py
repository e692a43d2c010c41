"""Shared ROS 2 test helpers: isolation, spinning with deadlines, subprocesses, a test-image publisher.

Isolation: every session gets its own ``ROS_DOMAIN_ID`` (a lock file under the temp dir keeps
concurrent test runs on one machine apart), discovery is limited to this host
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``; ``ROS_LOCALHOST_ONLY`` is ignored on Kilted), and Fast DDS
loads ``config/fastdds_shm.xml`` (shared memory with large segments, so multi-megabyte images between
processes are not lost). Call ``setup_process_env()`` before the first ``rclpy.init`` of a process:
Fast DDS reads its XML profile only once.

Also a command line image publisher, used as "the camera process" by the tests::

    python test/ros_utils.py publish --image-topic /cam/image --info-topic /cam/camera_info \\
        --width 640 --height 480 --rate 10 --count 50
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
TEST_DIR = REPO / "test"
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"

from depth_ros.ros_env import allocate_domain_id, isolation_env  # noqa: E402,F401 (re-exported for tests)


# ----------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------
def ros_env_vars(domain_id: Optional[int] = None, shm: bool = True) -> Dict[str, str]:
    """The variables that isolate ROS traffic of a test run (see module docstring)."""
    env = isolation_env(domain_id, shm)
    env.update({"RCUTILS_COLORIZED_OUTPUT": "0", "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
                "PYTHONUNBUFFERED": "1", "DEPTH_ROS_OFFLINE": os.environ.get("DEPTH_ROS_OFFLINE", "1")})
    return env


def setup_process_env(domain_id: Optional[int] = None, shm: bool = True) -> int:
    """Apply ``ros_env_vars`` to this process (before its first rclpy.init); returns the domain id."""
    env = ros_env_vars(domain_id, shm)
    if "ROS_LOCALHOST_ONLY" not in env:
        os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated since Jazzy, ignored on Kilted
    os.environ.update(env)
    return int(env["ROS_DOMAIN_ID"])


def subprocess_env(domain_id: Optional[int] = None, extra: Optional[Dict[str, str]] = None,
                   shm: bool = True) -> Dict[str, str]:
    """Environment for a child ROS process: this one + isolation + ``test/`` on PYTHONPATH.

    The ros-wheels bootstrapper re-executes Python once with LD_LIBRARY_PATH set and marks that with
    ``_ROS_WHEELS_BOOTSTRAP_COMPLETE``; children inherit both, so they start directly.
    """
    env = dict(os.environ)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.update(ros_env_vars(domain_id, shm))
    paths = [str(TEST_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if extra:
        env.update(extra)
    return env


def node_executable() -> List[str]:
    """How to start ``depth_node``: the console script next to this Python, on PATH, or ``-m``."""
    here = Path(sys.executable).parent / "depth_node"
    if here.is_file():
        return [str(here)]
    found = shutil.which("depth_node")
    if found:
        return [found]
    return [sys.executable, "-m", "depth_ros.node.run"]


def node_command(params_file: Optional[str] = None, remaps: Optional[Dict[str, str]] = None,
                 params: Optional[Dict[str, object]] = None, node_name: Optional[str] = None,
                 namespace: Optional[str] = None) -> List[str]:
    """``depth_node --ros-args [--params-file F] [-r a:=b]... [-p k:=v]...`` (as launch_ros builds it)."""
    cmd = node_executable() + ["--ros-args"]
    if node_name:
        cmd += ["-r", f"__node:={node_name}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    if params_file:
        cmd += ["--params-file", str(params_file)]
    for k, v in (remaps or {}).items():
        cmd += ["-r", f"{k}:={v}"]
    for k, v in (params or {}).items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        cmd += ["-p", f"{k}:={v}"]
    return cmd


# ----------------------------------------------------------------------------------------------
# launch files without launch_ros
# ----------------------------------------------------------------------------------------------
def run_launch_file(path, arguments: Optional[Dict[str, str]] = None, share_dir: Optional[str] = None) -> list:
    """Execute a launch file's ``generate_launch_description()`` against minimal stand-ins of ``launch``,
    ``launch_ros`` and ``ament_index_python`` (which cannot be installed here) and return the
    ``launch_ros.actions.Node`` actions it yields, each as ``{"kwargs": ..., "enabled": bool}``.

    Launch arguments take their declared defaults unless given in ``arguments``; ``share_dir``
    (default: the repository, whose config/ and rviz/ mirror share/depth_ros) answers
    ``get_package_share_directory``.
    """
    import importlib.util
    import types

    share_dir = str(share_dir or REPO)
    values: Dict[str, str] = {}
    declared: Dict[str, str] = {}

    class LaunchConfiguration:
        def __init__(self, name, default=None):
            self.name = name

        def perform(self, context):
            return context[self.name]

    def _text(v, context):
        return v.perform(context) if hasattr(v, "perform") else str(v)

    class DeclareLaunchArgument:
        def __init__(self, name, default_value=None, description="", **kw):
            declared[name] = default_value
            self.name, self.default_value, self.description = name, default_value, description

    class OpaqueFunction:
        def __init__(self, function, args=None, kwargs=None):
            self.function = function

    class IfCondition:
        def __init__(self, predicate):
            self.predicate = predicate

        def evaluate(self, context):
            return _text(self.predicate, context).strip().lower() in ("true", "1")

    class UnlessCondition(IfCondition):
        def evaluate(self, context):
            return not super().evaluate(context)

    class Node:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LaunchDescription:
        def __init__(self, entities=()):
            self.entities = list(entities)

    def get_package_share_directory(name):
        if name != "depth_ros":
            return f"/opt/ros/share/{name}"
        return share_dir

    mods = {
        "launch": types.ModuleType("launch"), "launch.actions": types.ModuleType("launch.actions"),
        "launch.conditions": types.ModuleType("launch.conditions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"), "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    mods["launch"].LaunchDescription = LaunchDescription
    mods["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    mods["launch.actions"].OpaqueFunction = OpaqueFunction
    mods["launch.conditions"].IfCondition = IfCondition
    mods["launch.conditions"].UnlessCondition = UnlessCondition
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch_ros.actions"].Node = Node
    mods["ament_index_python.packages"].get_package_share_directory = get_package_share_directory
    # the depth_ros module the launch files share is imported afresh, so that it sees these stand-ins
    # even if it imported launch / launch_ros at module level
    fresh = ("depth_ros.launch_common",)
    saved = {k: sys.modules.get(k) for k in list(mods) + list(fresh)}
    for k in fresh:
        sys.modules.pop(k, None)
    sys.modules.update(mods)
    try:
        spec = importlib.util.spec_from_file_location(f"_launch_{Path(path).stem.replace('.', '_')}", str(path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        desc = module.generate_launch_description()
        values.update({k: v for k, v in declared.items()})
        unknown = set(arguments or {}) - set(declared)
        if unknown:
            raise ValueError(f"unknown launch arguments: {sorted(unknown)}")
        values.update(arguments or {})
        nodes = []
        pending = list(desc.entities)
        while pending:
            ent = pending.pop(0)
            if isinstance(ent, OpaqueFunction):
                pending[:0] = list(ent.function(values) or [])
            elif isinstance(ent, Node):
                cond = ent.kwargs.get("condition")
                enabled = cond is None or cond.evaluate(values)
                kw = {k: (_text(v, values) if hasattr(v, "perform") else v) for k, v in ent.kwargs.items()}
                nodes.append({"kwargs": kw, "enabled": enabled})
        return nodes
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def launch_node_command(node_kwargs: Dict[str, object], extra_params: Optional[Dict[str, object]] = None) -> List[str]:
    """The command line launch_ros builds for a ``Node`` action of depth_ros's ``depth_node``.

    Parameter dictionaries become ``-p name:=value`` (launch_ros writes them to a temporary file;
    same effect); ``extra_params`` are appended last (they win, like a later dictionary would).
    """
    assert node_kwargs["package"] == "depth_ros" and node_kwargs["executable"] == "depth_node", node_kwargs
    params: Dict[str, object] = {}
    files: List[str] = []
    for entry in node_kwargs.get("parameters", []):
        if isinstance(entry, dict):
            params.update(entry)
        else:
            files.append(str(entry))
    params.update(extra_params or {})
    cmd = node_executable() + ["--ros-args"]
    if node_kwargs.get("name"):
        cmd += ["-r", f"__node:={node_kwargs['name']}"]
    if node_kwargs.get("namespace"):
        cmd += ["-r", "__ns:=/" + str(node_kwargs["namespace"]).lstrip("/")]  # launch_ros makes it absolute
    for f in files:
        cmd += ["--params-file", f]
    for k, v in params.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        cmd += ["-p", f"{k}:={v}"]
    for src, dst in node_kwargs.get("remappings", []):
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


# ----------------------------------------------------------------------------------------------
# subprocesses
# ----------------------------------------------------------------------------------------------
class Proc:
    """A child process whose combined output goes to a temp file (no pipe can fill up)."""

    def __init__(self, cmd: Sequence[str], env: Optional[Dict[str, str]] = None, name: str = "proc",
                 cwd: Optional[str] = None, new_group: bool = False):
        self.name = name
        self.cmd = list(cmd)
        self._log = tempfile.NamedTemporaryFile(prefix=f"depth_ros_{name}_", suffix=".log", delete=False)
        # new_group: its own process group, which signal_group() signals the way a terminal's Ctrl-C does
        self.popen = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      cwd=cwd or str(REPO), start_new_session=new_group)

    def signal_group(self, sig) -> None:
        os.killpg(os.getpgid(self.popen.pid), sig)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self._log.name, "r", errors="replace") as f:
            return f.read()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_output(self, text: str, timeout: float) -> bool:
        """Wait until ``text`` appears in the output (False on timeout or exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if not self.alive():
                return text in self.output()
            time.sleep(0.05)
        return False

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """SIGINT (like Ctrl-C / launch), then SIGTERM, then SIGKILL; returns the exit code."""
        if self.alive():
            for sig, wait_s in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
                try:
                    self.popen.send_signal(sig)
                except ProcessLookupError:
                    break
                if self.wait(wait_s) is not None:
                    break
        code = self.popen.poll()
        self._log.close()
        return code

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


# ----------------------------------------------------------------------------------------------
# in-process rclpy session
# ----------------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def reliable_qos(depth: int = 10):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def best_effort_qos(depth: int = 5):
    from rclpy.qos import qos_profile_sensor_data

    return qos_profile_sensor_data


class Collector:
    """Stores every message of a topic with its arrival time (monotonic)."""

    def __init__(self, node, msg_type, topic: str, qos=None):
        self.messages: list = []
        self.times: List[float] = []
        self.topic = topic
        self._lock = threading.Lock()
        self.sub = node.create_subscription(msg_type, topic, self._cb, qos or reliable_qos())

    def _cb(self, msg) -> None:
        with self._lock:
            self.messages.append(msg)
            self.times.append(time.monotonic())

    def __len__(self) -> int:
        with self._lock:
            return len(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.times.clear()

    @property
    def last(self):
        with self._lock:
            return self.messages[-1] if self.messages else None

    def wait(self, n: int = 1, timeout: float = 5.0) -> bool:
        return wait_for(lambda: len(self) >= n, timeout)

    def find(self, predicate: Callable) -> list:
        with self._lock:
            return [m for m in self.messages if predicate(m)]


class RosSession:
    """An isolated rclpy context spun by a background executor, plus a probe node for the test."""

    def __init__(self, domain_id: Optional[int] = None, name: str = "test_probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.domain_id = setup_process_env(domain_id)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.node = rclpy.create_node(f"{name}_{os.getpid()}", context=self.context)
        self.executor.add_node(self.node)
        self._nodes = [self.node]
        self._thread = threading.Thread(target=self._spin, name="ros_session_spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # context shut down during teardown
            pass

    def add_node(self, node):
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def remove_node(self, node) -> None:
        self.executor.remove_node(node)
        if node in self._nodes:
            self._nodes.remove(node)
        node.destroy_node()

    def collect(self, msg_type, topic: str, qos=None) -> Collector:
        return Collector(self.node, msg_type, topic, qos)

    def publisher(self, msg_type, topic: str, qos=None):
        return self.node.create_publisher(msg_type, topic, qos or best_effort_qos())

    def wait_for_subscribers(self, pub, n: int = 1, timeout: float = 5.0) -> bool:
        return wait_for(lambda: pub.get_subscription_count() >= n, timeout)

    def wait_for_publishers(self, topic: str, n: int = 1, timeout: float = 5.0) -> bool:
        return wait_for(lambda: self.node.count_publishers(topic) >= n, timeout)

    def close(self) -> None:
        import rclpy

        for node in list(reversed(self._nodes)):
            with contextlib.suppress(Exception):
                self.executor.remove_node(node)
            with contextlib.suppress(Exception):
                node.destroy_node()
        with contextlib.suppress(Exception):
            self.executor.shutdown(timeout_sec=2.0)
        with contextlib.suppress(Exception):
            rclpy.shutdown(context=self.context)
        self._thread.join(timeout=3.0)

    def __enter__(self) -> "RosSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# test images
# ----------------------------------------------------------------------------------------------
def pattern_image(width: int, height: int, seed: int = 0):
    """A deterministic H x W x 3 uint8 RGB pattern (gradients + a moving square)."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    img[..., 2] = ((x + y + 8 * seed) % 256).astype(np.uint8)
    s = max(2, min(width, height) // 6)
    x0 = (seed * 7) % max(1, width - s)
    img[height // 3: height // 3 + s, x0: x0 + s] = 255
    return img


def image_msg(width: int, height: int, encoding: str = "rgb8", stamp=None, frame_id: str = "camera_optical",
              seed: int = 0):
    """A sensor_msgs/Image of ``pattern_image`` in ``encoding`` (rgb8, bgr8, mono8, ...)."""
    import numpy as np
    from std_msgs.msg import Header

    from depth_ros import msgs

    rgb = pattern_image(width, height, seed)
    if encoding == "rgb8":
        arr = rgb
    elif encoding == "bgr8":
        arr = rgb[..., ::-1].copy()
    elif encoding == "rgba8":
        arr = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == "bgra8":
        arr = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == "mono8":
        arr = rgb[..., 1].copy()
    else:
        raise ValueError(f"test image_msg does not make {encoding}")
    header = Header(frame_id=frame_id)
    if stamp is not None:
        header.stamp = stamp
    return msgs.array_to_image_msg(arr, encoding, header)


def camera_info_msg(width: int, height: int, fx: float = 500.0, fy: Optional[float] = None,
                    stamp=None, frame_id: str = "camera_optical"):
    from sensor_msgs.msg import CameraInfo

    fy = fx if fy is None else fy
    m = CameraInfo()
    m.header.frame_id = frame_id
    if stamp is not None:
        m.header.stamp = stamp
    m.width, m.height = int(width), int(height)
    m.distortion_model = "plumb_bob"
    m.d = [0.0] * 5
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    m.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    m.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    m.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return m


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec


# ----------------------------------------------------------------------------------------------
# the camera process
# ----------------------------------------------------------------------------------------------
def _publish_main(argv: Iterable[str]) -> int:
    ap = argparse.ArgumentParser(prog="ros_utils.py publish", description="publish test images + CameraInfo")
    ap.add_argument("--image-topic", default="image")
    ap.add_argument("--info-topic", default="camera_info")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--encoding", default="rgb8")
    ap.add_argument("--frame-id", default="camera_optical")
    ap.add_argument("--fx", type=float, default=500.0)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=0, help="0 = until interrupted")
    ap.add_argument("--no-info", action="store_true", help="do not publish CameraInfo")
    ap.add_argument("--wait-subscribers", type=float, default=10.0,
                    help="seconds to wait for a subscriber of the image topic before publishing")
    ap.add_argument("--reliable", action="store_true", help="publish RELIABLE (default: best effort)")
    args = ap.parse_args(list(argv))

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    setup_process_env(int(os.environ["ROS_DOMAIN_ID"]) if "ROS_DOMAIN_ID" in os.environ else None)
    rclpy.init()
    node = rclpy.create_node(f"test_camera_{os.getpid()}")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if args.reliable
                     else ReliabilityPolicy.BEST_EFFORT)
    img_pub = node.create_publisher(Image, args.image_topic, qos)
    info_pub = None if args.no_info else node.create_publisher(CameraInfo, args.info_topic, qos)
    try:
        wait_for(lambda: img_pub.get_subscription_count() > 0, args.wait_subscribers)
        print(f"publishing {args.width}x{args.height} {args.encoding} on {img_pub.topic_name}", flush=True)
        frames = [image_msg(args.width, args.height, args.encoding, frame_id=args.frame_id, seed=i)
                  for i in range(4)]
        info = camera_info_msg(args.width, args.height, args.fx, frame_id=args.frame_id)
        period = 1.0 / args.rate if args.rate > 0 else 0.0
        n = 0
        t_next = time.monotonic()
        while rclpy.ok() and (args.count <= 0 or n < args.count):
            stamp = node.get_clock().now().to_msg()
            msg = frames[n % len(frames)]
            msg.header.stamp = stamp
            if info_pub is not None:
                info.header.stamp = stamp
                info_pub.publish(info)
            img_pub.publish(msg)
            n += 1
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        print(f"published {n} frames", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def publisher_command(**kwargs) -> List[str]:
    """``python test/ros_utils.py publish --key value ...`` (``no_info=True`` -> ``--no-info``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "publish"]
    for k, v in kwargs.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            if v:
                cmd.append(flag)
        else:
            cmd += [flag, str(v)]
    return cmd


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "publish":
        sys.path.insert(0, str(REPO))
        sys.exit(_publish_main(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
