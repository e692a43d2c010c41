r"""Metric depth from one camera with Marigold: depth_node + config/marigold.yaml (+ RViz).

Marigold's affine-invariant depth is made metric on every frame by a robust scale/shift fit to a metric
reference (the reference model of the parameter file, ZoeDepth-NK by default). ``weights`` is the Marigold
pipeline folder (diffusers layout, e.g. a download of prs-eth/marigold-depth-v1-1).

    ros2 launch depth_ros marigold.launch.py weights:=/models/marigold-depth-v1-1 \
        image:=/camera/color/image_raw camera_info:=/camera/color/camera_info rviz:=true

Arguments: image, camera_info (input topics), namespace, params_file (default: the package's
config/marigold.yaml), weights and device (override the parameter file when not empty),
rviz (true: start rviz2 with rviz/depth_ros.rviz), camera_frame (RViz fixed frame = the image's frame_id),
use_sim_time. The node, its remappings and the arguments are in depth_ros/launch_common.py, shared with
zoedepth.launch.py and depthpro.launch.py.
"""
from depth_ros.launch_common import depth_launch_description

PARAMS_FILE = "marigold.yaml"  # in share/depth_ros/config/


def generate_launch_description():
    return depth_launch_description(PARAMS_FILE)
