"""Training data: synthetic driving scenes, data set folders (YOLO labels + lane masks), CARLA captures."""
