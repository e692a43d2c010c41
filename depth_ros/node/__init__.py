"""The ROS 2 node ``depth_node`` (console script): see ``depth_ros.node.node`` and README.md.

``main`` is imported lazily so that the ROS-free helpers of this package (``params``,
``intrinsics``, ``worker``, ``diagnostics``) can be used without rclpy.
"""


def main(argv=None) -> int:
    from depth_ros.node.run import main as _main

    return _main(argv)


__all__ = ["main"]
