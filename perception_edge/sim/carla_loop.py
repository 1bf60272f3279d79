"""The CARLA loop: tick the simulator, collect every camera of that tick, run the pipeline, score
it against the simulator's ground truth, and record it (the library of `perception-edge carla`).

Per tick (synchronous mode, fixed delta; perception_edge.sim.carla_world.CarlaSession):

1. ``world.tick()`` returns the frame number; ``FrameMatcher`` waits for the RGB, semantic and
   instance image of every camera *of that frame* (matched by ``image.frame``; each sensor's queue
   is bounded; older frames are dropped, a newer one means the wanted one is lost). A tick with a
   sensor missing is skipped and counted -- images of different ticks are never mixed.
2. Ground truth per camera: the lane mask from the semantic tag RoadLines (read from
   ``carla.CityObjectLabel``), and 2-D boxes of vehicles, walkers (actor bounding boxes at the
   tick's snapshot) and traffic signs (``world.get_level_bbs(CityObjectLabel.TrafficSigns)``),
   projected with the camera's intrinsics and filtered for occlusion with the instance image
   (perception_edge.sim.ground_truth), in the project's classes (car, truck, pedestrian, traffic_sign).
3. Inference: in-process, all cameras of the tick as one batch per model (pipeline.Detector /
   Segmenter from the one config schema) -- or, with ``--ros``, an external inference callable
   (the cli wires the ROS results subscriber: CARLA publishes the images itself).
4. Online scores (mAP@0.5 of the tick, running mAP, lane IoU) in a tqdm bar; everything into a
   results bag (scored at the end by perception_edge.bag_report, as a rosbag replay is) in the layout of perception_edge.data.bags, per camera namespace
   ``/carla/<role_name>/<camera>`` (the namespace CARLA's native ROS 2 topics give the container's
   outputs): image_raw, camera_info, ground_truth/detections, ground_truth/lane_mask, detections,
   lane_mask, label_info, replay/input. Log time is the frame's simulation stamp for every message
   (as an offline replay), so the replay and report tools read a CARLA run unchanged.
5. Optionally a data set folder (``record_dataset``): frames, lane masks and YOLO labels in the
   format train-seg / train-det read (perception_edge.data.dataset).
"""
from __future__ import annotations

import collections
import csv
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from perception_edge.core.detections import Detections
from perception_edge.core.errors import ConfigError
from perception_edge.core.metrics import DetectionMeter, SegmentationMeter, binary_iou
from perception_edge.data import bags
from perception_edge.data.synthetic import CLASSES
from perception_edge.sim import ground_truth as gt
from perception_edge.sim.carla_world import SENSOR_KINDS, CarlaSession, SessionOptions, camera_matrix_of


# -- matching sensors by frame ---------------------------------------------------------------------

class FrameMatcher:
    """Sensor data matched by frame number. Each sensor's callback (``callback(key)``) appends
    (frame, data) to a queue of at most ``depth`` items (the oldest is dropped when full);
    ``collect(frame)`` returns {key: data} of exactly that frame for every key, or None when a
    sensor's data of that frame does not come within ``timeout`` s or was lost (its queue already
    holds a later frame). Older items are discarded on the way; later ones are kept for their tick."""

    def __init__(self, keys: Sequence[Hashable], depth: int = 4):
        self.keys = list(keys)
        self._queues: dict[Hashable, collections.deque] = {k: collections.deque(maxlen=depth) for k in self.keys}
        self._cond = threading.Condition()
        self.stale = 0  # items of older frames thrown away
        self.missing = 0  # ticks that lacked a sensor

    def callback(self, key: Hashable) -> Callable[[Any], None]:
        q = self._queues[key]

        def put(data: Any) -> None:
            with self._cond:
                q.append((int(data.frame), data))
                self._cond.notify_all()
        return put

    def collect(self, frame: int, timeout: float = 2.0) -> dict[Hashable, Any] | None:
        deadline = time.monotonic() + timeout
        out: dict[Hashable, Any] = {}
        with self._cond:
            while True:
                lost = False
                for k in self.keys:
                    if k in out:
                        continue
                    q = self._queues[k]
                    while q and q[0][0] < frame:
                        q.popleft()
                        self.stale += 1
                    if q and q[0][0] == frame:
                        out[k] = q.popleft()[1]
                    elif q:  # the queue's oldest is a later frame: this frame's data is gone
                        lost = True
                if len(out) == len(self.keys):
                    return out
                remaining = deadline - time.monotonic()
                if lost or remaining <= 0:
                    self.missing += 1
                    return None
                self._cond.wait(remaining)


