"""Topic naming: where a camera's results go, and the camera list's checks.

Outputs live in the namespace of their camera's image topic (/cam_front/image_raw ->
/cam_front/detections, /cam_front/lane_mask ...). A relative camera topic gives relative outputs,
resolved in the node's namespace (``--ros-args -r __ns:=/robot``) and remappable like any topic name
(``-r /cam_front/detections:=/objects``), so the documented absolute defaults keep working while
ROS users can place and rename everything from a launch file.
"""
from __future__ import annotations

from typing import Sequence

from perception_edge.core.errors import ConfigError
from perception_edge.core.topics import camera_namespace, output_topic

__all__ = ["camera_namespace", "output_topic", "check_cameras"]


def check_cameras(cameras: Sequence[str]) -> None:
    """Camera topics: at least one, valid names, distinct output namespaces."""
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    if not cameras:
        raise ConfigError("parameter cameras: needs at least one image topic")
    seen: dict[str, str] = {}
    for topic in cameras:
        try:
            validate_topic_name(topic)
        except InvalidTopicNameException as e:
            raise ConfigError(f"parameter cameras: {topic!r} is not a valid topic name "
                              f"({str(e).splitlines()[0]})") from None
        ns = camera_namespace(topic)
        if ns in seen:
            raise ConfigError(f"parameter cameras: {seen[ns]!r} and {topic!r} share the output namespace "
                              f"{ns or '/'!r}; give each camera its own namespace")
        seen[ns] = topic
