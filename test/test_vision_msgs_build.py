"""Checks the vision_msgs message definitions against upstream vision_msgs 4.x.

vision_msgs comes either from a ROS 2 distribution or, in a plain venv, from
tools/build_vision_msgs.sh (vendored copy in third_party/vision_msgs).  Either way the
field names/types must be those of ros-perception/vision_msgs 4.x (ROS 2 branch).
Skipped when vision_msgs cannot be imported.
"""
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

try:
    import vision_msgs
    from vision_msgs import msg as vmsg
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(
        f'vision_msgs not importable ({exc}); run tools/build_vision_msgs.sh VENV '
        'or source a ROS 2 distribution',
        allow_module_level=True,
    )

# get_fields_and_field_types() of upstream vision_msgs 4.x.
UPSTREAM_FIELDS = {
    'Point2D': {'x': 'double', 'y': 'double'},
    'Pose2D': {'position': 'vision_msgs/Point2D', 'theta': 'double'},
    'BoundingBox2D': {
        'center': 'vision_msgs/Pose2D', 'size_x': 'double', 'size_y': 'double'},
    'BoundingBox2DArray': {
        'header': 'std_msgs/Header', 'boxes': 'sequence<vision_msgs/BoundingBox2D>'},
    'BoundingBox3D': {'center': 'geometry_msgs/Pose', 'size': 'geometry_msgs/Vector3'},
    'BoundingBox3DArray': {
        'header': 'std_msgs/Header', 'boxes': 'sequence<vision_msgs/BoundingBox3D>'},
    'ObjectHypothesis': {'class_id': 'string', 'score': 'double'},
    'ObjectHypothesisWithPose': {
        'hypothesis': 'vision_msgs/ObjectHypothesis',
        'pose': 'geometry_msgs/PoseWithCovariance'},
    'Detection2D': {
        'header': 'std_msgs/Header',
        'results': 'sequence<vision_msgs/ObjectHypothesisWithPose>',
        'bbox': 'vision_msgs/BoundingBox2D',
        'id': 'string'},
    'Detection2DArray': {
        'header': 'std_msgs/Header', 'detections': 'sequence<vision_msgs/Detection2D>'},
    'Detection3D': {
        'header': 'std_msgs/Header',
        'results': 'sequence<vision_msgs/ObjectHypothesisWithPose>',
        'bbox': 'vision_msgs/BoundingBox3D',
        'id': 'string'},
    'Detection3DArray': {
        'header': 'std_msgs/Header', 'detections': 'sequence<vision_msgs/Detection3D>'},
    'Classification': {
        'header': 'std_msgs/Header', 'results': 'sequence<vision_msgs/ObjectHypothesis>'},
    'VisionClass': {'class_id': 'uint16', 'class_name': 'string'},
    'LabelInfo': {
        'header': 'std_msgs/Header',
        'class_map': 'sequence<vision_msgs/VisionClass>',
        'threshold': 'float'},
    'VisionInfo': {
        'header': 'std_msgs/Header', 'method': 'string',
        'database_location': 'string', 'database_version': 'int32'},
}

# RIHS01 type hashes (first 8 bytes) from code generated from upstream vision_msgs 4.x
# on a ROS 2 release with type descriptions (Iron and later).  Comments do not enter
# the hash, field names/types/order do: a match means the definition is identical.
UPSTREAM_TYPE_HASH_PREFIX = {
    'Point2D': 'eab0e83f44ab4de9',
    'Pose2D': 'b0b5d1d7b4c20dd4',
    'BoundingBox2D': '008eacbb0cf8f26e',
    'BoundingBox3D': 'bbb73a65c163d7f9',
    'ObjectHypothesis': '51da43cec11c0195',
    'ObjectHypothesisWithPose': '41c12344c0396c48',
    'Detection2D': '0d12b69df5c593b3',
    'Detection2DArray': '214274120007f4a6',
    'Detection3D': 'ddd703be132ab0b6',
    'Detection3DArray': '793f5eab9595ac1c',
    'Classification': 'f74db28d0eaef3af',
    'VisionClass': '1e4a11f0fed50b56',
    'LabelInfo': '3d37df4015cdf660',
    'VisionInfo': '95d3116a17484ad9',
}


@pytest.mark.parametrize('name', sorted(UPSTREAM_FIELDS))
def test_fields_match_upstream_4x(name):
    cls = getattr(vmsg, name, None)
    assert cls is not None, f'vision_msgs/msg/{name} missing'
    # dict equality also checks that there are no extra fields; order matters on
    # the wire, so compare the ordered lists too.
    assert list(cls.get_fields_and_field_types().items()) == \
        list(UPSTREAM_FIELDS[name].items())


def _share_msg_dir():
    # <prefix>/lib/python3.X/site-packages/vision_msgs/__init__.py -> <prefix>/share/...
    prefix = Path(vision_msgs.__file__).resolve().parents[4]
    return prefix / 'share' / 'vision_msgs' / 'msg'


@pytest.mark.parametrize('name', sorted(UPSTREAM_TYPE_HASH_PREFIX))
def test_type_hash_matches_upstream(name):
    desc = _share_msg_dir() / f'{name}.json'
    if not desc.is_file():
        pytest.skip(f'no type description installed at {desc} (ROS release before Iron?)')
    hashes = {h['type_name']: h['hash_string']
              for h in json.loads(desc.read_text())['type_hashes']}
    got = hashes[f'vision_msgs/msg/{name}']
    assert got.startswith('RIHS01_' + UPSTREAM_TYPE_HASH_PREFIX[name]), got


def test_detection2d_array_serialization_roundtrip():
    serialization = pytest.importorskip('rclpy.serialization')
    det = vmsg.Detection2D(id='track-1')
    det.bbox.center.position.x = 10.5
    det.bbox.center.position.y = 20.25
    det.bbox.center.theta = 0.1
    det.bbox.size_x = 4.0
    det.bbox.size_y = 8.0
    hyp = vmsg.ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = 'person'
    hyp.hypothesis.score = 0.75
    det.results.append(hyp)
    arr = vmsg.Detection2DArray(detections=[det])
    arr.header.frame_id = 'cam0'

    data = serialization.serialize_message(arr)
    back = serialization.deserialize_message(data, vmsg.Detection2DArray)
    assert back == arr
    assert back.detections[0].results[0].hypothesis.class_id == 'person'

    info = vmsg.LabelInfo(threshold=0.5, class_map=[
        vmsg.VisionClass(class_id=0, class_name='person'),
        vmsg.VisionClass(class_id=65535, class_name='UNLABELED')])
    assert serialization.deserialize_message(
        serialization.serialize_message(info), vmsg.LabelInfo) == info