# -- carla.Image -> arrays -----------------------------------------------------------------------------

def bgra(image) -> np.ndarray:
    """H x W x 4 uint8 view of a carla.Image's raw BGRA data."""
    return np.frombuffer(image.raw_data, np.uint8).reshape(int(image.height), int(image.width), 4)


def rgb(image) -> np.ndarray:
    return np.ascontiguousarray(bgra(image)[:, :, 2::-1])


# -- ground truth of a tick ---------------------------------------------------------------------------

def _tag(carla, name: str) -> int | None:
    v = getattr(carla.CityObjectLabel, name, None)
    return None if v is None else int(v)


def class_tags(carla) -> dict[str, tuple[int, ...]]:
    """Project class -> CARLA semantic tags of its pixels, read from carla.CityObjectLabel (0.9.14+
    has Car / Truck / Bus; older servers one Vehicles tag for all vehicles)."""
    out: dict[str, tuple[int, ...]] = {}
    vehicles = _tag(carla, "Vehicles")
    for cls, names in gt.CLASS_TAG_NAMES.items():
        tags = tuple(t for t in (_tag(carla, n) for n in names) if t is not None)
        if not tags and cls in ("car", "truck") and vehicles is not None:
            tags = (vehicles,)
        if not tags and cls == "pedestrian":
            tags = tuple(t for t in (_tag(carla, "Pedestrian"),) if t is not None)
        out[cls] = tags
    return out


def _tag_names(carla) -> dict[int, str]:
    names: dict[int, str] = {}
    for n in dir(carla.CityObjectLabel):
        v = getattr(carla.CityObjectLabel, n)
        if n[:1].isupper() and isinstance(v, int):
            names.setdefault(int(v), n)
    return names


class TruthSource:
    """The 3-D boxes of a tick (actors from the world snapshot, traffic signs from the level) and
    each camera's ground truth from them."""

    def __init__(self, carla, world, ego_id: int | None, min_pixels: int = 16, max_distance: float = 120.0):
        self.carla, self.world, self.ego_id = carla, world, ego_id
        self.tags = class_tags(carla)
        self.tag_names = _tag_names(carla)
        self.roadlines = int(carla.CityObjectLabel.RoadLines)
        self.min_pixels, self.max_distance = min_pixels, max_distance
        self._classes: dict[int, str | None] = {}

    def _class_of(self, actor) -> str | None:
        c = self._classes.get(actor.id, "?")
        if c == "?":
            tags = [self.tag_names.get(int(t), "") for t in getattr(actor, "semantic_tags", [])]
            c = gt.project_class(actor.type_id, actor.attributes.get("base_type", ""), tags)
            self._classes[actor.id] = c
        return c

    def objects(self, snapshot) -> list[gt.ObjectBox]:
        out = []
        for actor in self.world.get_actors():
            if actor.id == self.ego_id or not (actor.type_id.startswith("vehicle.")
                                               or actor.type_id.startswith("walker.pedestrian")):
                continue
            cls = self._class_of(actor)
            if cls is None:
                continue
            state = snapshot.find(actor.id) if snapshot is not None else None
            tf = state.get_transform() if state is not None else actor.get_transform()
            bb = actor.bounding_box
            corners = gt.box_corners((bb.extent.x, bb.extent.y, bb.extent.z), (bb.location.x, bb.location.y, bb.location.z),
                                     (bb.rotation.pitch, bb.rotation.yaw, bb.rotation.roll), camera_matrix_of(tf))
            out.append(gt.ObjectBox(corners, cls, self.tags[cls], int(actor.id)))
        for bb in self.world.get_level_bbs(self.carla.CityObjectLabel.TrafficSigns):
            corners = gt.box_corners((bb.extent.x, bb.extent.y, bb.extent.z), (bb.location.x, bb.location.y, bb.location.z),
                                     (bb.rotation.pitch, bb.rotation.yaw, bb.rotation.roll))
            out.append(gt.ObjectBox(corners, "traffic_sign", self.tags["traffic_sign"], None))
        return out

    def camera(self, objects: Sequence[gt.ObjectBox], rgb_image, instance_image, semantic_image, fov: float):
        """(Detections, lane mask) of one camera frame."""
        sem_tags = bgra(semantic_image)[:, :, 2]
        inst_tags, ids = gt.decode_instance(bgra(instance_image))
        k = gt.intrinsics(int(rgb_image.width), int(rgb_image.height), fov)
        boxes, cls = gt.frame_boxes(objects, camera_matrix_of(rgb_image.transform), k, inst_tags, ids, CLASSES,
                                    self.min_pixels, self.max_distance)
        dets = Detections(boxes, np.ones(len(boxes), np.float32), cls, list(CLASSES))
        return dets, gt.lane_mask(sem_tags, self.roadlines)


