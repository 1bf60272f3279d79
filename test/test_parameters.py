"""The schema as ROS parameters: descriptors, validation messages, the shipped params file, dynamic
updates and model path resolution."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from perception_edge import config
from perception_edge.core.errors import ConfigError, ModelError
from perception_edge.nodes.parameters import camera_namespace, output_topic, resolve_path

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "config" / "perception.yaml"


def test_descriptors_follow_the_schema():
    pytest.importorskip("rcl_interfaces.msg", reason="rcl_interfaces (ROS 2) not importable")
    from rcl_interfaces.msg import ParameterType

    from perception_edge.nodes.parameters import descriptor_for, descriptors

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
             list: ParameterType.PARAMETER_STRING_ARRAY}
    assert set(descriptors()) == {p.name for p in config.PARAMETERS}
    for p in config.PARAMETERS:
        d = descriptor_for(p)
        assert d.name == p.name and d.type == types[p.type] and d.description == p.description
        assert d.read_only == p.read_only
        if p.range is not None and p.type is float:
            (r,) = d.floating_point_range
            assert (r.from_value, r.to_value, r.step) == (p.range[0], p.range[1], 0.0)
            assert not d.integer_range
        elif p.range is not None and p.type is int:
            (r,) = d.integer_range
            assert (r.from_value, r.to_value, r.step) == (p.range[0], p.range[1], 1)
        else:
            assert not d.floating_point_range and not d.integer_range
        if p.choices:
            assert all(c in d.additional_constraints for c in p.choices)
    dynamic = {p.name for p in config.PARAMETERS if not p.read_only}
    assert dynamic == {"detection.conf_threshold", "detection.iou_threshold", "detection.max_detections",
                       "detection.agnostic_nms", "segmentation.threshold"}


@pytest.mark.parametrize("values,message", [
    ({"detection.conf_threshold": 1.5}, "parameter detection.conf_threshold: 1.5 is outside [0.0, 1.0]"),
    ({"detection.iou_threshold": -0.1}, "detection.iou_threshold: -0.1 is outside"),
    ({"backend": "magic"}, "parameter backend: 'magic' is not one of auto, onnxruntime, tensorrt"),
    ({"input_qos": "best_effort"}, "not one of sensor_data, reliable"),
    ({"cameras": 3}, "parameter cameras: expected a list of strings"),
    ({"cameras": ["/a/image", 3]}, "parameter cameras: expected a list of strings"),
    ({"segmentation.input_size": 16}, "segmentation.input_size: 0 (as detection.input_size) or at least 32"),
    ({"num_threads": True}, "parameter num_threads: expected an integer"),
    ({"num_threads": -1}, "num_threads: -1 is outside [0, 256]"),
    ({"debug_image": "yes"}, "parameter debug_image: expected true/false"),
    ({"sync.stale_timeout": 0}, "sync.stale_timeout: 0.0 is outside"),
    ({"detection.modle": "x.onnx"}, "unknown parameter 'detection.modle'"),
])
def test_invalid_values_give_clear_messages(values, message):
    with pytest.raises(ConfigError) as e:
        config.validate(values)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_camera_checks():
    pytest.importorskip("rclpy", reason="rclpy not importable")
    from perception_edge.nodes.parameters import check_cameras

    check_cameras(["/cam_front/image_raw", "/cam_left/image_raw/compressed", "/carla/hero/front/image"])
    with pytest.raises(ConfigError, match="needs at least one"):
        check_cameras([])
    with pytest.raises(ConfigError, match="not a valid topic name"):
        check_cameras(["/cam front/image raw"])
    with pytest.raises(ConfigError, match="share the output namespace"):
        check_cameras(["/cam/image_raw", "/cam/image_rect"])


def test_camera_namespaces():
    assert camera_namespace("/cam_front/image_raw") == "/cam_front"
    assert camera_namespace("/carla/hero/front/image") == "/carla/hero/front"
    assert camera_namespace("/cam_rear/image_raw/compressed") == "/cam_rear"
    assert output_topic("/cam_front/image_raw", "detections") == "/cam_front/detections"
    assert output_topic("/carla/ego_vehicle/rgb_front/image", "lane_mask") == "/carla/ego_vehicle/rgb_front/lane_mask"
    assert output_topic("/image", "detections") == "/detections"
    assert output_topic("cam/image_raw", "detections") == "cam/detections"  # relative stays relative


def test_one_camera_as_a_string_is_a_list_of_one():
    assert config.validate({"cameras": "/cam/image_raw"})["cameras"] == ["/cam/image_raw"]


def test_params_file_is_the_schema():
    """config/perception.yaml is written from the schema: its comments are the descriptions and it
    shows the defaults (regenerate: python3 -c "from perception_edge import config;
    print(config.params_file(), end='')" > config/perception.yaml)."""
    text = YAML.read_text()
    assert text == config.params_file(), "config/perception.yaml differs from config.params_file()"
    # and independently of the generator: each value the file sets is the default, except the
    # deployment values it names
    values = config.load_file(str(YAML))
    differing = {n for n in values if values[n] != config.BY_NAME[n].default}
    assert differing == set(config.PARAMS_FILE_VALUES)
    flat_comments = " ".join(line.strip().lstrip("# ") for line in text.splitlines() if line.strip().startswith("#"))
    for p in config.PARAMETERS:
        assert " ".join(p.description.split()) in flat_comments or p.description.rstrip(".") in flat_comments, p.name


def test_typed_sections_follow_the_schema():
    cfg = config.Sections.defaults()
    assert cfg.values() == config.defaults()
    assert cfg.engine.precision == config.BY_NAME["engine.precision"].default
    assert cfg.detection.conf_threshold == 0.25 and cfg.sync.slop == 0.05
    changed = cfg.replace(**{"detection.input_size": 1280})
    assert changed.segmentation_input_size == 1280 and cfg.segmentation_input_size == 640
    assert changed.replace(**{"segmentation.input_size": 320}).segmentation_input_size == 320
    with pytest.raises(ConfigError, match="detection.conf_threshold"):
        cfg.replace(**{"detection.conf_threshold": 2.0})


def test_params_file_lists_every_parameter_and_loads():
    doc = yaml.safe_load(YAML.read_text())
    assert list(doc) == ["/**"]
    names = set(config.flatten(doc["/**"]["ros__parameters"]))
    schema = {p.name for p in config.PARAMETERS}
    assert names == schema, (sorted(schema - names), sorted(names - schema))
    values = config.load_file(str(YAML))
    assert values["cameras"] == ["/cam_front/image_raw", "/cam_left/image_raw"]
    assert values["detection.model"] == "models/det_yolov5_synth.onnx"
    assert values["segmentation.model"] == "models/lane_unet.onnx"
    for p in config.PARAMETERS:  # every value has the schema's type (1.0 not 1 for floats: rcl is strict)
        raw = config.flatten(doc["/**"]["ros__parameters"])[p.name]
        assert type(raw) is p.type, (p.name, raw)
        assert p.validate(raw) == values[p.name]
    # every parameter is documented by a comment in the file
    text = YAML.read_text()
    assert text.count("#") >= len(config.PARAMETERS)


def test_params_file_through_rcl(tmp_path):
    """The file as rcl parses it (--params-file) gives the nodes the same values as config.load_file."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy not importable")
    from perception_edge.nodes.parameters import declare_schema_parameters

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(YAML), "-p", "detection.conf_threshold:=1",
                                  "-p", "sync.slop:=0"])
    try:
        node = rclpy.create_node("params_check", context=ctx, start_parameter_services=False)
        values = declare_schema_parameters(node)
        expected = config.load_file(str(YAML))
        expected.update({"detection.conf_threshold": 1.0, "sync.slop": 0.0})  # integers given for floats
        assert values == expected
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_invalid_override_raises_schema_message():
    rclpy = pytest.importorskip("rclpy", reason="rclpy not importable")
    from perception_edge.nodes.parameters import declare_schema_parameters

    for args, message in [(["-p", "detection.conf_threshold:=1.5"], "detection.conf_threshold: 1.5 is outside"),
                          (["-p", "backend:=cuda"], "'cuda' is not one of"),
                          (["-p", "num_threads:=two"], "num_threads: expected an integer"),
                          (["-p", "cameras:=[]"], "cameras")]:
        ctx = rclpy.Context()
        rclpy.init(context=ctx, args=["--ros-args", *args])
        try:
            node = rclpy.create_node("params_check", context=ctx, start_parameter_services=False)
            with pytest.raises(ConfigError) as e:
                declare_schema_parameters(node)
            assert message in str(e.value)
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)


def test_dynamic_updates_are_validated_and_applied():
    rclpy = pytest.importorskip("rclpy", reason="rclpy not importable")
    from rclpy.parameter import Parameter

    from perception_edge.nodes.parameters import add_dynamic_updates, declare_schema_parameters

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    try:
        node = rclpy.create_node("params_check", context=ctx, start_parameter_services=False)
        declare_schema_parameters(node)
        applied = []
        add_dynamic_updates(node, lambda n, v: applied.append((n, v)),
                            ["detection.conf_threshold", "detection.max_detections"])
        ok = node.set_parameters([Parameter("detection.conf_threshold", value=0.4)])[0]
        assert ok.successful and applied == [("detection.conf_threshold", 0.4)]
        assert node.get_parameter("detection.conf_threshold").value == 0.4
        bad = node.set_parameters([Parameter("detection.conf_threshold", value=1.5)])[0]
        assert not bad.successful and node.get_parameter("detection.conf_threshold").value == 0.4
        ro = node.set_parameters([Parameter("detection.model", value="other.onnx")])[0]
        assert not ro.successful and "read-only" in ro.reason.lower().replace("read only", "read-only")
        ok = node.set_parameters([Parameter("segmentation.threshold", value=0.7)])[0]
        assert ok.successful and len(applied) == 1  # not one this node uses
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_model_paths_resolve_against_cwd_then_share(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "m.onnx"
    model.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert resolve_path("models/m.onnx") == str(model)
    assert resolve_path(str(model)) == str(model)
    assert resolve_path("") == ""
    with pytest.raises(ModelError) as e:
        resolve_path("models/missing.onnx")
    assert "model file not found: models/missing.onnx" in str(e.value)
    assert str(tmp_path / "models" / "missing.onnx") in str(e.value)  # says where it looked
    with pytest.raises(ModelError, match="model file not found: /nope/m.onnx"):
        resolve_path("/nope/m.onnx")
    share = tmp_path / "share" / "perception_edge"
    (share / "models").mkdir(parents=True)
    (share / "models" / "bundled.onnx").write_bytes(b"x")
    monkeypatch.setattr("perception_edge.nodes.parameters.package_share_dir", lambda: str(share))
    assert resolve_path("models/bundled.onnx") == str(share / "models" / "bundled.onnx")
    with pytest.raises(ModelError) as e:
        resolve_path("models/missing.onnx")
    assert str(share / "models" / "missing.onnx") in str(e.value)
    assert os.getcwd() == str(tmp_path)


def test_each_node_declares_the_parameters_it_uses():
    """camera_fusion: the camera/sync group; a model node (before configure(): nothing loaded yet)
    its own section and the runtime settings; a name outside the schema is reported, schema names
    another node uses are not."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy not importable")
    from rclpy.parameter import Parameter

    from perception_edge.nodes.camera_fusion import CameraFusionNode
    from perception_edge.nodes.parameters import group_names
    from perception_edge.nodes.segmentation import SegmentationNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    try:
        overrides = [Parameter("cameras", value="/cam_a/image_raw"), Parameter("detection.model", value="x.onnx"),
                     Parameter("segmentation.threshold", value=0.6)]
        fusion = CameraFusionNode(context=ctx, use_global_arguments=False, parameter_overrides=overrides,
                                  start_parameter_services=False)
        declared = {n for n in fusion._parameters if n not in ("use_sim_time", "start_type_description_service")}
        assert declared == set(group_names("fusion"))
        assert "detection.model" not in declared and fusion.cfg.cameras == ["/cam_a/image_raw"]
        seg = SegmentationNode(context=ctx, use_global_arguments=False, parameter_overrides=overrides,
                               start_parameter_services=False)
        declared = {n for n in seg._parameters if n not in ("use_sim_time", "start_type_description_service")}
        assert declared == set(group_names("segmentation"))
        assert {"segmentation.threshold", "engine.precision", "onnxruntime.cpu_arena", "backend"} <= declared
        assert not declared & {"detection.model", "sync.slop", "input_qos"}
        assert seg.model is None and not seg.enabled and seg.cfg.segmentation.threshold == 0.6
        with pytest.raises(ConfigError, match="segmentation.model is empty"):
            seg.configure()
        fusion.destroy_node()
        seg.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
