"""Simulation loops (ROS-free): CARLA in lockstep with the pipeline, ground truth from the simulator.

- ``ground_truth``: pinhole intrinsics, UE4 transforms, 3-D box projection, occlusion filtering
  with the instance image, CARLA -> project classes, lane mask from the RoadLines tag (numpy only).
- ``carla_world``: ``CarlaSession``, the world set up for a run (synchronous mode, ego, cameras,
  traffic) and restored afterwards.
- ``carla_loop``: tick -> sensors of that frame -> pipeline -> scores -> results bag / data set.
"""

from __future__ import annotations
