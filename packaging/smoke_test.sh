#!/usr/bin/env bash
# Smoke test of the built one-folder application (run by `make package` after PyInstaller).
#
#   packaging/smoke_test.sh [APP_DIR] [OUT_DIR]
#
# APP_DIR defaults to dist/cell-therapy-viewer, OUT_DIR (outputs kept for inspection, emptied
# first) to build/smoke. The app runs with a minimal environment (env -i: no virtualenv, no
# PYTHONPATH, from a folder outside the repository) and its own XDG folders under OUT_DIR:
# --version, the packaging self-test (VTK off screen, Qt plugins, rl_accel, onnxruntime,
# fonts, resources, numba cache), demo, stats, render, report headless (offscreen Qt), then
# the window under Xvfb with Qt's xcb platform, whose screenshot must show anatomy and a hot
# overlay. Images and the PDF are checked with the development virtualenv's Python ($PYTHON,
# default .venv/bin/python): that Python never runs the app.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
APP_DIR=$(realpath "${1:-$ROOT/dist/cell-therapy-viewer}")
OUT=$(realpath -m "${2:-$ROOT/build/smoke}")
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
APP="$APP_DIR/cell-therapy-viewer"

[ -x "$APP" ] || { echo "smoke test: $APP not found (run make package)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT/home" "$OUT/cwd"
STUDY="$OUT/study"

step() { printf '\n== %s\n' "$*"; }
fail() { echo "smoke test FAILED: $*" >&2; exit 1; }

# the frozen app with nothing from this machine's Python set-up
run_app() {
	(cd "$OUT/cwd" && env -i HOME="$OUT/home" PATH=/usr/bin:/bin LANG=C.UTF-8 \
		XDG_CONFIG_HOME="$OUT/home/config" XDG_CACHE_HOME="$OUT/home/cache" XDG_DATA_HOME="$OUT/home/data" \
		"$@")
}

step "--version"
expected="viewer $(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/viewer/__init__.py")"
got=$(run_app "$APP" --version)
echo "$got"
[ "$got" = "$expected" ] || fail "--version printed '$got', expected '$expected'"

step "self-test inside the frozen app (offscreen, no DISPLAY)"
run_app QT_QPA_PLATFORM=offscreen CELL_THERAPY_VIEWER_SELFTEST=1 "$APP" || fail "self-test"

step "demo --out $STUDY"
start=$SECONDS
run_app "$APP" demo --out "$STUDY"
[ -f "$STUDY/study.toml" ] || fail "no study.toml written"
echo "   ($((SECONDS - start)) s)"

step "stats"
run_app "$APP" stats "$STUDY" -o "$OUT/stats.json"
"$PYTHON" - "$OUT/stats.json" <<'EOF' || fail "stats output"
import json, sys
data = json.load(open(sys.argv[1]))
text = json.dumps(data)
assert len(text) > 1000, "stats JSON is too short"
print(f"   stats.json: {len(text)} characters of JSON")
EOF

step "render --view axial, then coronal (numpy sampling: no kernels to compile or load)"
if [ -w "$APP_DIR/_internal/viewer/core" ] && find "$APP_DIR/_internal/viewer/core" -name '*.nbi' | grep -q .; then
	fail "numba cached kernels inside the application folder"
fi
cached=$(find "$OUT/home/cache/cell-therapy-viewer/numba" -name '*.nbi' | wc -l)
[ "$cached" -gt 0 ] || fail "the self-test's kernels left no cache index under XDG_CACHE_HOME/cell-therapy-viewer/numba"
echo "   numba cache (the window's kernels, from the self-test): $cached index files in \$XDG_CACHE_HOME/cell-therapy-viewer/numba"
first_start=$(date +%s%N)
run_app QT_QPA_PLATFORM=offscreen "$APP" render "$STUDY" --view axial -o "$OUT/axial.png"
first_ms=$(( ($(date +%s%N) - first_start) / 1000000 ))
second_start=$(date +%s%N)
run_app QT_QPA_PLATFORM=offscreen "$APP" render "$STUDY" --view coronal -o "$OUT/coronal.png"
second_ms=$(( ($(date +%s%N) - second_start) / 1000000 ))
echo "   first render ${first_ms} ms, second ${second_ms} ms (first/second $(awk "BEGIN {printf \"%.2f\", $first_ms / $second_ms}"))"

step "report"
run_app QT_QPA_PLATFORM=offscreen "$APP" report "$STUDY" -o "$OUT/report.pdf"
head -c 5 "$OUT/report.pdf" | grep -q '%PDF-' || fail "report.pdf is not a PDF"
if command -v pdffonts >/dev/null; then
	pdffonts "$OUT/report.pdf" | grep -qi dejavu || fail "report.pdf does not embed the DejaVu fonts"
	echo "   DejaVu fonts embedded"
fi
echo "   report.pdf: $(stat -c %s "$OUT/report.pdf") bytes"

step "the window under Xvfb (xcb)"
command -v Xvfb >/dev/null || fail "Xvfb is not installed (apt-get install xvfb)"
exec 3>"$OUT/display"
Xvfb -displayfd 3 -screen 0 1920x1080x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
XVFB_PID=$!
exec 3>&-
trap 'kill "$XVFB_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$OUT/display" ] && break; sleep 0.1; done
[ -s "$OUT/display" ] || fail "Xvfb did not start"
DISPLAY_NUMBER=$(head -n1 "$OUT/display")
start=$SECONDS
run_app DISPLAY=":$DISPLAY_NUMBER" QT_QPA_PLATFORM=xcb VIEWER_STARTUP_PROBE="$OUT/startup.txt" \
	VIEWER_STARTUP_SCREENSHOT="$OUT/window.png" timeout 180 "$APP" open "$STUDY" 2>"$OUT/window.stderr" \
	|| { cat "$OUT/window.stderr" >&2; fail "the window did not start"; }
echo "   first frame of all three views after $(cat "$OUT/startup.txt") s (process wall time $((SECONDS - start)) s)"
"$PYTHON" - "$OUT/window.png" <<'EOF' || fail "window screenshot"
import sys
import numpy as np
from PIL import Image
image = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(int)
r, g, b = image[..., 0], image[..., 1], image[..., 2]
grey = (np.abs(r - g) < 12) & (np.abs(g - b) < 12) & (r > 60) & (r < 230)
hot = (r > 200) & (r - b > 100) & (g > 60) & (g < 200)
colours = len(np.unique(image.reshape(-1, 3)[::37], axis=0))
print(f"   screenshot {image.shape[1]}x{image.shape[0]}: pixel std {image.std():.1f}, {colours} colours, "
      f"{grey.sum()} anatomy-grey and {hot.sum()} hot pixels")
assert image.std() > 10 and colours > 300, "screenshot looks blank"
assert grey.sum() > 5000, "no anatomy visible"
assert hot.sum() > 30, "no hot overlay colour visible"
EOF

printf '\nsmoke test passed: %s (outputs in %s)\n' "$APP_DIR" "$OUT"
