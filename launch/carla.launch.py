"""perception_edge on CARLA through carla-ros-bridge.

    ros2 launch perception_edge carla.launch.py
    ros2 launch perception_edge carla.launch.py role_name:=hero sensors:=rgb_front,rgb_left rviz:=true

Cameras are the bridge's topics /carla/<role_name>/<sensor>/image for each sensor in `sensors`
(comma-separated; default rgb_front, rgb_left, rgb_right); results go to
/carla/<role_name>/<sensor>/{detections,label_info,debug_image,lane_mask,lane_overlay}.
Simulation time (/clock from the bridge) is on. Everything else is perception.launch.py's.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("perception_edge")
    role_name = LaunchConfiguration("role_name")
    sensors = LaunchConfiguration("sensors")
    # "['/carla/ego_vehicle/rgb_front/image', ...]": a YAML list for the cameras parameter
    cameras = PythonExpression([
        "str(['/carla/' + '", role_name, "' + '/' + s.strip() + '/image' for s in '", sensors,
        "'.split(',') if s.strip()])"])

    return LaunchDescription([
        DeclareLaunchArgument("role_name", default_value="ego_vehicle",
                              description="carla-ros-bridge role name of the vehicle"),
        DeclareLaunchArgument("sensors", default_value="rgb_front,rgb_left,rgb_right",
                              description="Comma-separated camera sensor names of the vehicle"),
        DeclareLaunchArgument("detection_model", default_value="models/det_yolov5_synth.onnx",
                              description="YOLOv5 model (.onnx / .engine); empty disables detection"),
        DeclareLaunchArgument("segmentation_model", default_value="models/lane_unet.onnx",
                              description="Lane segmentation model; empty disables it"),
        DeclareLaunchArgument("backend", default_value="auto", description="auto, onnxruntime or tensorrt"),
        DeclareLaunchArgument("config_file", default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
                              description="ROS params file with every perception_edge parameter"),
        DeclareLaunchArgument("use_container", default_value="true",
                              description="true: one perception_container process; false: separate nodes"),
        DeclareLaunchArgument("rviz", default_value="false", description="Start RViz2"),

        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "perception.launch.py"])),
            launch_arguments={
                "cameras": cameras,
                "detection_model": LaunchConfiguration("detection_model"),
                "segmentation_model": LaunchConfiguration("segmentation_model"),
                "backend": LaunchConfiguration("backend"),
                "config_file": LaunchConfiguration("config_file"),
                "use_container": LaunchConfiguration("use_container"),
                "rviz": LaunchConfiguration("rviz"),
                "use_sim_time": "true",
            }.items(),
        ),
    ])
