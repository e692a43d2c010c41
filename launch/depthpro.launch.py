r"""Metric depth from one camera with Depth Pro: depth_node + config/depth_pro.yaml (+ RViz).

Depth Pro estimates the focal length itself when the camera has no (valid) CameraInfo.

    ros2 launch depth_ros depthpro.launch.py \
        image:=/camera/color/image_raw camera_info:=/camera/color/camera_info rviz:=true

Arguments: image, camera_info (input topics), namespace, params_file (default: the package's
config/depth_pro.yaml), weights and device (override the parameter file when not empty),
rviz (true: start rviz2 with rviz/depth_ros.rviz), camera_frame (RViz fixed frame = the image's frame_id),
use_sim_time.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "depth_ros"
EXECUTABLE = "depth_node"
NODE_NAME = "depth_node"
PARAMS_FILE = "depth_pro.yaml"
RVIZ_FILE = "depth_ros.rviz"
# launch arguments that, when not empty, override the parameter of the same name
PARAM_ARGUMENTS = ("weights", "device")


def _actions(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory(PACKAGE)
    parameters = [arg("params_file") or os.path.join(share, "config", PARAMS_FILE)]
    overrides = {name: arg(name) for name in PARAM_ARGUMENTS if arg(name)}
    overrides["use_sim_time"] = arg("use_sim_time").lower() in ("true", "1", "yes")
    parameters.append(overrides)
    depth_node = Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=arg("namespace"),
        parameters=parameters,
        remappings=[("image", arg("image")), ("camera_info", arg("camera_info"))],
        output="screen",
        emulate_tty=True,
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=arg("namespace"),
        arguments=["-d", os.path.join(share, "rviz", RVIZ_FILE), "-f", arg("camera_frame")],
        parameters=[{"use_sim_time": overrides["use_sim_time"]}],
        condition=IfCondition(arg("rviz")),
        output="screen",
    )
    return [depth_node, rviz]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="input sensor_msgs/Image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="input sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of depth_node (its outputs are <namespace>/depth/...)"),
        DeclareLaunchArgument("params_file", default_value="",
                              description=f"parameter file (default: share/{PACKAGE}/config/{PARAMS_FILE})"),
        DeclareLaunchArgument("weights", default_value="",
                              description="checkpoint path (empty: the parameter file's value)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda, cuda:N (empty: the parameter file's value)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
        DeclareLaunchArgument("camera_frame", default_value="camera_color_optical_frame",
                              description="RViz fixed frame: the frame_id of the camera images"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
        OpaqueFunction(function=_actions),
    ])