# -- inference -----------------------------------------------------------------------------------------

@dataclass
class Outputs:
    detections: list[Detections | None]
    masks: list[np.ndarray | None]
    class_names: list[str] = field(default_factory=list)
    threshold: float = 0.0
    ms: float = 0.0  # wall time of the call


Inference = Callable[[Sequence[str], Sequence[np.ndarray], int], Outputs]  # (cameras, RGB frames, stamp ns)


class PipelineInference:
    """The container's pipeline in this process: each model once per tick on all cameras (a batch)."""

    def __init__(self, cfg):
        from perception_edge.pipeline import Detector, Segmenter

        self.detector = Detector.from_config(cfg, 2) if cfg.detection.model else None
        self.segmenter = Segmenter.from_config(cfg, 2) if cfg.segmentation.model else None
        if self.detector is None and self.segmenter is None:
            raise ConfigError("give a detection model, a segmentation model or both")

    def __call__(self, cameras: Sequence[str], frames: Sequence[np.ndarray], stamp: int) -> Outputs:
        t0 = time.perf_counter()
        images = [(f, "rgb") for f in frames]
        dets = list(self.detector(images)) if self.detector is not None else [None] * len(frames)
        masks = list(self.segmenter(images)) if self.segmenter is not None else [None] * len(frames)
        d = self.detector
        return Outputs(dets, masks, list(d.class_names) if d else [], d.conf_threshold if d else 0.0,
                       (time.perf_counter() - t0) * 1e3)


# -- the loop ------------------------------------------------------------------------------------------

@dataclass
class LoopSummary:
    results: Path | None
    ticks: int = 0
    scored: int = 0  # ticks with every sensor (run and recorded)
    skipped: int = 0  # ticks with a sensor missing
    stale: int = 0
    map50: float = float("nan")
    lane_iou: float = float("nan")
    per_class_ap: dict[str, float] = field(default_factory=dict)
    gt_boxes: int = 0
    inference_ms: list[float] = field(default_factory=list)
    truth_ms: list[float] = field(default_factory=list)  # ground truth of all cameras
    write_ms: list[float] = field(default_factory=list)  # results bag (and data set)
    tick_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    dataset_frames: int = 0

    def lines(self) -> list[str]:
        med = (lambda v: f"{float(np.median(v)):.1f}" if v else "-")
        per = ", ".join(f"{k} {v:.3f}" for k, v in self.per_class_ap.items())
        return [f"ticks {self.ticks}: {self.scored} scored, {self.skipped} skipped (a sensor missing), "
                f"{self.stale} stale sensor images dropped",
                f"mAP@0.5 {self.map50:.3f} ({per or 'no ground truth'}; {self.gt_boxes} ground-truth boxes), "
                f"lane IoU {self.lane_iou:.3f}",
                f"median per tick: inference {med(self.inference_ms)} ms (all cameras), ground truth "
                f"{med(self.truth_ms)} ms, writing {med(self.write_ms)} ms, whole tick (simulator step "
                f"included) {med(self.tick_ms)} ms; {self.seconds:.1f} s in all"]


def _class_ids(d: Detections) -> np.ndarray:
    """Predicted class ids in the project's CLASSES (-1: a class the project does not score)."""
    index = {n: i for i, n in enumerate(CLASSES)}
    return np.array([index.get(n, -1) for n in d.names()], np.int64)


