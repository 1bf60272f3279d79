"""Static checks of the launch files and the RViz config (the launch package is not needed).

The launch files are parsed with `ast`: every executable of this package they start is a console
script of setup.py, every config/launch file they reference exists, every LaunchConfiguration is
declared, and the arguments carla.launch.py passes exist in perception.launch.py.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
PACKAGE = "perception_edge"


def call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and call_name(n) == name]


def keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def const(node) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def first_arg(node: ast.Call) -> str:
    return const(node.args[0]) if node.args else const(keyword(node, "name"))


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for call in calls(tree, "setup"):
        entry = keyword(call, "entry_points")
        value = ast.literal_eval(entry)
        return {s.split("=")[0].strip(): s.split("=")[1].strip() for s in value["console_scripts"]}
    raise AssertionError("setup() not found in setup.py")


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def declared(tree: ast.AST) -> set[str]:
    return {first_arg(c) for c in calls(tree, "DeclareLaunchArgument")}


def used(tree: ast.AST) -> set[str]:
    return {first_arg(c) for c in calls(tree, "LaunchConfiguration")}


def test_launch_files_exist_and_are_installed():
    names = {p.name for p in LAUNCH_FILES}
    assert {"perception.launch.py", "carla.launch.py"} <= names
    setup = (REPO / "setup.py").read_text()
    assert 'glob("launch/*.py")' in setup and 'glob("config/*.rviz")' in setup


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_is_declarative(path):
    tree = parse(path)
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert funcs == ["generate_launch_description"], "behaviour belongs in the executables, not the launch file"
    assert not calls(tree, "OpaqueFunction")


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_executables_are_console_scripts(path):
    scripts = console_scripts()
    tree = parse(path)
    for node in calls(tree, "Node"):
        package = const(keyword(node, "package"))
        executable = const(keyword(node, "executable"))
        assert package and executable, ast.dump(node)[:200]
        if package == PACKAGE:
            assert executable in scripts, f"{path.name}: {executable} is not a console script of setup.py"
            module = scripts[executable].split(":")[0]
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_referenced_files_exist(path):
    tree = parse(path)
    found = 0
    for node in calls(tree, "PathJoinSubstitution"):
        parts = [const(e) for e in node.args[0].elts] if node.args and isinstance(node.args[0], ast.List) else []
        parts = [p for p in parts if p is not None]
        if parts and parts[-1].endswith((".yaml", ".rviz", ".py")):
            assert (REPO.joinpath(*parts)).is_file(), f"{path.name} references {'/'.join(parts)}, which does not exist"
            found += 1
    assert found, "no package file referenced"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_launch_configuration_is_declared(path):
    tree = parse(path)
    missing = used(tree) - declared(tree)
    assert not missing, f"{path.name}: LaunchConfiguration without DeclareLaunchArgument: {sorted(missing)}"
    assert None not in used(tree) | declared(tree), "launch argument names must be literals"


def test_perception_launch_arguments():
    tree = parse(REPO / "launch" / "perception.launch.py")
    assert declared(tree) >= {"cameras", "detection_model", "segmentation_model", "backend", "config_file",
                              "namespace", "use_sim_time", "use_container", "rviz"}
    executables = {const(keyword(n, "executable")) for n in calls(tree, "Node")}
    assert executables >= {"perception_container", "camera_fusion", "detection_node", "segmentation_node", "rviz2"}
    # default cameras and models: the ones of config/perception.yaml
    defaults = {first_arg(c): const(keyword(c, "default_value")) for c in calls(tree, "DeclareLaunchArgument")}
    cfg = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    assert yaml.safe_load(defaults["cameras"]) == cfg["cameras"]
    assert defaults["detection_model"] == cfg["detection"]["model"]
    assert defaults["segmentation_model"] == cfg["segmentation"]["model"]


def test_carla_launch_gives_native_ros2_topics_and_bridge_topics_on_request():
    carla = parse(REPO / "launch" / "carla.launch.py")
    perception_args = declared(parse(REPO / "launch" / "perception.launch.py"))
    includes = calls(carla, "IncludeLaunchDescription")
    assert len(includes) == 1
    args = keyword(includes[0], "launch_arguments")
    passed = {const(k) for k in args.func.value.keys}  # {...}.items()
    assert passed <= perception_args, passed - perception_args
    assert "cameras" in passed and "use_sim_time" in passed
    sim = args.func.value.values[[const(k) for k in args.func.value.keys].index("use_sim_time")]
    assert const(sim) == "true"
    defaults = {first_arg(c): const(keyword(c, "default_value")) for c in calls(carla, "DeclareLaunchArgument")}
    assert defaults["interface"] == "native" and defaults["role_name"] == "" and defaults["sensors"] == ""
    # the PythonExpression that builds the camera list, evaluated as launch does for given arguments
    variables = {a.targets[0].id: first_arg(a.value) for a in ast.walk(carla)
                 if isinstance(a, ast.Assign) and isinstance(a.value, ast.Call)
                 and call_name(a.value) == "LaunchConfiguration"}
    expr = next(c for c in calls(carla, "PythonExpression"))

    def cameras(**given):
        values = dict(defaults, **given)
        pieces = []
        for e in expr.args[0].elts:
            pieces.append(const(e) if const(e) is not None else
                          values[variables[e.id] if isinstance(e, ast.Name) else first_arg(e)])
        return yaml.safe_load(eval("".join(pieces), {}, {}))

    # native: the names `perception-edge carla --ros` gives (role_name hero, ros_name = camera name)
    from perception_edge.sim.carla_loop import namespace
    from perception_edge.sim.carla_world import DEFAULT_CAMERAS

    native = [f"{namespace('hero', c.split(':')[0])}/image" for c in DEFAULT_CAMERAS]
    assert cameras() == native == ["/carla/hero/front/image", "/carla/hero/front_left/image",
                                   "/carla/hero/front_right/image"]
    assert cameras(interface="bridge") == [f"/carla/ego_vehicle/{s}/image" for s in ("rgb_front", "rgb_left", "rgb_right")]
    assert cameras(role_name="ego", sensors="a, b") == ["/carla/ego/a/image", "/carla/ego/b/image"]
    choices = keyword(next(c for c in calls(carla, "DeclareLaunchArgument") if first_arg(c) == "interface"), "choices")
    assert ast.literal_eval(choices) == ["native", "bridge"]


def test_rviz_config_is_valid_and_shows_the_debug_topics():
    doc = yaml.safe_load((REPO / "config" / "perception.rviz").read_text())
    displays = doc["Visualization Manager"]["Displays"]
    images = {d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"}
    cfg = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    from perception_edge.nodes.parameters import output_topic

    expected = {output_topic(c, name) for c in cfg["cameras"] for name in ("debug_image", "lane_overlay")}
    assert expected == {"/cam_front/debug_image", "/cam_front/lane_overlay", "/cam_left/debug_image",
                        "/cam_left/lane_overlay"}
    assert images == expected
    assert "Global Options" in doc["Visualization Manager"] and "Window Geometry" in doc
