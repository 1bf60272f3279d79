"""perception_edge: camera fusion + YOLOv5 detection + lane segmentation.

    ros2 launch perception_edge perception.launch.py
    ros2 launch perception_edge perception.launch.py cameras:="['/cam_front/image_raw']" backend:=tensorrt \
        detection_model:=models/det_yolov5_synth.engine rviz:=true

use_container:=true (default) runs one `perception_container` process (fusion, detection and
segmentation composed, batches handed over in-process); use_container:=false runs camera_fusion,
detection_node and segmentation_node as separate processes (each model node then subscribes to
the cameras itself; camera_fusion republishes the synchronized frames on <camera ns>/synced/image).

All parameters come from config_file (default: the package's config/perception.yaml); the
arguments below are passed on top of it. An empty detection_model / segmentation_model disables
that model. Relative model paths are resolved by the nodes: current directory first, then the
package's share directory. This file only passes parameters; all behaviour is in the executables.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("perception_edge")
    cameras = LaunchConfiguration("cameras")
    detection_model = LaunchConfiguration("detection_model")
    segmentation_model = LaunchConfiguration("segmentation_model")
    backend = LaunchConfiguration("backend")
    config_file = LaunchConfiguration("config_file")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    use_container = LaunchConfiguration("use_container")
    rviz = LaunchConfiguration("rviz")

    parameters = [
        config_file,
        {
            "cameras": cameras,  # a YAML list, e.g. "['/cam_front/image_raw', '/cam_left/image_raw']"
            "detection.model": ParameterValue(detection_model, value_type=str),
            "segmentation.model": ParameterValue(segmentation_model, value_type=str),
            "backend": ParameterValue(backend, value_type=str),
            "use_sim_time": ParameterValue(use_sim_time, value_type=bool),
        },
    ]
    separate_detection = PythonExpression(
        ["'", use_container, "'.lower() not in ('true', '1') and '", detection_model, "' != ''"])
    separate_segmentation = PythonExpression(
        ["'", use_container, "'.lower() not in ('true', '1') and '", segmentation_model, "' != ''"])

    return LaunchDescription([
        DeclareLaunchArgument("cameras", default_value="['/cam_front/image_raw', '/cam_left/image_raw']",
                              description="Image topics as a YAML list (topics ending in /compressed: "
                                          "CompressedImage)"),
        DeclareLaunchArgument("detection_model", default_value="models/det_yolov5_synth.onnx",
                              description="YOLOv5 model (.onnx / .engine); empty disables detection"),
        DeclareLaunchArgument("segmentation_model", default_value="models/lane_unet.onnx",
                              description="Lane segmentation model (.onnx / .engine); empty disables it"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="auto, onnxruntime or tensorrt"),
        DeclareLaunchArgument("config_file", default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
                              description="ROS params file with every perception_edge parameter"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (simulation)"),
        DeclareLaunchArgument("use_container", default_value="true",
                              description="true: one perception_container process; false: separate nodes"),
        DeclareLaunchArgument("rviz", default_value="false", description="Start RViz2 with config/perception.rviz"),

        Node(package="perception_edge", executable="perception_container", namespace=namespace,
             parameters=parameters, output="screen", emulate_tty=True, condition=IfCondition(use_container)),

        Node(package="perception_edge", executable="camera_fusion", name="camera_fusion", namespace=namespace,
             parameters=parameters, output="screen", emulate_tty=True, condition=UnlessCondition(use_container)),
        Node(package="perception_edge", executable="detection_node", name="detection", namespace=namespace,
             parameters=parameters, output="screen", emulate_tty=True, condition=IfCondition(separate_detection)),
        Node(package="perception_edge", executable="segmentation_node", name="segmentation", namespace=namespace,
             parameters=parameters, output="screen", emulate_tty=True,
             condition=IfCondition(separate_segmentation)),

        Node(package="rviz2", executable="rviz2", name="rviz2", arguments=[
            "-d", PathJoinSubstitution([share, "config", "perception.rviz"])],
            parameters=[{"use_sim_time": ParameterValue(use_sim_time, value_type=bool)}],
            output="screen", condition=IfCondition(rviz)),
    ])
