"""ament_python package; also a plain pip package (pip install .[cpu]) for venvs without ROS.

install_requires stays minimal on purpose: on Jetson, OpenCV and numpy come from apt (python3-opencv
has no pip metadata), and a pip requirement on opencv-python would make the `ros2 run` entry-point
scripts refuse to start. The pip extras carry the rest.
"""
from glob import glob

from setuptools import find_packages, setup

package_name = "perception_edge"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        ("share/" + package_name + "/models", glob("models/*.onnx") + glob("models/*.txt")),
    ],
    install_requires=["setuptools", "numpy", "PyYAML"],
    extras_require={
        "cpu": ["opencv-python-headless>=4.5", "onnxruntime>=1.15", "simplejpeg>=1.6"],
        "export": ["onnx>=1.13", "torch"],  # pin torch yourself (CPU wheel) before installing this
        "tools": ["rosbags>=0.9", "tqdm", "matplotlib"],
        "test": ["pytest>=7", "pycocotools>=2.0"],
        # camera sources over GStreamer; needs the system packages (tools/install_gstreamer.sh)
        "gst": ["PyGObject<3.52"],
        # the CARLA client must match the server's version: pin it to yours (0.9.14 - 0.9.16 are
        # supported), e.g. pip install 'perception_edge[carla]' carla==0.9.15
        "carla": ["carla>=0.9.14,<0.9.17"],
        # quantization-aware training (train-det / train-seg --qat): TensorRT Model Optimizer, training only
        "qat": ["nvidia-modelopt==0.47.0", "requests", "huggingface_hub", "onnx>=1.13", "torch"],
    },
    zip_safe=True,
    maintainer="perception_edge developers",
    maintainer_email="perception-edge@example.com",
    description="Camera perception (YOLOv5 detection, lane segmentation) for ROS 2 at the edge",
    license="Apache-2.0",
    python_requires=">=3.8",
    entry_points={
        "console_scripts": [
            "perception-edge = perception_edge.cli:main",
            "perception_container = perception_edge.nodes.container:main",
            "camera_fusion = perception_edge.nodes.camera_fusion:main",
            "detection_node = perception_edge.nodes.detection:main",
            "segmentation_node = perception_edge.nodes.segmentation:main",
            "camera_source = perception_edge.nodes.camera_source:main",
        ],
    },
)
