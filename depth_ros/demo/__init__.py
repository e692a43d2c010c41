"""The demo and offline tools around depth_node.

* ``render``: deterministic numpy ray-caster of the synthetic room / street sample stream
  (shipped in ``depth_ros/data/sample_stream``: 16 frames, 320x240, exact intrinsics + ground-truth depth);
* ``sample_camera`` (console script): publishes that stream as Image + CameraInfo at a steady rate;
* ``recorder`` (console script ``depth_recorder``): records depth_node's outputs to a rosbag2 and writes
  pictures, PLY clouds and a summary (rates, latency, dropped frames, AbsRel / delta1);
* ``run_demo``: starts the three processes (``bash scripts/demo.sh`` / ``depth-ros demo``).

Bags are read and written by ``depth_ros.bag``, files (pictures, PNG/NPY, PLY, metrics) by ``depth_ros.files``.
"""
