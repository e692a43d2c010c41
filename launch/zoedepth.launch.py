r"""Metric depth from one camera with ZoeDepth-NK: depth_node + config/zoedepth_nk.yaml (+ RViz).

    ros2 launch depth_ros zoedepth.launch.py \
        image:=/camera/color/image_raw camera_info:=/camera/color/camera_info rviz:=true

Arguments: image, camera_info (input topics), namespace, params_file (default: the package's
config/zoedepth_nk.yaml), weights and device (override the parameter file when not empty),
rviz (true: start rviz2 with rviz/depth_ros.rviz), camera_frame (RViz fixed frame = the image's frame_id),
use_sim_time. The node, its remappings and the arguments are in depth_ros/launch_common.py, shared with
depthpro.launch.py.
"""
from depth_ros.launch_common import depth_launch_description

PARAMS_FILE = "zoedepth_nk.yaml"  # in share/depth_ros/config/


def generate_launch_description():
    return depth_launch_description(PARAMS_FILE)