def namespace(role_name: str, camera: str) -> str:
    return f"/carla/{role_name}/{camera}"


class DatasetRecorder:
    """Frames + lane masks + YOLO labels into a data set folder (data.dataset layout)."""

    def __init__(self, root: str | Path):
        from perception_edge.data.synthetic import SEG_CLASSES

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
        (self.root / "seg_classes.txt").write_text("\n".join(SEG_CLASSES[:2]) + "\n")
        self._fh = open(self.root / "stamps.csv", "w", newline="")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(["name", "camera", "stamp"])
        self.count = 0

    def add(self, frame: int, camera: str, stamp_ns: int, image: np.ndarray, mask: np.ndarray, truth: Detections) -> None:
        from perception_edge.data.dataset import write_sample

        name = f"{frame:08d}_{camera}"
        write_sample(str(self.root), name, image, mask, truth.boxes, truth.class_ids, image_ext="png")
        self._csv.writerow([name, camera, f"{stamp_ns / 1e9:.6f}"])
        self.count += 1

    def close(self) -> None:
        self._fh.close()


def run_loop(options: SessionOptions, make_inference: Callable[[], Inference], frames: int, output: str | Path,
             record_dataset: str | None = None, progress: bool = True, carla_module: Any = None,
             sensor_timeout: float = 5.0, storage: str = "mcap", warmup_ticks: int = 0, compressed: bool = False,
             custom_data: dict[str, str] | None = None,
             log: Callable[[str], None] = lambda m: print(m, flush=True)) -> LoopSummary:
    """`frames` synchronous ticks of CARLA through `infer`; the results bag goes to OUTPUT/results.

    make_inference: returns the Inference; called once the world is set up, so that the world is
    restored also when loading the models fails."""
    if frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {frames}")
    out_dir = Path(output)
    results = out_dir / bags.RESULTS_DIR
    if results.exists():
        raise ConfigError(f"{results} exists: give a new --output folder")
    summary = LoopSummary(results)
    det_meter = DetectionMeter(len(CLASSES), 0.5, class_names=CLASSES)
    map_all = "-"  # progress text: the whole run's mAP, every 10 ticks
    seg_meter = SegmentationMeter(2)
    cams = [c.name for c in options.cameras]
    fov = {c.name: c.fov for c in options.cameras}
    t_start = time.perf_counter()
    with CarlaSession(options, carla_module, log) as session:
        carla = session.carla
        model = make_inference()
        matcher = FrameMatcher([(c, k) for c in cams for k in SENSOR_KINDS])
        for c, kinds in session.sensors.items():
            for kind, sensor in kinds.items():
                sensor.listen(matcher.callback((c, kind)))
        truth = TruthSource(carla, session.world, getattr(session.ego, "id", None))
        for _ in range(warmup_ticks):
            session.tick()
        recorder = DatasetRecorder(record_dataset) if record_dataset else None
        custom = {"perception_edge.kind": "results", "perception_edge.mode": "carla",
                  "perception_edge.cameras": json.dumps([bags.image_topic(namespace(options.role_name, c), compressed)
                                                         for c in cams]),
                  "perception_edge.carla": json.dumps({"host": options.host, "port": options.port,
                                                       "town": options.town, "delta": options.delta,
                                                       "seed": options.seed, "weather": options.weather}),
                  **(custom_data or {})}
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=frames, desc="carla", unit="tick")
        labelled: set[str] = set()
        try:
            with bags.BagWriter(results, storage, custom_data=custom) as bag:
                for _ in range(frames):
                    t0 = time.perf_counter()
                    frame = session.tick()
                    summary.ticks += 1
                    data = matcher.collect(frame, sensor_timeout)
                    summary.stale = matcher.stale
                    if data is None:
                        summary.skipped += 1
                        if bar is not None:
                            bar.update(1)
                        continue
                    snapshot = session.world.get_snapshot()
                    if snapshot is not None and int(snapshot.frame) != frame:
                        snapshot = None  # actors' own (latest) transforms instead
                    t_truth = time.perf_counter()
                    objects = truth.objects(snapshot)
                    stamp = int(round(float(data[(cams[0], "rgb")].timestamp) * 1e9))
                    images = [rgb(data[(c, "rgb")]) for c in cams]
                    truths = [truth.camera(objects, data[(c, "rgb")], data[(c, "instance")], data[(c, "semantic")],
                                           fov[c]) for c in cams]
                    summary.truth_ms.append((time.perf_counter() - t_truth) * 1e3)
                    res = model(cams, images, stamp)
                    summary.inference_ms.append(res.ms)
                    t_write = time.perf_counter()
                    tick_meter = DetectionMeter(len(CLASSES), 0.5, class_names=CLASSES)
                    ious = []
                    for c, image, (tdets, tmask), d, m in zip(cams, images, truths, res.detections, res.masks):
                        ns = namespace(options.role_name, c)
                        fid = f"{options.role_name}/{c}"
                        h, w = image.shape[:2]
                        kk = gt.intrinsics(w, h, fov[c])
                        if compressed:
                            bag.write(bags.image_topic(ns, True), bags.COMPRESSED, bags.compressed_msg(image, stamp, fid),
                                      stamp)
                        else:
                            bag.write(bags.image_topic(ns), bags.IMAGE, bags.image_msg(image, stamp, fid, "rgb8"), stamp)
                        bag.write(bags.camera_info_topic(ns), bags.CAMERA_INFO,
                                  bags.camera_info_msg(w, h, kk[0, 0], kk[1, 1], kk[0, 2], kk[1, 2], stamp, fid), stamp)
                        bag.write(bags.topic(ns, bags.GT_DETECTIONS), bags.DETECTIONS,
                                  bags.detections_msg(tdets, stamp, fid), stamp)
                        bag.write(bags.topic(ns, bags.GT_LANE_MASK), bags.IMAGE,
                                  bags.image_msg(tmask, stamp, fid, "mono8"), stamp)
                        bag.write(bags.topic(ns, bags.INPUT_HEADER), bags.HEADER, bags.header(stamp, fid), stamp)
                        summary.gt_boxes += len(tdets)
                        if d is not None:
                            if ns not in labelled:
                                labelled.add(ns)
                                bag.write(bags.topic(ns, "label_info"), bags.LABEL_INFO,
                                          bags.label_info_msg(res.class_names, res.threshold, stamp), stamp,
                                          qos="latched")
                            bag.write(bags.topic(ns, "detections"), bags.DETECTIONS,
                                      bags.detections_msg(d, stamp, fid), stamp)
                            ids = _class_ids(d)
                            keep = ids >= 0
                            for meter in (det_meter, tick_meter):
                                meter.add(d.boxes[keep], d.scores[keep], ids[keep], tdets.boxes, tdets.class_ids)
                        if m is not None:
                            mask = np.asarray(m, np.uint8)
                            bag.write(bags.topic(ns, "lane_mask"), bags.IMAGE, bags.image_msg(mask, stamp, fid, "mono8"),
                                      stamp)
                            lane = (mask == 1).astype(np.uint8)
                            seg_meter.add(lane, tmask)
                            ious.append(binary_iou(lane, tmask))
                        if recorder is not None:
                            recorder.add(frame, c, stamp, image, tmask, tdets)
                    summary.scored += 1
                    summary.write_ms.append((time.perf_counter() - t_write) * 1e3)
                    summary.tick_ms.append((time.perf_counter() - t0) * 1e3)
                    if bar is not None:
                        post = {}
                        if any(d is not None for d in res.detections):
                            post["mAP"] = f"{tick_meter.result().map:.2f}"
                            if summary.scored % 10 == 1 or map_all == "-":  # re-sorts all of the run's detections
                                map_all = f"{det_meter.result().map:.2f}"
                            post["mAP_all"] = map_all
                        if ious:
                            post["laneIoU"] = f"{float(np.mean(ious)):.2f}"
                        bar.set_postfix(post, refresh=False)
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            close = getattr(model, "close", None)
            if close is not None:
                close()
            if recorder is not None:
                recorder.close()
                summary.dataset_frames = recorder.count
    r = det_meter.result()
    summary.map50 = r.map
    summary.per_class_ap = {n: float(a) for n, a in zip(CLASSES, r.ap) if not np.isnan(a)}
    summary.lane_iou = float(seg_meter.iou()[1]) if seg_meter.confusion.sum() else float("nan")
    summary.seconds = time.perf_counter() - t_start
    return summary

