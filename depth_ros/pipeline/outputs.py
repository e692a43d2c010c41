"""The one table of depth_ros's inputs and outputs: topic names (relative, so namespaces and remapping
apply), message types and which of them a bag written by ``depth-ros bag`` holds.

Everything that names a topic (the node, the CLI, the demo's recorder, tests and benchmarks) imports
it from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
ODOMETRY = "nav_msgs/msg/Odometry"

# inputs of depth_node
IMAGE_TOPIC = "image"
COMPRESSED_SUFFIX = "/compressed"
CAMERA_INFO_TOPIC = "camera_info"
METRIC_REFERENCE_TOPIC = "metric_reference"
ODOMETRY_TOPIC = "odom"
DIAGNOSTICS_TOPIC = "/diagnostics"


@dataclass(frozen=True)
class Output:
    key: str        #: short name (``FrameResult`` field, bag summary key)
    topic: str      #: topic relative to the node's namespace
    msg_type: str   #: ROS 2 type name
    in_bag: bool    #: written by ``depth-ros bag``
    description: str


OUTPUTS: Tuple[Output, ...] = (
    Output("depth", "depth/image", IMAGE, True,
           "REP 118 depth: 32FC1 metres (NaN invalid) or 16UC1 millimetres (0 invalid)"),
    Output("camera_info", "depth/camera_info", CAMERA_INFO, True,
           "intrinsics of depth/image (same size), as used for the cloud"),
    Output("confidence", "depth/confidence", IMAGE, True, "32FC1 in [0, 1], higher is more certain"),
    Output("points", "depth/points", POINTCLOUD2, True, "depth_image_proc layout (x y z [rgb] [confidence])"),
    Output("colorized", "depth/colorized", IMAGE, False, "rgb8 picture of the depth (for people)"),
)
BY_KEY: Dict[str, Output] = {o.key: o for o in OUTPUTS}
DEPTH_TOPIC = BY_KEY["depth"].topic
DEPTH_INFO_TOPIC = BY_KEY["camera_info"].topic
CONFIDENCE_TOPIC = BY_KEY["confidence"].topic
POINTS_TOPIC = BY_KEY["points"].topic
COLORIZED_TOPIC = BY_KEY["colorized"].topic
OUTPUT_TOPICS: Tuple[str, ...] = tuple(o.topic for o in OUTPUTS)


def bag_topics(namespace: str) -> Dict[str, str]:
    """{output key: absolute topic} of the outputs a bag holds, under ``namespace`` (e.g. ``/camera``)."""
    ns = namespace.rstrip("/")
    out = {}
    for o in OUTPUTS:
        if o.in_bag:
            t = f"{ns}/{o.topic}"
            out[o.key] = t if t.startswith("/") else "/" + t
    return out
