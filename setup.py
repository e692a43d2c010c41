import os
from glob import glob

from setuptools import find_packages, setup

package_name = 'depth_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=['depth_ros', 'depth_ros.*']),
    package_data={'depth_ros': ['data/*', 'data/**/*']},
    include_package_data=True,
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        (os.path.join('share', package_name, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', package_name, 'config'), glob('config/*.yaml') + glob('config/*.xml')),
        (os.path.join('share', package_name, 'rviz'), glob('rviz/*.rviz')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='depth_ros maintainers',
    maintainer_email='depth_ros@example.org',
    description='Metric depth, confidence and PointCloud2 from a single camera (ZoeDepth-NK, Depth Pro).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'depth_node = depth_ros.node:main',
            'depth-ros = depth_ros.cli:main',
            'sample_camera = depth_ros.demo.sample_camera:main',
            'depth_recorder = depth_ros.demo.recorder:main',
        ],
    },
)
