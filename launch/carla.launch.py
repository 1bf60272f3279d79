"""perception_edge on CARLA's cameras: CARLA's native ROS 2 interface (default) or carla-ros-bridge.

    # native ROS 2 (CARLA 0.9.15+, server started with --ros2): `perception-edge carla --ros` spawns
    # the ego vehicle (role_name hero) and its cameras with ros_name and enable_for_ros(), and ticks
    ros2 launch perception_edge carla.launch.py
    ros2 launch perception_edge carla.launch.py sensors:=front role_name:=hero rviz:=true

    # carla-ros-bridge (CARLA 0.9.13, ROS 2 Foxy; its objects.json names the sensors)
    ros2 launch perception_edge carla.launch.py interface:=bridge

Cameras are /carla/<role_name>/<sensor>/image for each sensor in `sensors` (comma-separated) --
both interfaces name camera topics that way; they differ in their usual names: native role_name
hero and sensors front, front_left, front_right (the names `perception-edge carla` gives them),
bridge role_name ego_vehicle and sensors rgb_front, rgb_left, rgb_right. Empty role_name / sensors
take the interface's names. Results go to /carla/<role_name>/<sensor>/{detections, label_info,
debug_image, lane_mask, lane_overlay}. Simulation time is on (use_sim_time: both interfaces
publish /clock). Everything else is perception.launch.py's.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("perception_edge")
    interface = LaunchConfiguration("interface")
    role_name = LaunchConfiguration("role_name")
    sensors = LaunchConfiguration("sensors")
    # "['/carla/hero/front/image', ...]": a YAML list for the cameras parameter
    cameras = PythonExpression([
        "(lambda i, r, ss: str(['/carla/' + (r.strip() or {'native': 'hero', 'bridge': 'ego_vehicle'}[i]) + '/' + "
        "s.strip() + '/image' for s in (ss.strip() or {'native': 'front,front_left,front_right', "
        "'bridge': 'rgb_front,rgb_left,rgb_right'}[i]).split(',') if s.strip()]))('", interface, "', '", role_name,
        "', '", sensors, "')"])

    return LaunchDescription([
        DeclareLaunchArgument("interface", default_value="native", choices=["native", "bridge"],
                              description="native: CARLA 0.9.15+ --ros2 topics; bridge: carla-ros-bridge"),
        DeclareLaunchArgument("role_name", default_value="",
                              description="role_name of the vehicle (empty: hero native, ego_vehicle bridge)"),
        DeclareLaunchArgument("sensors", default_value="",
                              description="Comma-separated camera names (ros_name / bridge sensor id); empty: "
                                          "front,front_left,front_right native, rgb_front,rgb_left,rgb_right bridge"),
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
