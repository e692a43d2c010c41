"""ROS-free core of depth_ros: image encodings, pinhole camera, point clouds, colormaps.

Only NumPy and OpenCV are needed (Open3D lazily, for :func:`voxel_filter`); nothing here
imports ROS.  ``depth_ros.msgs`` converts between these arrays and sensor_msgs.
"""

from .camera import CameraInfoError, PinholeCamera, camera_from_info
from .cloud import (
    FLOAT32,
    CloudField,
    CloudFields,
    PackedCloud,
    backproject,
    cloud_layout,
    depth_to_cloud,
    downsample_stride,
    pack_cloud,
    pack_rgb_float,
    pack_rgb_uint32,
    voxel_filter,
)
from .colormap import colorbar, colorize_confidence, colorize_depth, depth_range
from .encodings import (
    RGB_ENCODINGS,
    SUPPORTED_ENCODINGS,
    ImageEncodingError,
    decode_compressed,
    decode_image,
    depth_to_mm16,
    encode_image,
    encoding_info,
    image_to_rgb8,
    to_rgb8,
)

__all__ = [
    "CameraInfoError", "PinholeCamera", "camera_from_info",
    "FLOAT32", "CloudField", "CloudFields", "PackedCloud", "backproject", "cloud_layout",
    "depth_to_cloud", "downsample_stride", "pack_cloud", "pack_rgb_float", "pack_rgb_uint32",
    "voxel_filter",
    "colorbar", "colorize_confidence", "colorize_depth", "depth_range",
    "RGB_ENCODINGS", "SUPPORTED_ENCODINGS", "ImageEncodingError", "decode_compressed", "decode_image",
    "depth_to_mm16", "encode_image", "encoding_info", "image_to_rgb8", "to_rgb8",
]
