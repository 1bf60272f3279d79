"""A straightforward transcription of the official YOLOv5 letterbox, non_max_suppression and
scale_boxes (utils/augmentations.py, utils/general.py), in numpy with a Python NMS loop: the
reference the package's vectorized pipeline is compared against."""
from __future__ import annotations

import cv2
import numpy as np


def letterbox(im, new_shape=(640, 640), color=(114, 114, 114)):
    shape = im.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = (new_shape[1] - new_unpad[0]) / 2, (new_shape[0] - new_unpad[1]) / 2
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    return cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)


def xywh2xyxy(x):
    y = np.copy(x)
    y[:, 0] = x[:, 0] - x[:, 2] / 2
    y[:, 1] = x[:, 1] - x[:, 3] / 2
    y[:, 2] = x[:, 0] + x[:, 2] / 2
    y[:, 3] = x[:, 1] + x[:, 3] / 2
    return y


def box_iou(a, b):
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    return inter / (area_a + area_b - inter)


def greedy_nms(boxes, scores, iou_thres):
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            ious = box_iou(boxes[i], boxes[order])
            order = [j for j, v in zip(order, ious) if v <= iou_thres]
    return np.array(keep, np.int64)


def non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.45, agnostic=False, max_det=300):
    max_wh, max_nms = 7680, 30000
    output = []
    for x in prediction:
        x = x[x[:, 4] > conf_thres].astype(np.float64)
        if not len(x):
            output.append(np.zeros((0, 6)))
            continue
        x[:, 5:] *= x[:, 4:5]
        box = xywh2xyxy(x[:, :4])
        j = x[:, 5:].argmax(1)
        conf = x[np.arange(len(x)), 5 + j]
        x = np.concatenate([box, conf[:, None], j[:, None].astype(np.float64)], 1)[conf > conf_thres]
        x = x[np.argsort(-x[:, 4], kind="stable")[:max_nms]]
        c = x[:, 5:6] * (0 if agnostic else max_wh)
        i = greedy_nms(x[:, :4] + c, x[:, 4], iou_thres)[:max_det]
        output.append(x[i])
    return output


def scale_boxes(img1_shape, boxes, img0_shape):
    gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
    pad = (img1_shape[1] - img0_shape[1] * gain) / 2, (img1_shape[0] - img0_shape[0] * gain) / 2
    boxes = boxes.copy()
    boxes[:, [0, 2]] -= pad[0]
    boxes[:, [1, 3]] -= pad[1]
    boxes[:, :4] /= gain
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, img0_shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, img0_shape[0])
    return boxes


def raw_prediction(session, bgr, size=640):
    """The model's raw head output for one BGR image, preprocessed as the official detect.py does."""
    im = letterbox(bgr, (size, size))[:, :, ::-1].transpose(2, 0, 1)
    im = np.ascontiguousarray(im, dtype=np.float32)[None] / 255
    return session.run(None, {session.get_inputs()[0].name: im})[0]


def detect(session, bgr, conf_thres, iou_thres, agnostic=False, max_det=300, size=640):
    """The official detect.py path for one BGR image through an ONNX Runtime session."""
    pred = raw_prediction(session, bgr, size)
    det = non_max_suppression(pred, conf_thres, iou_thres, agnostic, max_det)[0]
    det[:, :4] = scale_boxes((size, size), det[:, :4], bgr.shape)
    return det, pred
