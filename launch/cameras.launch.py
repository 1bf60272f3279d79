"""Cameras read in the perception process: sources + detection/segmentation in one perception_container.

    ros2 launch perception_edge cameras.launch.py sources:="['rtsp://192.168.1.20/stream', 'csi://0']" \
        source_names:="['cam_front', 'cam_left']"
    ros2 launch perception_edge cameras.launch.py sources:="['file:///data/drive.mp4']" loop:=true

Each source (file://, rtsp://, v4l2:///dev/videoN, csi://N, gst:<pipeline ending in an appsink>,
opencv:..., an image folder) is read by GStreamer inside the container (Jetson: hardware decoding)
and handed to the models in-process, without a DDS hop; <name>/image_raw and <name>/camera_info are
published while someone subscribes (publish_always:=true: always, e.g. for recording). Results go
to <name>/detections, <name>/lane_mask ... as with topic cameras. The `cameras` topics of the params
file are not subscribed: the container's cameras are the sources (cameras:="[...]" adds topics).
Per-source frame ids, rates, sizes and calibration files: source.* in config_file.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("perception_edge")
    sources = LaunchConfiguration("sources")
    source_names = LaunchConfiguration("source_names")
    cameras = LaunchConfiguration("cameras")
    # the sources' image topics, unless topic cameras are given: nothing else is subscribed
    source_topics = PythonExpression([
        "(", cameras, ") or ['/' + n.strip('/') + '/image_raw' for n in ((", source_names,
        ") or ['cam%d' % i for i in range(len(", sources, "))])]"])
    parameters = [
        LaunchConfiguration("config_file"),
        {
            "sources": sources,
            "source_names": source_names,
            "cameras": source_topics,
            "source.loop": ParameterValue(LaunchConfiguration("loop"), value_type=bool),
            "source.publish_always": ParameterValue(LaunchConfiguration("publish_always"), value_type=bool),
            "detection.model": ParameterValue(LaunchConfiguration("detection_model"), value_type=str),
            "segmentation.model": ParameterValue(LaunchConfiguration("segmentation_model"), value_type=str),
            "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
            "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
        },
    ]
    return LaunchDescription([
        DeclareLaunchArgument("sources", default_value="['v4l2:///dev/video0']",
                              description="Source URIs as a YAML list (file://, rtsp://, v4l2://, csi://, gst:...)"),
        DeclareLaunchArgument("source_names", default_value="['cam_front']",
                              description="Camera namespace of each source as a YAML list ([]: cam0, cam1 ...)"),
        DeclareLaunchArgument("cameras", default_value="[]",
                              description="Image topics to subscribe next to the sources ([]: none)"),
        DeclareLaunchArgument("loop", default_value="false", description="Play files again when they end"),
        DeclareLaunchArgument("publish_always", default_value="false",
                              description="Publish <name>/image_raw for every frame, not only while subscribed"),
        DeclareLaunchArgument("detection_model", default_value="models/det_yolov5_synth.onnx",
                              description="YOLOv5 model (.onnx / .engine); empty disables detection"),
        DeclareLaunchArgument("segmentation_model", default_value="models/lane_unet.onnx",
                              description="Lane segmentation model (.onnx / .engine); empty disables it"),
        DeclareLaunchArgument("backend", default_value="auto", description="auto, onnxruntime or tensorrt"),
        DeclareLaunchArgument("config_file", default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
                              description="ROS params file with every perception_edge parameter"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (simulation)"),
        Node(package="perception_edge", executable="perception_container", namespace=LaunchConfiguration("namespace"),
             parameters=parameters, output="screen", emulate_tty=True),
    ])
