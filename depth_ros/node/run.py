"""``depth_node``'s process: ``main`` (the console script) with clean SIGINT / SIGTERM handling."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from depth_ros.node.node import NODE_NAME, DepthNode, StartupError
from depth_ros.node.process import ShutdownSignals, tune_malloc


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console script ``depth_node`` (ROS arguments: ``--ros-args -p ... -r ...``); exit 0 on SIGINT/SIGTERM."""
    tune_malloc()
    signals = ShutdownSignals().install()
    try:
        rclpy.init(args=list(sys.argv if argv is None else argv), signal_handler_options=SignalHandlerOptions.NO)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        print(f"[depth_node] cannot initialise ROS: {exc}", file=sys.stderr)
        return 2
    node, code = None, 0
    try:
        node = DepthNode()
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    signals.starting = False
    if node is not None:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while not signals.requested.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            pass
        finally:
            node.destroy_node()
            executor.shutdown(timeout_sec=1.0)
    if rclpy.ok():
        rclpy.shutdown()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
