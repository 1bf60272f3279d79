# Two commands are the contract (README): `make demo` and `make test`. Both create or refresh .venv/
# (Python packages from PyPI, the ROS 2 wheels, vision_msgs built from its .msg files), and make it a
# ROS 2 prefix like a colcon install (ament index entry, share/perception_edge, lib/perception_edge:
# tools/install_ros_prefix.py), so that `ros2 launch perception_edge ...` finds the package.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.perception_edge-installed
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: venv demo test test-gpu bench bench-ros bench-reliability bench-sources lint clean

venv: $(STAMP)

$(STAMP): setup.py requirements.txt requirements-ros.txt requirements-rosidl.txt tools/build_vision_msgs.sh \
		tools/install_ros_prefix.py requirements-gst.txt tools/install_gstreamer.sh
	@echo "== setting up $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-ros.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	bash tools/build_vision_msgs.sh $(VENV)
	$(PY) tools/install_ros_prefix.py
	bash tools/install_gstreamer.sh $(VENV)
	@touch $@

demo: venv
	$(PY) -m perception_edge.cli.demo

test: venv
	$(PY) -m pytest -q -ra test

test-gpu: venv
	$(PY) -m pytest -q -ra -m gpu test/gpu

bench: venv
	$(PY) -m perception_edge.cli bench

bench-ros: venv
	$(PY) -m perception_edge.cli bench-ros

# camera sources in the container (in-process) against the same frames over DDS and the raw backend
bench-sources: venv
	$(PY) -m perception_edge.cli bench-sources

# rosbag replay: offline frames/s, live end-to-end latency p50/p99 at the bag's rate (3 x 1280x720, 1 Hz)
bench-replay: venv
	$(PY) -m perception_edge.cli bench-replay

# overload (4 cameras x 30 Hz, 60 s), steady (3 x 10 Hz, 60 s) and soak (2 x 10 Hz, 10 min): ~15 min
bench-reliability: venv
	$(PY) -m perception_edge.cli bench-reliability overload steady soak

clean:
	rm -rf $(VENV) build demo_output .pytest_cache
