#!/usr/bin/env bash
# Build the vendored vision_msgs (third_party/vision_msgs, ros-perception/vision_msgs
# 4.x definitions) into a Python venv that uses the ROS 2 Kilted wheels from PyPI.
#
#   tools/build_vision_msgs.sh VENV_DIR [--force]
#
# Afterwards `VENV_DIR/bin/python -c "from vision_msgs.msg import Detection2DArray"`
# works and rclpy can publish/subscribe the types, with no environment variables:
# the ROS wheels use the venv root as their ament prefix ($VENV/lib, $VENV/share,
# $VENV/include, Python packages in site-packages) and the ros-wheels-bootstrapper
# .pth re-executes the interpreter with LD_LIBRARY_PATH=$VENV/lib; we install into the
# same prefix and additionally give our libraries an $ORIGIN RPATH.
#
# Idempotent: if vision_msgs already imports (with working type support) in that venv
# -- from an earlier run of this script with the same sources, or from a ROS
# distribution -- nothing is done.  --force (or VISION_MSGS_FORCE=1) rebuilds.
#
# Needs: cmake (tested with 3.25), a C/C++ compiler, make, and the Python headers of
# the venv's interpreter (Debian: apt-get install cmake g++ make python3-dev).
# Takes ~40-50 s on 2 cores (mostly compiling the generated type support), ~0.3 s when
# there is nothing to do.
set -euo pipefail

