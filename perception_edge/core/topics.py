"""Topic naming shared by the nodes, the replay and the bag tools (pure string functions).

Outputs live in the namespace of their camera's image topic (/cam_front/image_raw ->
/cam_front/detections, /cam_front/lane_mask ...); ground-truth and replay bags use the same
namespaces (perception_edge.data.bags).
"""
from __future__ import annotations


def camera_namespace(topic: str) -> str:
    """Where a camera's outputs go: the image topic's parent namespace.

    /cam_front/image_raw -> /cam_front; /carla/hero/front/image -> /carla/hero/front;
    /cam/image_raw/compressed -> /cam; /image -> "" (the root)."""
    t = topic.rstrip("/")
    if t.endswith("/compressed"):
        t = t[: -len("/compressed")]
    return t.rsplit("/", 1)[0] if "/" in t else ""


def output_topic(camera: str, name: str) -> str:
    """<camera ns>/<name>; relative camera topics give relative outputs (resolved in the node's namespace)."""
    ns = camera_namespace(camera)
    if ns:
        return f"{ns}/{name}"
    return f"/{name}" if camera.startswith("/") else name
