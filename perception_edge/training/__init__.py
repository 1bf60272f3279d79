"""Training: one loop (loop.Trainer: progress, validation, checkpoints, ONNX export) and its two tasks,
detection (YOLOv5) and segmentation (U-Net, DDRNet). Needs torch; the runtime never imports this."""
