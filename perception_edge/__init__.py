"""perception_edge: camera perception (YOLOv5 detection, lane segmentation) for ROS 2 at the edge."""

__version__ = "0.1.0"