usage() { echo "usage: $0 VENV_DIR [--force]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
FORCE="${VISION_MSGS_FORCE:-0}"
if [[ $# -eq 2 ]]; then
  [[ "$2" == "--force" ]] || usage
  FORCE=1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/third_party/vision_msgs"
REQ_ROS="$ROOT/requirements-ros.txt"
REQ_ROSIDL="$ROOT/requirements-rosidl.txt"
VENV_ARG="$1"
T0=$SECONDS

step() { printf '[build_vision_msgs %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '[build_vision_msgs] ERROR: %s\n' "$*" >&2; exit 1; }

[[ -f "$SRC/package.xml" && -d "$SRC/msg" ]] || die "vendored package not found at $SRC"

# 1. The venv (created if it does not exist yet).
if [[ ! -x "$VENV_ARG/bin/python" ]]; then
  step "creating venv $VENV_ARG with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv "$VENV_ARG"
fi
VENV="$(cd "$VENV_ARG" && pwd)"
PY="$VENV/bin/python"

# Hash of the vendored sources; stored next to the installed package so that edits
# to third_party/vision_msgs trigger a rebuild while an unchanged tree is skipped.
SRC_HASH="$(cd "$SRC" && export LC_ALL=C && sha256sum package.xml CMakeLists.txt msg/*.msg | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/share/vision_msgs/vendored_source.sha256"

# Imports the message module AND loads its C type support (the part that breaks when
# a library is missing), in a fresh interpreter of the venv.  The bootstrapper's guard
# variable is dropped so that a value inherited from another venv's Python cannot
# stop it from setting up this venv's library path.
check_import() {
  env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE "$PY" - <<'PYEOF'
from vision_msgs.msg import Detection2DArray, LabelInfo
for cls in (Detection2DArray, LabelInfo):
    cls.__class__.__import_type_support__()
    assert cls.__class__._TYPE_SUPPORT is not None, cls
PYEOF
}

# 2. Fast path.
if [[ "$FORCE" != 1 ]] && check_import >/dev/null 2>&1; then
  if [[ ! -f "$STAMP" ]]; then
    step "vision_msgs already importable in $VENV (not built by this script, e.g. a ROS distribution): nothing to do"
    exit 0
  elif [[ "$(cat "$STAMP")" == "$SRC_HASH" ]]; then
    step "vision_msgs already built in $VENV from the current sources: nothing to do"
    exit 0
  fi
  step "vendored sources changed since the last build: rebuilding"
fi

# 3. Wheels: ROS runtime (pinned) + build-only wheels (pinned).
step "pip install -r requirements-ros.txt -r requirements-rosidl.txt"
"$PY" -m pip install --quiet --disable-pip-version-check \
  -r "$REQ_ROS" -r "$REQ_ROSIDL" 2>&1 | { grep -v "^WARNING: Location '" || true; }

# 4. Tool chain and locations.
command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"
command -v c++ >/dev/null || command -v g++ >/dev/null || die "no C++ compiler (apt-get install g++)"
command -v make >/dev/null || die "make not found (apt-get install make)"
PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
PY_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
[[ -f "$PY_INC/Python.h" ]] || die "Python.h not found in $PY_INC (Debian: apt-get install python3-dev)"
# The ament prefix of the ROS wheels is the venv root itself.
[[ -f "$VENV/share/std_msgs/cmake/std_msgsConfig.cmake" ]] \
  || die "ROS wheels' ament prefix not found: $VENV/share/std_msgs/cmake missing"
[[ -f "$VENV/share/rosidl_default_generators/cmake/rosidl_default_generatorsConfig.cmake" ]] \
  || die "rosidl_default_generators not installed in $VENV"
step "prefix=$VENV python=$("$PY" -c 'import platform; print(platform.python_version())') site-packages=$PY_SITE"

# 5. The wheels' exported CMake targets carry the wheel builder's interpreter paths
#    (e.g. /opt/python/cp311-cp311/include/python3.11 and its numpy include dir) in
#    INTERFACE_INCLUDE_DIRECTORIES, which makes CMake refuse to generate.  Point them
#    at this venv's Python and numpy headers (idempotent; redone on every build since
#    a reinstalled wheel brings the original files back).
mapfile -t CMAKE_FILES < <(grep -rlE --include='*.cmake' \
  '/include/python3\.[0-9]+|/numpy/(_core|core)/include' \
  "$VENV/share" "$VENV/lib/cmake" 2>/dev/null || true)
n_fixed=0
for f in "${CMAKE_FILES[@]}"; do
  grep -q 'INTERFACE_INCLUDE_DIRECTORIES' "$f" || continue
  sed -i -E "/INTERFACE_INCLUDE_DIRECTORIES/{s#[^\";]*/include/python3\.[0-9]+#${PY_INC}#g;s#[^\";]*/numpy/(_core|core)/include#${NP_INC}#g}" "$f"
  n_fixed=$((n_fixed + 1))
done
step "rewrote Python/numpy include paths in $n_fixed exported CMake file(s)"

# 6. Configure + build in a temporary directory.
BUILD="$(mktemp -d "${TMPDIR:-/tmp}/vision_msgs_build.XXXXXX")"
trap 'rm -rf "$BUILD"' EXIT
export PATH="$VENV/bin:$PATH"  # any `python3` spawned by the generators = the venv's
# ament looks up the available typesupports (rosidl_typesupport_c/cpp resources) in
# CMAKE_INSTALL_PREFIX and AMENT_PREFIX_PATH: both must be the venv prefix, otherwise
# configure stops with "No 'rosidl_typesupport_c' found".  Build against the venv
# only, even if a ROS distribution happens to be sourced in this shell.
export AMENT_PREFIX_PATH="$VENV"
unset CMAKE_PREFIX_PATH PYTHONPATH
JOBS="$(nproc 2>/dev/null || echo 2)"

step "cmake configure ($BUILD)"
# RPATH: libs land in $VENV/lib ($ORIGIN); the Python extension modules land in
# $VENV/lib/python3.X/site-packages/vision_msgs ($ORIGIN/../../.. = $VENV/lib).
# Old-style DT_RPATH (--disable-new-dtags) also applies to the dependencies those
# modules pull in (the wheels' own libs have no RPATH), so the import works even
# without the bootstrapper's LD_LIBRARY_PATH.
if ! cmake -S "$SRC" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE="${VISION_MSGS_BUILD_TYPE:-Release}" \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
    -DCMAKE_INSTALL_RPATH='$ORIGIN;$ORIGIN/../../..' \
    -DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags \
    -DCMAKE_MODULE_LINKER_FLAGS=-Wl,--disable-new-dtags \
    >"$BUILD/configure.log" 2>&1; then
  tail -n 40 "$BUILD/configure.log" >&2
  die "cmake configure failed"
fi

step "build (make -j$JOBS)"
if ! cmake --build "$BUILD" -- -j"$JOBS" >"$BUILD/build.log" 2>&1; then
  grep -E -B2 -A8 'error|Error' "$BUILD/build.log" | tail -n 60 >&2 || tail -n 40 "$BUILD/build.log" >&2
  die "build failed"
fi

step "install into $VENV"
if [[ -f "$STAMP" ]]; then  # our own earlier build: drop it so no stale modules remain
  rm -rf "$PY_SITE/vision_msgs" "$STAMP"
fi
if ! cmake --install "$BUILD" >"$BUILD/install.log" 2>&1; then
  tail -n 40 "$BUILD/install.log" >&2
  die "install failed"
fi
[[ -d "$PY_SITE/vision_msgs/msg" ]] || die "generated Python package did not land in $PY_SITE"

# 7. Verify in a fresh interpreter with a clean environment.
step "verify: import vision_msgs.msg + type support"
if ! env -u LD_LIBRARY_PATH -u PYTHONPATH -u AMENT_PREFIX_PATH -u _ROS_WHEELS_BOOTSTRAP_COMPLETE \
    "$PY" - <<'PYEOF'
from vision_msgs.msg import Detection2DArray, LabelInfo
for cls in (Detection2DArray, LabelInfo):
    cls.__class__.__import_type_support__()
    assert cls.__class__._TYPE_SUPPORT is not None, cls
PYEOF
then
  die "vision_msgs was installed but does not import"
fi
printf '%s\n' "$SRC_HASH" >"$STAMP"
step "done: vision_msgs installed into $VENV"
