"""Offline replay of a rosbag: the container's pipeline without middleware, results into a bag
(the library of `perception-edge replay BAG --offline`).

The bag's camera image topics (sensor_msgs/Image and CompressedImage, image_transport's
"<enc>; jpeg compressed <enc>" formats included) are read in log-time order, one message at a time,
and grouped into time steps as the fusion node batches them: frames of different cameras whose
header stamps lie within `sync.slop` of the step's first frame form one step (a camera seen again,
or a stamp past the slop, closes the step; a step may therefore hold fewer cameras, and nothing is
dropped; a message that cannot be decoded, or is larger than limits.max_image_pixels, is reported
in one line and recorded as an input without outputs, as the container counts a bad message and
goes on). Each step runs through the same Detector and Segmenter (pipeline.from_config with the one
config schema), once per model for all cameras of the step (a batch), and is written to a results
bag (perception_edge.data.bags layout) with the topics the container publishes:

    <ns>/detections   vision_msgs/Detection2DArray   header = the input frame's (stamp, frame_id)
    <ns>/lane_mask    sensor_msgs/Image mono8        class id per pixel, source size, same header
    <ns>/label_info   vision_msgs/LabelInfo          latched, once per camera (threshold in use)
    <ns>/replay/input std_msgs/Header                the input frame's header, one per frame
    <ns>/instance_mask sensor_msgs/Image mono16      instance-segmentation detectors only

Log time is the input's header stamp for every message (offline there is no latency to keep), so
reruns are bit-identical. metadata.yaml's custom_data names the models, the configuration and the
source bag (bag_report.evaluate_bag reads ground truth and frames from it). Memory holds one step.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from perception_edge import config
from perception_edge.core.errors import ConfigError
from perception_edge.data import bags



@dataclass
class InputFrame:
    topic: str
    namespace: str
    stamp: int  # header stamp, ns
    frame_id: str
    pixels: np.ndarray | None  # None: the message could not be decoded (counted, no outputs)
    order: str  # "rgb" | "bgr"


@dataclass
class OfflineSummary:
    results: Path
    steps: int = 0
    frames: int = 0
    seconds: float = 0.0  # reading, inference and writing (models loaded before)
    bad_frames: int = 0  # messages that could not be decoded: recorded as inputs without outputs
    per_topic: dict[str, int] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def camera_topics(bag: bags.BagInfo, topics: Sequence[str] | None = None) -> list[str]:
    """The image topics to replay: `topics` (each checked: in the bag, an image type), else every
    camera image topic of the bag (ground-truth and output masks left out)."""
    found = bag.image_topics()
    if topics:
        cams = ", ".join(f"{t} ({bag.topics[t].rsplit('/', 1)[-1]})" for t in found) or "none"
        for t in topics:
            if t not in bag.topics:
                raise ConfigError(f"{bag.path}: no topic {t}; camera image topics: {cams}")
            if bag.topics[t] not in bags.IMAGE_TYPES:
                raise ConfigError(f"{bag.path}: {t} is a {bag.topics[t]}, not a sensor_msgs/msg/Image or "
                                  f"CompressedImage; camera image topics: {cams}")
        return list(dict.fromkeys(topics))
    if not found:
        raise ConfigError(f"{bag.path}: no camera image topic (sensor_msgs/Image or CompressedImage); "
                          f"topics: {bag.listing()}")
    return found


def steps(bag: str | Path, topics: Sequence[str], slop_s: float = 0.05, max_pixels: int = 1 << 24,
          on_bad=None) -> Iterator[list[InputFrame]]:
    """Time steps of the bag's camera frames, streamed (data.bags.camera_steps: at most one frame
    per topic, in `topics` order, stamps within slop_s of the step's first frame), decoded as the
    nodes decode them (limits.max_image_pixels checked first). A frame that cannot be decoded keeps
    its place with pixels None, and on_bad(one-line reason) is called, as the container counts a
    bad message and goes on."""
    for step in bags.camera_steps(bag, topics, slop_s):
        frames = []
        for topic_name, msgtype, _, msg in step:
            stamp = bags.stamp_ns(msg)
            try:
                pixels, order = bags.pixels_from_msg(msg, msgtype, max_pixels)
            except ValueError as e:  # InputError / ConfigError from the conversion
                pixels, order = None, ""
                if on_bad is not None:
                    on_bad(f"{topic_name} at stamp {stamp}: {e}")
            frames.append(InputFrame(topic_name, bags.namespace_of(topic_name), stamp, msg.header.frame_id,
                                     pixels, order))
        yield frames


def sections(topics: Sequence[str], detection_model: str, segmentation_model: str,
             config_file: str | None = None) -> config.Sections:
    """The one configuration schema: schema defaults < config file < the models and cameras given
    (model paths resolved as the nodes resolve them)."""
    from perception_edge.nodes.parameters import resolve_path

    values = config.load_file(config_file) if config_file else config.defaults()
    values.update({"cameras": list(topics), "detection.model": detection_model or "",
                   "segmentation.model": segmentation_model or ""})
    values["detection.model"] = resolve_path(values["detection.model"], "detection model", ConfigError)
    values["segmentation.model"] = resolve_path(values["segmentation.model"], "segmentation model", ConfigError)
    if values["detection.labels"]:
        values["detection.labels"] = resolve_path(values["detection.labels"], "labels", ConfigError)
    if not values["detection.model"] and not values["segmentation.model"]:
        raise ConfigError("offline replay needs a detection model, a segmentation model or both")
    return config.Sections.from_values(values)


def instance_mask_msg(mask: np.ndarray, frame: InputFrame):
    """(H, W) uint16 instance ids (i + 1 = detection i) -> mono16 Image, little-endian (as
    nodes.messages.instance_mask_to_msg)."""
    h, w = mask.shape[:2]
    data = np.ascontiguousarray(mask, dtype="<u2").view(np.uint8).reshape(-1)
    return bags.typestore().types[bags.IMAGE](header=bags.header(frame.stamp, frame.frame_id), height=int(h),
                                              width=int(w), encoding="mono16", is_bigendian=0, step=int(2 * w),
                                              data=data)


class OfflinePipeline:
    """The container's models on one step at a time, results written to a BagWriter."""

    def __init__(self, cfg: config.Sections):
        from perception_edge.pipeline import Detector, Segmenter

        self.cfg = cfg
        self.detector = Detector.from_config(cfg) if cfg.detection.model else None
        self.segmenter = Segmenter.from_config(cfg) if cfg.segmentation.model else None
        self._labelled: set[str] = set()

    def process(self, frames: list[InputFrame], out: bags.BagWriter) -> None:
        for f in frames:  # every input is recorded, also one that could not be decoded (a dropped frame)
            out.write(bags.topic(f.namespace, bags.INPUT_HEADER), bags.HEADER, bags.header(f.stamp, f.frame_id),
                      f.stamp)
        frames = [f for f in frames if f.pixels is not None]
        if not frames:
            return
        images = [(f.pixels, f.order) for f in frames]
        dets = self.detector(images) if self.detector is not None else [None] * len(frames)
        masks = self.segmenter(images) if self.segmenter is not None else [None] * len(frames)
        for f, d, m in zip(frames, dets, masks):
            ns = f.namespace
            if d is not None:
                if ns not in self._labelled:
                    self._labelled.add(ns)
                    out.write(bags.topic(ns, "label_info"), bags.LABEL_INFO,
                              bags.label_info_msg(self.detector.class_names, self.detector.conf_threshold, f.stamp),
                              f.stamp, qos="latched")
                out.write(bags.topic(ns, "detections"), bags.DETECTIONS, bags.detections_msg(d, f.stamp, f.frame_id),
                          f.stamp)
                if d.instance_mask is not None:  # an instance-segmentation (-seg) detector, as the node publishes it
                    out.write(bags.topic(ns, "instance_mask"), bags.IMAGE, instance_mask_msg(d.instance_mask, f),
                              f.stamp)
            if m is not None:
                out.write(bags.topic(ns, "lane_mask"), bags.IMAGE,
                          bags.image_msg(np.asarray(m, np.uint8), f.stamp, f.frame_id, "mono8"), f.stamp)


