"""The CARLA loop (perception_edge.sim, `perception-edge carla`).

No CARLA server can run here. What is real: the `carla` client wheel (connection errors, and the
reference for transform matrices and box vertices, which it computes client-side), the projection
and occlusion code, the pipeline (bundled ONNX models), the results bag and the data set folder.
What is a double: the server side -- test/carla_double.py, a TEST DOUBLE of the client API that
renders the project's synthetic scenes and serves matching semantic and instance images.
"""
from __future__ import annotations

import hashlib
import math
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from perception_edge.core.detections import Detections
from perception_edge.core.errors import ConfigError
from perception_edge.core.metrics import box_iou
from perception_edge.data import bags
from perception_edge.data.dataset import DatasetFolder
from perception_edge.data.synthetic import CLASSES
from perception_edge.sim import carla_loop as cl
from perception_edge.sim import ground_truth as gt
from perception_edge.sim.carla_world import CarlaSession, SessionOptions, connect, parse_camera

sys.path.insert(0, str(Path(__file__).resolve().parent))
import carla_double as cd  # noqa: E402  (the test double of the carla client API)

REPO = Path(__file__).resolve().parents[1]
DET = str(REPO / "models" / "det_yolov5_synth.onnx")
SEG = str(REPO / "models" / "lane_unet.onnx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rig(scene, width=640, height=360):
    """Camera specs of the synthetic rig at the scene's mounting height, pitch and FOV (CARLA pitch: + up)."""
    z, p, fov = scene.cam_height, -math.degrees(scene.pitch), math.degrees(scene.hfov)
    return [parse_camera(f"{n}:1.5,{y},{z},{p},{yaw},0", width, height, fov)
            for n, y, yaw in (("front", 0, 0), ("front_left", -0.6, -40), ("front_right", 0.6, 40))]


def serve(seed=6, **kw):
    port = free_port()
    server = cd.serve(port=port, seed=seed, **kw)
    return server, port


def options(server, port, **kw):
    kw.setdefault("cameras", rig(server.world.scene))
    return SessionOptions(port=port, timeout=1.0, **kw)


class EmptyInference:
    """Stands in for the pipeline where only the loop's plumbing is under test."""

    def __call__(self, cameras, frames, stamp):
        return cl.Outputs([Detections.empty(CLASSES) for _ in frames],
                          [np.zeros(f.shape[:2], np.uint8) for f in frames], list(CLASSES), 0.25)


# -- the real client -----------------------------------------------------------------------------------

def test_no_server_gives_one_clear_error_within_the_timeout():
    carla = pytest.importorskip("carla")  # requirements.txt installs it (carla==0.9.16)
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        connect(carla, "127.0.0.1", port, 2.0)
    elapsed = time.monotonic() - t0
    msg = str(e.value)
    assert f"no CARLA server answered at 127.0.0.1:{port} within 2 s" in msg and "\n" not in msg
    assert elapsed < 60  # returns (after about the 2 s timeout) instead of hanging; not a speed goal


def test_cli_without_server_prints_one_line(capsys):
    pytest.importorskip("carla")
    from perception_edge.cli import main

    rc = main(["carla", "--port", str(free_port()), "--timeout", "1", "--frames", "1", "--no-progress",
               "--detection-model", DET, "--segmentation-model", SEG, "--output", "/nonexistent/never"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "no CARLA server answered" in err[0], err


# -- projection ----------------------------------------------------------------------------------------

def test_projection_matches_hand_computed_pinhole_geometry():
    k = gt.intrinsics(800, 600, 90.0)
    assert np.allclose(k, [[400, 0, 400], [0, 400, 300], [0, 0, 1]])
    cam = gt.transform_matrix((0, 0, 0), (0, 0, 0))
    w2c = gt.world_to_camera(cam)
    # a point 10 m ahead, 2 m right, 1 m down: u = 400 + 400 * 2 / 10, v = 300 + 400 * 1 / 10
    p = (np.array([[10.0, 2.0, -1.0, 1.0]]) @ w2c.T)[:, :3]
    assert np.allclose(gt.project_points(p, k), [[480.0, 340.0]])
    # a 2 m cube 10 m ahead: its near face (x = 9) spans 400 -+ 400 / 9
    box = gt.project_box(gt.box_corners((1, 1, 1), (10, 0, 0)), w2c, k, 800, 600)
    assert np.allclose(box, [400 - 400 / 9, 300 - 400 / 9, 400 + 400 / 9, 300 + 400 / 9])
    # camera yawed 90 deg (to the right) sees a point at y = 10 in the centre
    w2c_right = gt.world_to_camera(gt.transform_matrix((0, 0, 0), (0, 90, 0)))
    assert np.allclose(gt.project_points((np.array([[0.0, 10.0, 0.0, 1]]) @ w2c_right.T)[:, :3], k), [[400, 300]])
    # pitched 10 deg up: a point straight ahead drops tan(10 deg) * f below the centre
    w2c_up = gt.world_to_camera(gt.transform_matrix((0, 0, 0), (10, 0, 0)))
    uv = gt.project_points((np.array([[10.0, 0.0, 0.0, 1]]) @ w2c_up.T)[:, :3], k)
    assert np.allclose(uv, [[400, 300 + 400 * math.tan(math.radians(10))]])
    # mounted 1.6 m up: the ground point 16 m ahead is at v = 300 + 400 * 1.6 / 16
    w2c_high = gt.world_to_camera(gt.transform_matrix((0, 0, 1.6), (0, 0, 0)))
    assert np.allclose(gt.project_points((np.array([[16.0, 0, 0, 1]]) @ w2c_high.T)[:, :3], k), [[400, 340]])


def test_box_partly_behind_the_camera_is_clipped_not_lost():
    k = gt.intrinsics(800, 600, 90.0)
    w2c = gt.world_to_camera(np.eye(4))
    # a bus 12 m long passing on the right, its rear 2 m behind the camera
    corners = gt.box_corners((6, 1.25, 1.5), (4, 3, 0))
    box = gt.project_box(corners, w2c, k, 800, 600)
    assert box is not None and box[2] == 800 and box[0] > 400  # reaches the right image edge
    assert gt.project_box(gt.box_corners((1, 1, 1), (-5, 0, 0)), w2c, k, 800, 600) is None  # all behind
    assert gt.project_box(gt.box_corners((1, 1, 1), (10, 40, 0)), w2c, k, 800, 600) is None  # outside the image


def test_transforms_and_box_corners_agree_with_the_real_carla_client():
    carla = pytest.importorskip("carla")
    rng = np.random.default_rng(0)
    for _ in range(20):
        loc = rng.uniform(-50, 50, 3)
        rot = rng.uniform(-180, 180, 3)
        t = carla.Transform(carla.Location(*map(float, loc)), carla.Rotation(*map(float, rot)))
        m = gt.transform_matrix(loc, rot)
        assert np.allclose(m, np.array(t.get_matrix()), atol=1e-4)
        assert np.allclose(gt.world_to_camera(m), np.array(t.get_inverse_matrix()), atol=1e-3)
        ext = rng.uniform(0.2, 3, 3)
        bl = rng.uniform(-1, 1, 3)
        bb = carla.BoundingBox(carla.Location(*map(float, bl)), carla.Vector3D(*map(float, ext)))
        ours = gt.box_corners(ext, bl, (0, 0, 0), m)
        theirs = np.array([[v.x, v.y, v.z] for v in bb.get_world_vertices(t)])
        assert sorted(map(tuple, np.round(ours, 3))) == sorted(map(tuple, np.round(theirs, 3)))


# -- occlusion, classes, lane mask ---------------------------------------------------------------------

def test_occlusion_keeps_the_visible_part_and_drops_hidden_objects():
    car, sign = cd.CityObjectLabel.Car, cd.CityObjectLabel.TrafficSigns
    tags = np.zeros((100, 200), np.uint8)
    ids = np.zeros((100, 200), np.uint16)
    tags[40:60, 20:80], ids[40:60, 20:80] = car, 7  # car 7, its right part ...
    tags[35:65, 60:120], ids[35:65, 60:120] = car, 8  # ... hidden by car 8 in front
    tags[10:20, 150:160], ids[10:20, 150:160] = sign, 40001
    box7, n7 = gt.visible_box(np.array([20, 40, 90, 60.0]), tags, ids, [car], 7)
    assert box7.tolist() == [20, 40, 60, 60] and n7 == 40 * 20
    assert gt.visible_box(np.array([70, 45, 110, 55.0]), tags, ids, [car], 9) is None  # wholly behind car 8
    assert gt.visible_box(np.array([20, 40, 90, 60.0]), tags, ids, [car], 7, min_pixels=801) is None
    box, _ = gt.visible_box(np.array([148, 8, 162, 22.0]), tags, ids, [sign], None)  # level object: no id
    assert box.tolist() == [150, 10, 160, 20]
    # a bigger sign reaching into the box with more pixels there is not taken for this one
    tags[0:30, 162:200], ids[0:30, 162:200] = sign, 40002
    box, _ = gt.visible_box(np.array([148, 8, 170, 22.0]), tags, ids, [sign], None)
    assert box.tolist() == [150, 10, 160, 20]
    # frame_boxes: actor ids that the instance image does not carry -> matched by their classes' pixels
    k = gt.intrinsics(200, 100, 90.0)
    cube = gt.ObjectBox(gt.box_corners((0.5, 0.5, 0.5), (10, 0, 0)), "car", (car,), 12345)
    t2 = np.zeros((100, 200), np.uint8)
    t2[45:55, 95:105] = car
    i2 = np.full((100, 200), 3, np.uint16)
    boxes, cls = gt.frame_boxes([cube], np.eye(4), k, t2, i2, CLASSES)
    assert boxes.tolist() == [[95, 45, 105, 55]] and cls.tolist() == [0]


def test_carla_classes_map_to_the_project_classes():
    assert gt.project_class("vehicle.tesla.model3", "car") == "car"
    assert gt.project_class("vehicle.carlamotors.carlacola", "truck") == "truck"
    assert gt.project_class("vehicle.mercedes.sprinter", "van") == "truck"
    assert gt.project_class("vehicle.mitsubishi.fusorosa", "bus") == "truck"
    assert gt.project_class("vehicle.yamaha.yzf", "motorcycle") is None
    assert gt.project_class("vehicle.bh.crossbike", "", ["Bicycle"]) is None
    assert gt.project_class("walker.pedestrian.0012") == "pedestrian"
    assert gt.project_class("vehicle.firetruck.actros") == "truck"  # no base_type (before 0.9.14)
    assert gt.project_class("static.prop.trafficcone01") is None


def test_tags_come_from_carla_city_object_label():
    carla = pytest.importorskip("carla")
    tags = cl.class_tags(carla)
    assert tags == {"car": (14,), "truck": (15, 16), "pedestrian": (12,), "traffic_sign": (8,)}

    class Legacy:  # CARLA <= 0.9.13 numbering: RoadLines 6, one Vehicles tag
        class CityObjectLabel:
            NONE, Buildings, Fences, Other, Pedestrians, Poles, RoadLines, Roads = range(8)
            Sidewalks, Vegetation, Vehicles, Walls, TrafficSigns = range(8, 13)

    assert cl.class_tags(Legacy) == {"car": (10,), "truck": (10,), "pedestrian": (4,), "traffic_sign": (12,)}
    truth = cl.TruthSource(Legacy, None, None)
    sem = np.array([[6, 24, 1]], np.uint8)
    assert truth.roadlines == 6 and gt.lane_mask(sem, truth.roadlines).tolist() == [[1, 0, 0]]
    assert cl.TruthSource(carla, None, None).roadlines == 24


# -- ground truth against the scenes the double renders --------------------------------------------------

@pytest.mark.parametrize("seed", [3, 6, 7])
def test_ground_truth_from_3d_boxes_matches_the_rendered_scene(seed):
    """Actor / level 3-D boxes projected and filtered with the instance image give the boxes the
    scene generator computed from the pixels it painted (and the RoadLines mask is its lane mask)."""
    server, port = serve(seed)
    opts = options(server, port)
    with CarlaSession(opts, cd, log=lambda m: None) as s:
        m = cl.FrameMatcher([(c.name, k) for c in opts.cameras for k in ("rgb", "semantic", "instance")])
        for c, kinds in s.sensors.items():
            for k, sensor in kinds.items():
                sensor.listen(m.callback((c, k)))
        truth = cl.TruthSource(cd, s.world, s.ego.id)
        n_boxes = extra = 0
        for _ in range(2):
            data = m.collect(s.tick(), 1.0)
            objects = truth.objects(s.world.get_snapshot())
            for c in opts.cameras:
                dets, mask = truth.camera(objects, data[(c.name, "rgb")], data[(c.name, "instance")],
                                          data[(c.name, "semantic")], c.fov)
                ref = s.world.last_truth[c.name]
                assert np.array_equal(mask, (ref.mask == 1).astype(np.uint8))
                iou = box_iou(ref.boxes, dets.boxes)
                for i in range(len(ref.boxes)):  # every box of the generator is found, exactly, same class
                    j = int(iou[i].argmax())
                    assert iou[i, j] > 0.99 and dets.class_ids[j] == ref.class_ids[i], (c.name, i)
                n_boxes += len(ref.boxes)
                extra += len(dets) - len(ref.boxes)  # objects under the generator's 20 %-visible rule
        assert n_boxes > 5 and 0 <= extra <= 2


# -- matching sensors by frame -------------------------------------------------------------------------

class Data:
    def __init__(self, frame):
        self.frame = frame


def test_frame_matcher_takes_exactly_the_tick_s_frame():
    m = cl.FrameMatcher(["a", "b"], depth=4)
    a, b = m.callback("a"), m.callback("b")
    b(Data(5)), a(Data(4)), a(Data(5))  # out of order, a stale frame 4
    got = m.collect(5, 0.5)
    assert got["a"].frame == 5 and got["b"].frame == 5 and m.stale == 1
    a(Data(6))
    threading.Timer(0.05, lambda: b(Data(6))).start()  # a late sensor is waited for
    assert m.collect(6, 5.0)["b"].frame == 6
    a(Data(7)), b(Data(8))  # b's frame 7 was lost: its queue already holds frame 8
    assert m.collect(7, 5.0) is None and m.missing == 1
    a(Data(8))
    assert {k: v.frame for k, v in m.collect(8, 0.5).items()} == {"a": 8, "b": 8}  # 8 kept for its tick
    assert m.collect(9, 0.05) is None and m.missing == 2  # nothing came
    for f in range(20):  # bounded: a flood keeps only the last `depth`
        a(Data(100 + f))
    assert len(m._queues["a"]) == 4


def test_loop_never_mixes_ticks(tmp_path):
    server, port = serve(3)
    w = server.world
    f0 = w.frame  # the session's set-up tick is f0 + 1; the loop ticks f0 + 2 .. f0 + 5
    w.faults = {"shuffle": True, "stale": True, "late": {(f0 + 3, "front_left", "instance"): 0.1},
                "drop": {(f0 + 4, "front_right", "semantic")}}
    summary = cl.run_loop(options(server, port), EmptyInference, 4, tmp_path / "out", progress=False,
                          carla_module=cd, sensor_timeout=1.5, log=lambda m: None)
    assert (summary.ticks, summary.scored, summary.skipped) == (4, 3, 1) and summary.stale > 0
    frames = {round(t * 1e9): f for f, t in w.stamps.items()}
    seen = set()
    for topic, _, _, msg in bags.messages(summary.results, [f"/carla/hero/{c}/image_raw" for c in
                                                              ("front", "front_left", "front_right")]):
        frame = frames[bags.stamp_ns(msg)]
        cam = topic.split("/")[3]
        assert hashlib.md5(bytes(msg.data)).hexdigest() == w.rendered[(frame, cam)], (frame, cam)
        seen.add(frame)
    assert seen == {f0 + 2, f0 + 3, f0 + 5}  # the tick with the dropped sensor is left out whole


# -- clean-up ------------------------------------------------------------------------------------------

def _assert_restored(server, before_ids):
    w = server.world
    assert w.settings == cd.WorldSettings() and not server.traffic_manager.synchronous
    assert w.weather is cd.WeatherParameters.Default
    assert set(w._actors) == before_ids  # everything spawned is gone, the scene's own actors stay
    assert not any(isinstance(a, cd.Sensor) and a.is_listening for a in w._actors.values())


@pytest.mark.parametrize("fault", ["interrupt", "error", "model", "setup"])
def test_world_is_restored_and_spawned_actors_destroyed(tmp_path, fault):
    server, port = serve(4)
    before = set(server.world._actors)
    opts = options(server, port, vehicles=3, walkers=2, weather="WetNoon")
    make = EmptyInference
    expected: type = RuntimeError
    if fault == "interrupt":
        server.world.faults["interrupt_at"] = server.world.frame + 6
        expected = KeyboardInterrupt
    elif fault == "error":
        server.world.faults["fail_at"] = server.world.frame + 5
    elif fault == "model":
        def make():
            raise ConfigError("detection.model x.onnx: no such file")
        expected = ConfigError
    else:
        opts.weather = "NoSuchWeather"
        expected = ConfigError
    with pytest.raises(expected):
        cl.run_loop(opts, make, 10, tmp_path / "out", progress=False, carla_module=cd, log=lambda m: None)
    if fault != "setup":
        assert len(server.world.destroyed) == 1 + 9 + 3 + 2 * 2  # ego, 3 x 3 cameras, traffic, walkers + AI
    _assert_restored(server, before)


def test_session_spawns_the_rig_in_sync_mode_and_attaches_by_role_name():
    server, port = serve(4)
    opts = options(server, port, delta=0.1, seed=5, vehicles=2, town="Town05")
    with CarlaSession(opts, cd, log=lambda m: None) as s:
        w = server.world
        assert server.loaded == ["Town05"]
        assert w.settings.synchronous_mode and w.settings.fixed_delta_seconds == 0.1
        assert server.traffic_manager.synchronous and server.traffic_manager.seed == 5
        assert s.ego.attributes["role_name"] == "hero" and s.ego.autopilot
        for cam in opts.cameras:
            kinds = s.sensors[cam.name]
            assert [a.type_id for a in kinds.values()] == ["sensor.camera.rgb", "sensor.camera.semantic_segmentation",
                                                           "sensor.camera.instance_segmentation"]
            tfs = {(a._transform.location.y, a._transform.rotation.yaw, a.attributes["fov"]) for a in kinds.values()}
            assert len(tfs) == 1 and all(a.parent is s.ego for a in kinds.values())  # the same transform
        ego_id = s.ego.id
        with CarlaSession(options(server, port, attach=True), cd, log=lambda m: None) as s2:
            assert s2.ego.id == ego_id and ego_id not in [a.id for a in s2.spawned]
        assert ego_id in w._actors  # attached, not destroyed by the second session
    with pytest.raises(ConfigError, match="role_name 'nobody'"):
        with CarlaSession(options(server, port, attach=True, role_name="nobody"), cd, log=lambda m: None):
            pass


def test_ros_mode_enables_the_rgb_cameras_for_carla_s_native_ros2():
    server, port = serve(4, ros=True)
    with CarlaSession(options(server, port, ros=True), cd, log=lambda m: None) as s:
        for name, kinds in s.sensors.items():
            assert kinds["rgb"].ros_enabled and kinds["rgb"].attributes["ros_name"] == name
            assert not kinds["semantic"].ros_enabled and not kinds["instance"].ros_enabled
    server, port = serve(4, ros=False)  # a server / client without ros_name (before 0.9.15)
    before = set(server.world._actors)
    with pytest.raises(ConfigError, match="0.9.15"):
        with CarlaSession(options(server, port, ros=True), cd, log=lambda m: None):
            pass
    _assert_restored(server, before)


# -- the whole command: results bag, report, data set --------------------------------------------------

def test_carla_command_writes_results_bag_and_dataset(tmp_path, capsys):
    from perception_edge.cli.carla import main

    server, port = serve(6)
    sc = server.world.scene
    z, p, fov = sc.cam_height, -math.degrees(sc.pitch), math.degrees(sc.hfov)
    out, ds = tmp_path / "out", tmp_path / "ds"
    rc = main(["--port", str(port), "--frames", "2", "--size", "640x360", "--fov", str(fov), "--no-progress",
               "--cameras", f"front:1.5,0,{z},{p},0,0", f"front_left:1.5,-0.6,{z},{p},-40,0",
               f"front_right:1.5,0.6,{z},{p},40,0", "--detection-model", DET, "--segmentation-model", SEG,
               "--output", str(out), "--record-dataset", str(ds), "--no-video"], carla_module=cd)
    assert rc == 0
    text = capsys.readouterr().out
    assert "ticks 2: 2 scored" in text and "mAP@0.5" in text and "lane IoU" in text
    # the rosbag replay's report of the results bag agrees with the loop's online scores
    import json
    import re

    report = json.loads((out / "report.json").read_text())
    online = float(re.search(r"mAP@0\.5 ([0-9.]+) \(", text).group(1))
    assert report["detection"]["frames"] == 6 and abs(report["detection"]["map50"] - online) < 1e-3
    assert (out / "report.md").is_file() and "/carla/hero/front_left" in report["cameras"]
    # the offline replay takes the CARLA bag as a source unchanged, and gives the same scores
    from perception_edge.bag_report import evaluate_bag
    from perception_edge.offline_replay import run_offline

    again = run_offline(str(out / "results"), tmp_path / "offline", DET, SEG, progress=False)
    rescored = evaluate_bag(str(again), str(out / "results"), tmp_path / "offline", video=False, progress=False)
    assert rescored["detection"]["map50"] == pytest.approx(report["detection"]["map50"], abs=1e-6)
    assert rescored["lane"]["iou"] == pytest.approx(report["lane"]["iou"], abs=1e-6)
    info = bags.info(out / "results")
    per_ns = ["image_raw", "camera_info", "ground_truth/detections", "ground_truth/lane_mask", "detections",
              "lane_mask", "label_info", "replay/input"]
    assert set(info.topics) == {f"/carla/hero/{c}/{t}" for c in ("front", "front_left", "front_right") for t in per_ns}
    assert all(info.counts[t] == (1 if t.endswith("label_info") else 2) for t in info.topics)
    assert info.custom_data["perception_edge.mode"] == "carla" and set(info.custom_data) <= set(bags.CUSTOM_DATA_KEYS)
    assert info.custom_data["perception_edge.detection_model"] == DET
    names: list[str] = []
    truth = bags.ground_truth(out / "results", names)
    assert len(truth) == 6 and sum(len(t.detections) for t in truth.values()) > 10
    # the data set reads back as train-seg / train-det read it, equal to the bag's ground truth
    folder = DatasetFolder(str(ds), need_masks=True, need_labels=True)
    assert len(folder) == 6 and folder.classes == CLASSES
    stamps = {row.split(",")[0]: float(row.split(",")[2]) for row in (ds / "stamps.csv").read_text().splitlines()[1:]}
    for sample in folder:
        cam = sample.name.split("_", 1)[1]
        t = truth[(f"/carla/hero/{cam}", round(stamps[sample.name] * 1e9))]
        assert np.array_equal(sample.mask, t.lane_mask) and sample.mask.max() == 1
        assert len(sample.boxes) == len(t.detections)
        assert np.allclose(sample.boxes, t.detections.boxes, atol=0.01)
        assert [CLASSES[c] for c in sample.class_ids] == [names[c] for c in t.detections.class_ids]


# -- --ros: CARLA's native ROS 2 topics through the real perception container ------------------------------

def test_ros_mode_runs_through_the_perception_container(tmp_path, monkeypatch, capsys):
    """The double publishes the cameras as a --ros2 server does; the real perception_container infers;
    `perception-edge carla --ros` pairs its results with the ticks. They equal the in-process pipeline's."""
    import os
    import subprocess

    pytest.importorskip("rclpy")
    pytest.importorskip("vision_msgs")
    from sensor_msgs.msg import Image as RosImage

    from perception_edge import config
    from perception_edge.cli.carla import main

    monkeypatch.setenv("ROS_DOMAIN_ID", str(1 + (os.getpid() * 7 + 91) % 100))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    server, port = serve(6, ros=True, ros_publish=True)
    cams = rig(server.world.scene)
    topics = [f"/carla/hero/{c.name}/image" for c in cams]
    values = dict(config.defaults(), cameras=topics, input_qos="reliable", debug_image=False)
    # lockstep: the next tick's frames come only after this tick's results, so the cameras are silent
    # between ticks for as long as inference takes; a camera must not leave the batch for that
    values.update({"detection.model": DET, "segmentation.model": SEG, "sync.stale_timeout": 30.0})
    params = config.write_ros_params(tmp_path / "params.yaml", values)
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH", "")] if p]))
    log = open(tmp_path / "container.log", "wb")
    container = subprocess.Popen([sys.executable, "-m", "perception_edge.nodes.container", "--ros-args",
                                  "--params-file", str(params)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for t in topics:
            server.ros_side._pub(RosImage, t)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and container.poll() is None and \
                not all(server.ros_side.subscribers(t) for t in topics):
            time.sleep(0.2)
        assert all(server.ros_side.subscribers(t) for t in topics), (tmp_path / "container.log").read_text()[-2000:]
        out = tmp_path / "out"
        args = ["--port", str(port), "--frames", "2", "--size", "640x360", "--fov", str(cams[0].fov), "--ros",
                "--ros-timeout", "30", "--no-progress", "--output", str(out), "--cameras"]
        args += [f"{c.name}:{c.x},{c.y},{c.z},{c.pitch},{c.yaw},0" for c in cams]
        assert main(args, carla_module=cd) == 0
    finally:
        container.terminate()
        container.wait(20)
        log.close()
        server.ros_side.close()
    text = capsys.readouterr().out
    assert "ticks 2: 2 scored" in text
    # the container's results in the bag are the in-process pipeline's on the same frames
    sections = config.Sections.from_values(values)
    pipe = cl.PipelineInference(sections)
    frames = {}
    results = {}
    for topic, _, _, msg in bags.messages(out / "results", [f"/carla/hero/{c.name}/{k}" for c in cams
                                                             for k in ("image_raw", "detections", "lane_mask")]):
        ns, kind = topic.rsplit("/", 1)
        key = (ns, bags.stamp_ns(msg))
        if kind == "image_raw":
            frames[key] = bags.pixels_from_msg(msg, bags.IMAGE)[0]
        else:
            results.setdefault(key, {})[kind] = msg
    assert len(frames) == 6 and len(results) == 6
    for stamp in sorted({k[1] for k in frames}):
        keys = sorted(k for k in frames if k[1] == stamp)
        mine = pipe([k[0] for k in keys], [frames[k] for k in keys], stamp)  # one batch, as the container's
        for key, d, m in zip(keys, mine.detections, mine.masks):
            theirs = bags.detections_from_msg(results[key]["detections"], list(CLASSES))
            assert len(theirs) == len(d) and np.allclose(theirs.boxes, d.boxes, atol=0.5)
            assert np.mean(bags.mono8_from_msg(results[key]["lane_mask"]) == m) > 0.999


def test_compressed_frames_in_the_results_bag(tmp_path):
    server, port = serve(6)
    summary = cl.run_loop(options(server, port), EmptyInference, 1, tmp_path / "out", progress=False,
                          carla_module=cd, compressed=True, log=lambda m: None)
    info = bags.info(summary.results)
    assert info.topics["/carla/hero/front/image_raw/compressed"] == bags.COMPRESSED
    assert "/carla/hero/front/image_raw" not in info.topics
    (_, msgtype, _, msg), = bags.messages(summary.results, ["/carla/hero/front/image_raw/compressed"])
    from perception_edge.core.image_conversion import to_rgb

    pixels = to_rgb(*bags.pixels_from_msg(msg, msgtype))
    rendered = server.world.last_truth["front"].image
    assert np.abs(pixels.astype(int) - rendered).mean() < 4  # the JPEG of that frame
