#!/usr/bin/env bash
# GStreamer and its Python bindings for the camera sources (perception_edge/sources), called by
# `make venv` (so by `make demo` / `make test`):  bash tools/install_gstreamer.sh VENV
#
# The Debian/Ubuntu packages are installed when missing and this runs as root (apt-get update once);
# otherwise the one apt-get line needed is printed and the rest of the setup carries on (the
# GStreamer sources and tests then skip, saying so). PyGObject<3.52 is then built into the venv
# against the system's girepository-1.0 (3.52+ needs GLib 2.80's girepository-2.0, which Debian 12,
# Ubuntu 22.04 and JetPack 5/6 lack). Nothing is done when everything is already there.
# JetPack: sudo apt-get install python3-gi gir1.2-gst-plugins-base-1.0 (the Jetson multimedia
# plugins, nvv4l2decoder / nvvidconv / nvarguscamerasrc, come with JetPack).
set -u
VENV=${1:-.venv}
PY="$VENV/bin/python"
HERE=$(cd "$(dirname "$0")/.." && pwd)
PACKAGES="gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
gir1.2-gst-rtsp-server-1.0 libgirepository1.0-dev libcairo2-dev pkg-config"

# building PyGObject also needs a C compiler and the interpreter's headers
command -v cc >/dev/null 2>&1 || PACKAGES="$PACKAGES gcc"
"$PY" -c "import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
    2>/dev/null || PACKAGES="$PACKAGES python3-dev"

missing_packages() {
    command -v dpkg-query >/dev/null 2>&1 || { echo "$PACKAGES"; return; }
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s ' "$p"
    done
}

bindings_ok() {
    "$PY" -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstApp', '1.0'); \
from gi.repository import Gst, GstApp" >/dev/null 2>&1
}

if bindings_ok && [ -z "$(missing_packages)" ]; then
    exit 0
fi
missing=$(missing_packages)
if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing GStreamer packages: $missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq $missing >/dev/null || {
            echo "== GStreamer packages could not be installed; camera sources over GStreamer will be unavailable"
            exit 0
        }
    else
        echo "== GStreamer camera sources need system packages (the GStreamer tests skip until then):"
        echo "   sudo apt-get install -y $PACKAGES"
        echo "   then run make again (JetPack: sudo apt-get install python3-gi gir1.2-gst-plugins-base-1.0)"
        exit 0
    fi
fi
if ! bindings_ok; then
    echo "== building PyGObject into $VENV (about 35 s)"
    "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements-gst.txt" || \
        echo "== PyGObject could not be built; camera sources over GStreamer will be unavailable"
fi
exit 0
