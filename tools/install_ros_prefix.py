"""Make a Python venv a ROS 2 prefix for perception_edge, as a colcon install space is.

The editable install (pip install -e .) makes the Python package importable but writes none of what
ROS tools look up through the ament index: the package marker, share/perception_edge/ (launch files,
parameter files, models, package.xml) and lib/perception_edge/<executable> (what `ros2 run` and
launch's Node(package=..., executable=...) start). This script writes them into the venv prefix,
kept in sync with the checkout as the editable install is:

    share/ament_index/resource_index/packages/perception_edge -> <checkout>/resource/perception_edge
    share/perception_edge/{package.xml,launch,config,models}  -> the checkout's files and folders
    lib/perception_edge/<console script>                        -> ../../bin/<console script>

(symlinks; the console scripts are those of setup.py, which pip installs into bin/), and puts the
prefix on AMENT_PREFIX_PATH, where ament_index looks: a .pth file in site-packages (every Python
started from the venv: make test, ros2 launch, the nodes it starts) and a line in bin/activate (the
shell of a user who sources it). A colcon build does none of this: it installs setup.py's
data_files into its own install space.

    python tools/install_ros_prefix.py [--prefix PREFIX] [--source CHECKOUT]

Run it with the venv's python (the Makefile's venv target does); it is idempotent.
"""
from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
import sysconfig
from pathlib import Path

PACKAGE = "perception_edge"
SHARE_ENTRIES = ("package.xml", "launch", "config", "models")
PTH_NAME = "perception_edge_ament_prefix.pth"
# one line, run by site.py at every interpreter start: the prefix first on AMENT_PREFIX_PATH, once
PTH_LINE = ("import os, sys; os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(dict.fromkeys([sys.prefix] + "
            "[p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]))\n")
ACTIVATE_MARK = "# perception_edge: this venv is a ROS 2 prefix (tools/install_ros_prefix.py)"
ACTIVATE_LINES = (ACTIVATE_MARK + "\n"
                  'case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; '
                  '*) AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"; '
                  "export AMENT_PREFIX_PATH ;; esac\n")


def console_scripts(setup_py: Path) -> list[str]:
    """The console_scripts names of setup.py's entry_points (read from the source, nothing is run)."""
    for node in ast.walk(ast.parse(setup_py.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return [spec.split("=")[0].strip() for spec in ast.literal_eval(value)]
    raise SystemExit(f"{setup_py}: no console_scripts in entry_points")


def _link(link: Path, target: str | Path) -> None:
    """link -> target, replacing what is there (a stale link, a file or a folder a plain install wrote)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(target)


def install(prefix: Path, source: Path, site_packages: Path | None = None, log=print) -> list[str]:
    """Write the ament index marker, share/ and lib/ links and the AMENT_PREFIX_PATH hooks into prefix.
    Returns the executables linked."""
    prefix, source = prefix.absolute(), source.resolve()
    _link(prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE, source / "resource" / PACKAGE)
    for entry in SHARE_ENTRIES:
        _link(prefix / "share" / PACKAGE / entry, source / entry)
    scripts = console_scripts(source / "setup.py")
    lib = prefix / "lib" / PACKAGE
    for name in scripts:
        _link(lib / name, Path("..", "..", "bin", name))  # relative: the prefix may move with its bin/
    missing = [n for n in scripts if not (prefix / "bin" / n).is_file()]
    if missing:
        log(f"note: {', '.join(missing)} not in {prefix / 'bin'} yet (pip install -e . writes them)")
    if site_packages is None:
        site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    site_packages.mkdir(parents=True, exist_ok=True)
    (site_packages / PTH_NAME).write_text(PTH_LINE)
    activate = prefix / "bin" / "activate"
    if activate.is_file() and ACTIVATE_MARK not in activate.read_text():
        with open(activate, "a") as f:
            f.write("\n" + ACTIVATE_LINES)
    log(f"{prefix} is a ROS 2 prefix for {PACKAGE}: share/{PACKAGE} -> {source}, "
        f"lib/{PACKAGE}/{{{','.join(scripts)}}}, AMENT_PREFIX_PATH via {PTH_NAME} and bin/activate")
    return scripts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", help="the venv (default: this interpreter's, sys.prefix)")
    ap.add_argument("--source", default=str(Path(__file__).resolve().parents[1]), help="the checkout")
    args = ap.parse_args(argv)
    if args.prefix is None and sys.prefix == sys.base_prefix:
        ap.error("not running in a venv: give --prefix (a colcon workspace installs these itself)")
    install(Path(args.prefix or sys.prefix), Path(args.source),
            None if args.prefix else Path(sysconfig.get_path("purelib")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
