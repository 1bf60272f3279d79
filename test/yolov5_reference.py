"""A straightforward transcription of the official YOLOv5 letterbox, non_max_suppression and
scale_boxes (utils/augmentations.py, utils/general.py), in numpy with a Python NMS loop, and of
the instance-segmentation mask decoding (utils/segment/general.py process_mask_native, crop_mask)
with torch: the reference the package's vectorized pipeline is compared against."""
from __future__ import annotations

import cv2
import numpy as np


def letterbox(im, new_shape=(640, 640), color=(114, 114, 114), auto=False, stride=32):
    shape = im.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:  # minimum rectangle (detect.py with a PyTorch model: rectangular inference)
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw, dh = dw / 2, dh / 2
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


def non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.45, agnostic=False, max_det=300, nm=0):
    max_wh, max_nms = 7680, 30000
    mi = prediction.shape[2] - nm  # mask start index
    output = []
    for x in prediction:
        x = x[x[:, 4] > conf_thres].astype(np.float64)
        if not len(x):
            output.append(np.zeros((0, 6 + nm)))
            continue
        x[:, 5:mi] *= x[:, 4:5]
        box = xywh2xyxy(x[:, :4])
        mask = x[:, mi:]
        j = x[:, 5:mi].argmax(1)
        conf = x[np.arange(len(x)), 5 + j]
        x = np.concatenate([box, conf[:, None], j[:, None].astype(np.float64), mask], 1)[conf > conf_thres]
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


def crop_mask(masks, boxes):
    """utils/segment/general.py crop_mask: zero outside each box (pixel index x1 <= c < x2)."""
    import torch

    n, h, w = masks.shape
    x1, y1, x2, y2 = torch.chunk(boxes[:, :, None], 4, 1)
    r = torch.arange(w, dtype=x1.dtype)[None, None, :]
    c = torch.arange(h, dtype=x1.dtype)[None, :, None]
    return masks * ((r >= x1) * (r < x2) * (c >= y1) * (c < y2))


def process_mask_native(protos, masks_in, bboxes, shape):
    """utils/segment/general.py process_mask_native: masks at the source shape (h, w), boxes in
    source pixels. Returns (n, h, w) bool."""
    import torch
    import torch.nn.functional as F

    protos, masks_in, bboxes = (torch.as_tensor(np.asarray(a), dtype=torch.float32)
                                for a in (protos, masks_in, bboxes))
    c, mh, mw = protos.shape
    masks = (masks_in @ protos.float().view(c, -1)).sigmoid().view(-1, mh, mw)
    gain = min(mh / shape[0], mw / shape[1])
    pad = (mw - shape[1] * gain) / 2, (mh - shape[0] * gain) / 2
    top, left = int(pad[1]), int(pad[0])
    bottom, right = int(mh - pad[1]), int(mw - pad[0])
    masks = masks[:, top:bottom, left:right]
    masks = F.interpolate(masks[None], shape, mode="bilinear", align_corners=False)[0]
    masks = crop_mask(masks, bboxes)
    return masks.gt_(0.5).numpy().astype(bool)


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