def replay_offline(bag: str | Path, output: str | Path, detection_model: str, segmentation_model: str,
                   topics: Sequence[str] | None = None, config_file: str | None = None, progress: bool = True,
                   storage: str = "mcap") -> OfflineSummary:
    """run_offline with the figures of the run (frames, steps, seconds)."""
    source = bags.info(bag)
    cams = camera_topics(source, topics)
    cfg = sections(cams, detection_model, segmentation_model, config_file)
    pipeline = OfflinePipeline(cfg)
    results = Path(output) / bags.RESULTS_DIR
    custom = {"perception_edge.kind": "results", "perception_edge.mode": "offline",
              "perception_edge.source_bag": str(Path(bag).resolve()),
              "perception_edge.cameras": json.dumps(cams),
              "perception_edge.detection_model": cfg.detection.model,
              "perception_edge.segmentation_model": cfg.segmentation.model,
              "perception_edge.config": json.dumps(cfg.values(), sort_keys=True)}
    summary = OfflineSummary(results)

    def on_bad(reason: str) -> None:
        summary.bad_frames += 1
        print(f"offline replay: skipped a frame: {reason}", file=sys.stderr)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(source.counts.get(t, 0) for t in cams), desc="offline replay", unit="frame")
    t0 = time.perf_counter()
    try:
        with bags.BagWriter(results, storage, custom_data=custom) as out:
            for step in steps(bag, cams, cfg.sync.slop, cfg.limits.max_image_pixels, on_bad):
                pipeline.process(step, out)
                summary.steps += 1
                summary.frames += len(step)
                for f in step:
                    summary.per_topic[f.topic] = summary.per_topic.get(f.topic, 0) + 1
                if bar is not None:
                    bar.update(len(step))
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def run_offline(bag: str, output: str | Path, detection_model: str, segmentation_model: str,
                topics: list[str] | None = None, config_file: str | None = None, progress: bool = True) -> Path:
    """Replay `bag` through the models without middleware; returns the results bag (OUTPUT/results)."""
    return replay_offline(bag, output, detection_model, segmentation_model, topics, config_file, progress).results


def offline_fps(bag: str | Path, detection_model: str, segmentation_model: str, topics: Sequence[str] | None = None,
                config_file: str | None = None, output: str | Path | None = None, progress: bool = False) -> float:
    """Offline replay throughput in frames/s (models loaded before the clock starts; reading,
    decoding, inference and writing the results bag counted). Writes to a temporary directory
    unless `output` is given."""
    import tempfile

    if output is not None:
        return replay_offline(bag, output, detection_model, segmentation_model, topics, config_file,
                              progress).frames_per_second
    with tempfile.TemporaryDirectory(prefix="perception_edge_bench_") as tmp:
        return replay_offline(bag, tmp, detection_model, segmentation_model, topics, config_file,
                              progress).frames_per_second
