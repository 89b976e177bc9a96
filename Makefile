# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# Every install step lives here: the virtualenv, the Python packages (pinned in
# pyproject.toml) and the Debian packages the tests and the window need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
VIEWER := $(VENV)/bin/viewer
DEMO   := .demo/study
VIEWS  := .demo/views

# xvfb: a virtual X screen for the window tests; poppler-utils: pdftoppm for report checks;
# the xcb/xkb libraries: Qt's xcb platform plugin on a fresh Debian; EGL/GL: VTK offscreen.
DEB_PACKAGES := xvfb poppler-utils libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 \
	libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 \
	libxcb-shape0 libegl1 libgl1 libglx-mesa0 libegl-mesa0 libdbus-1-3 libfontconfig1

.PHONY: demo test venv system-packages benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(DEMO)/study.toml: | $(VENV)/.installed
	$(VIEWER) demo --out $(DEMO)

# `make demo` opens the window on the demo study. Without a screen (no DISPLAY), it renders
# the demo's three views to PNG instead and prints their paths.
demo: $(VENV)/.installed $(DEMO)/study.toml
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		$(VIEWER) open $(DEMO); \
	else \
		echo "no display: rendering the demo's views to $(VIEWS)/ instead of opening the window"; \
		mkdir -p $(VIEWS); \
		for view in axial coronal sagittal; do \
			$(VIEWER) render $(DEMO) --view $$view --timepoint "day 7" -o $(VIEWS)/day7-$$view.png || exit 2; \
		done; \
	fi

test: $(VENV)/.installed system-packages
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

benchmark: $(VENV)/.installed $(DEMO)/study.toml
	$(PY) benchmarks/bench_load_and_sample.py --study $(DEMO)
	$(PY) benchmarks/bench_stats.py --study $(DEMO)
	$(PY) benchmarks/bench_report.py --study $(DEMO)

clean:
	rm -rf $(VENV) .demo build dist *.egg-info
