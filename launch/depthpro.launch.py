r"""Metric depth from one camera with Depth Pro: depth_node + config/depth_pro.yaml (+ RViz).

Depth Pro estimates the focal length itself when the camera has no (valid) CameraInfo.

    ros2 launch depth_ros depthpro.launch.py \
        image:=/camera/color/image_raw camera_info:=/camera/color/camera_info rviz:=true

Arguments: image, camera_info (input topics), namespace, params_file (default: the package's
config/depth_pro.yaml), weights and device (override the parameter file when not empty),
rviz (true: start rviz2 with rviz/depth_ros.rviz), camera_frame (RViz fixed frame = the image's frame_id),
use_sim_time. The node, its remappings and the arguments are in depth_ros/launch_common.py, shared with
zoedepth.launch.py.
"""
from depth_ros.launch_common import depth_launch_description

PARAMS_FILE = "depth_pro.yaml"  # in share/depth_ros/config/


def generate_launch_description():
    return depth_launch_description(PARAMS_FILE)
