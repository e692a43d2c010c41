"""depth_ros: monocular metric depth for ROS 2."""

__version__ = "0.1.0"
