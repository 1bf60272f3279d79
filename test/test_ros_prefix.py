"""The venv as a ROS 2 prefix (tools/install_ros_prefix.py, run by the Makefile's venv target):
ament_index_python finds the package, its share directory (launch/, config/, models/) and every
executable the launch files name, with AMENT_PREFIX_PATH set by the venv itself (a .pth file for
every Python started from it, bin/activate for a shell). Checked on a fresh venv made here, and on
the checkout's own .venv when the tests run in it (make test). Needs no `launch`/`launch_ros`: the
launch files are read as source."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "perception_edge"
sys.path.insert(0, str(REPO / "tools"))
import install_ros_prefix  # noqa: E402

sys.path.remove(str(REPO / "tools"))
ament_index_python = pytest.importorskip("ament_index_python")


def launch_executables() -> set[str]:
    """executable= of every Node(package="perception_edge", ...) in launch/*.py."""
    names = set()
    for path in sorted((REPO / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                kw = {k.arg: k.value for k in node.keywords}
                pkg, exe = kw.get("package"), kw.get("executable")
                if isinstance(pkg, ast.Constant) and pkg.value == PACKAGE and exe is not None:
                    assert isinstance(exe, ast.Constant), f"{path.name}: executable= is not a literal"
                    names.add(exe.value)
    return names


def test_launch_files_name_executables_that_setup_py_installs():
    names = launch_executables()
    assert {"perception_container", "camera_fusion"} <= names  # guards the parsing
    assert names <= set(install_ros_prefix.console_scripts(REPO / "setup.py"))


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


QUERY = """
import json, os
from ament_index_python.packages import get_package_prefix, get_package_share_directory, get_packages_with_prefixes
print(json.dumps({"path": os.environ.get("AMENT_PREFIX_PATH"), "prefix": get_package_prefix("perception_edge"),
                  "share": get_package_share_directory("perception_edge"),
                  "packages": get_packages_with_prefixes()}))
"""


def _check_prefix(prefix: Path, share: str, found_prefix: str) -> None:
    assert Path(found_prefix).absolute() == prefix.absolute()
    share_dir = Path(share)
    assert share_dir == prefix / "share" / PACKAGE
    for entry in ("launch", "config", "models"):
        assert (share_dir / entry).is_dir(), entry
    assert (share_dir / "package.xml").is_file()
    assert (share_dir / "launch" / "perception.launch.py").is_file()
    assert (share_dir / "config" / "perception.yaml").is_file()
    assert sorted(p.name for p in (share_dir / "models").glob("*.onnx")) == \
        sorted(p.name for p in (REPO / "models").glob("*.onnx"))


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A new venv (no pip) that sees ament_index_python, made a ROS prefix by the installer (twice:
    it must be idempotent)."""
    venv = tmp_path_factory.mktemp("prefix") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True, env=_clean_env()).stdout.strip())
    # only ament_index_python's folder on sys.path (a plain .pth line; the .pth files there are not run)
    (site / "ament_index_only.pth").write_text(str(Path(ament_index_python.__file__).parents[1]) + "\n")
    for _ in range(2):
        subprocess.run([str(python), str(REPO / "tools" / "install_ros_prefix.py")], check=True,
                       capture_output=True, text=True, env=_clean_env(), timeout=60)
    return venv


def test_fresh_venv_is_found_by_ament_index(fresh_venv):
    proc = subprocess.run([str(fresh_venv / "bin" / "python"), "-c", QUERY], capture_output=True, text=True,
                          env=_clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["path"] == str(fresh_venv)  # set by the venv's .pth, not by the caller
    assert found["packages"] == {PACKAGE: str(fresh_venv)}
    _check_prefix(fresh_venv, found["share"], found["prefix"])


def test_fresh_venv_links_every_launch_executable_to_its_console_script(fresh_venv):
    lib = fresh_venv / "lib" / PACKAGE
    for name in launch_executables():
        assert (lib / name).is_symlink(), name
        assert os.readlink(lib / name) == os.path.join("..", "..", "bin", name)


def test_prefix_goes_first_and_once_on_ament_prefix_path(fresh_venv, tmp_path):
    underlay = str(tmp_path)  # e.g. /opt/ros/humble: still searched, after the venv
    env = _clean_env(AMENT_PREFIX_PATH=os.pathsep.join([underlay, str(fresh_venv)]))
    out = subprocess.run([str(fresh_venv / "bin" / "python"), "-c", "import os; print(os.environ['AMENT_PREFIX_PATH'])"],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out.split(os.pathsep) == [str(fresh_venv), underlay]


def test_sourcing_activate_puts_the_venv_on_ament_prefix_path(fresh_venv):
    script = f'. "{fresh_venv}/bin/activate" && . "{fresh_venv}/bin/activate" && printf %s "$AMENT_PREFIX_PATH"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=_clean_env(AMENT_PREFIX_PATH="/opt/x"),
                         check=True).stdout
    assert out.split(os.pathsep) == [str(fresh_venv), "/opt/x"]


@pytest.mark.skipif(Path(sys.prefix).resolve() != (REPO / ".venv").resolve(),
                    reason="the tests do not run in this checkout's .venv (make test does)")
def test_this_venv_is_a_ros_prefix():
    """make test's venv: found from this very process (AMENT_PREFIX_PATH from the venv's .pth), and
    every launch executable starts the venv's console script."""
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    prefix = Path(sys.prefix)
    _check_prefix(prefix, get_package_share_directory(PACKAGE), get_package_prefix(PACKAGE))
    for name in launch_executables():
        exe = prefix / "lib" / PACKAGE / name
        assert exe.resolve() == (prefix / "bin" / name).resolve() and os.access(exe, os.X_OK), name
