#!/usr/bin/env bash
# Set up likeness in ./.venv on a fresh machine (Debian/Ubuntu or any Linux with Python >= 3.11).
#   scripts/setup.sh                 # the tool, the app and video support
#   LIKENESS_EXTRAS=app,video,insightface,test scripts/setup.sh   # what the test suite needs
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${LIKENESS_EXTRAS:-app,video}

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"likeness needs Python >= 3.11; {sys.executable} is {sys.version.split()[0]}")
PY

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# System packages. opencv-python (the build insightface and invisible-watermark require) links
# libGL.so.1 and libglib-2.0; the browser tests need Debian's chromium.
need=()
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1 ' || need+=(libgl1)
ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0 ' || need+=(libglib2.0-0)
if [ -n "${LIKENESS_WITH_BROWSER:-}" ] && [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi
if [ -n "${LIKENESS_WITH_POSTGRES:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${need[*]}"
    as_root apt-get update -qq || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || { echo "setup: could not install ${need[*]}; install them with your package manager" >&2; exit 1; }
  else
    echo "setup: please install: ${need[*]} (OpenGL and GLib runtime libraries)" >&2; exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
.venv/bin/python -c "import cv2, dlib, likeness; print('setup: likeness', likeness.__version__, 'ready in .venv')"
echo "setup: to use the likeness command in this shell, run:  source .venv/bin/activate"
echo "       (or call it as .venv/bin/likeness)"
