"""What launch/zoedepth.launch.py and launch/depthpro.launch.py have in common (cf. nav2_common).

Each launch file names its parameter file and returns ``depth_launch_description(PARAMS_FILE)``:
depth_node of ``depth_ros`` with that file from ``share/depth_ros/config`` (or ``params_file:=``),
the ``image`` / ``camera_info`` remappings, and rviz2 with ``rviz/depth_ros.rviz`` when ``rviz:=true``.

Launch arguments: image, camera_info (input topics), namespace, params_file, weights and device
(override the parameter file when not empty), rviz, camera_frame (RViz fixed frame = the images'
frame_id), use_sim_time.

``launch``, ``launch_ros`` and ``ament_index_python`` are imported inside the functions: they exist only
in a ROS environment, and importing this module must stay free (the tests run it against stand-ins).
"""
import functools
import os

PACKAGE = "depth_ros"
EXECUTABLE = "depth_node"
NODE_NAME = "depth_node"
RVIZ_FILE = "depth_ros.rviz"
# launch arguments that, when not empty, override the parameter of the same name
PARAM_ARGUMENTS = ("weights", "device")


def _actions(context, params_file):
    from ament_index_python.packages import get_package_share_directory
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def arg(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory(PACKAGE)
    parameters = [arg("params_file") or os.path.join(share, "config", params_file)]
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


def depth_launch_description(params_file):
    """The LaunchDescription of a depth_ros launch file; ``params_file``: a file name in ``config/``."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="input sensor_msgs/Image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="input sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of depth_node (its outputs are <namespace>/depth/...)"),
        DeclareLaunchArgument("params_file", default_value="",
                              description=f"parameter file (default: share/{PACKAGE}/config/{params_file})"),
        DeclareLaunchArgument("weights", default_value="",
                              description="checkpoint path (empty: the parameter file's value)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda, cuda:N (empty: the parameter file's value)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
        DeclareLaunchArgument("camera_frame", default_value="camera_color_optical_frame",
                              description="RViz fixed frame: the frame_id of the camera images"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
        OpaqueFunction(function=functools.partial(_actions, params_file=params_file)),
    ])
