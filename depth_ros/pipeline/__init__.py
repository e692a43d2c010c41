"""ROS-free per-frame logic shared by ``depth_node``, ``depth-ros infer`` and ``depth-ros bag``.

* ``outputs``: the table of topic names and message types;
* ``intrinsics``: which intrinsics a frame uses (given > CameraInfo > model estimate > estimator > fallback);
* ``frame``: the validity rule and the frame step (depth, confidence, camera, cloud, colorized);
* ``loading``: building the model and the focal estimator from settings.

Imports ``depth_ros.core`` and ``depth_ros.models`` only (no ROS).
"""
