# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# Every install step lives here: the virtualenv, the Python packages (pinned in
# pyproject.toml) and the Debian packages the tests and the window need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
VIEWER := $(VENV)/bin/viewer
DEMO   := .demo/study
VIEWS  := .demo/views

# xvfb: a virtual X screen for the window tests; openbox: a window manager there (dialogs,
# focus); imagemagick: `import -window root` screenshots; poppler-utils: pdftoppm for report checks;
# tesseract-ocr: OCR of rendered report pages, so the de-identification test also reads the words
# drawn into images (key-image legends, time-course ticks);
# dicom3tools: dciodvfy (validates DICOM objects) and a real Siemens MOSAIC example;
# dcmtk: transcodes real series into every transfer syntax for the reading tests (dcmcjpeg…);
# mricron-data: real NIfTI templates read by the loader tests; orthanc, orthanc-dicomweb: the real
# PACS the tests start on loopback ports (tests/pacs/conftest.py), over DIMSE and DICOMweb;
# openssl: the certificate of that PACS's https test (tests/pacs/test_pacs_tls.py);
# the xcb/xkb libraries: Qt's xcb platform plugin on a fresh Debian; EGL/GL: VTK offscreen.
DEB_PACKAGES := xvfb openbox imagemagick poppler-utils tesseract-ocr dicom3tools dcmtk mricron-data orthanc orthanc-dicomweb openssl \
	libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 \
	libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 \
	libxcb-shape0 libegl1 libgl1 libglx-mesa0 libegl-mesa0 libdbus-1-3 libfontconfig1

# binutils: PyInstaller reads and strips ELF files with objdump/strip (`make package` only).
PACKAGE_DEB_PACKAGES := binutils
APP_DIR := dist/cell-therapy-viewer

# Real scanner files the reading tests compare against dcm2niix/nibabel/SimpleITK. heudiconv's
# Debian package ships Siemens MOSAIC and classic MR test files; installing it would pull a
# whole neuroimaging Python stack into the system, so only its test data is unpacked here.
DEBIAN_DATA := .cache/debian-data
DEBIAN_DATA_PACKAGES := heudiconv

.PHONY: demo test venv system-packages debian-data package-system-packages package wheel benchmark fsleyes benchmark-fsleyes clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# compile the numba sampling kernels into their on-disk cache now, so that the first
	@# `viewer render` or window of a fresh checkout does not (issue 19: 4.1 s first, 1.9 s after)
	$(PY) -c "from viewer.core.plane_kernels import precompile; precompile()"
	touch $@

venv: $(VENV)/.installed

# The `package` extra: PyInstaller and build (pinned in pyproject.toml).
$(VENV)/.installed-package: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,package]'
	touch $@

# $(call install_deb,PACKAGES): install the Debian packages that are missing (as root or with sudo).
define install_deb
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

system-packages:
	$(call install_deb,$(DEB_PACKAGES))

$(DEBIAN_DATA)/.unpacked:
	@mkdir -p $(DEBIAN_DATA)/debs
	@cd $(DEBIAN_DATA)/debs && for p in $(DEBIAN_DATA_PACKAGES); do \
		ls $${p}_*.deb >/dev/null 2>&1 || apt-get download -qq $$p 2>/dev/null || \
		{ apt-get update -qq >/dev/null 2>&1; apt-get download -qq $$p; } || exit 2; done
	@for deb in $(DEBIAN_DATA)/debs/*.deb; do dpkg-deb -x $$deb $(DEBIAN_DATA)/root || exit 2; done
	touch $@

debian-data: $(DEBIAN_DATA)/.unpacked

package-system-packages:
	$(call install_deb,$(DEB_PACKAGES) $(PACKAGE_DEB_PACKAGES))

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

test: $(VENV)/.installed system-packages debian-data
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# `make package`: the one-folder desktop application $(APP_DIR) (PyInstaller, packaging/viewer.spec),
# then its smoke test (packaging/smoke_test.sh: CLI, self-test, the window under Xvfb).
package: $(VENV)/.installed-package package-system-packages
	@start=$$(date +%s); \
	$(VENV)/bin/pyinstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/viewer.spec || exit 2; \
	echo "built $(APP_DIR) in $$(( $$(date +%s) - start )) s, $$(du -sh $(APP_DIR) | cut -f1)"
	packaging/smoke_test.sh $(APP_DIR) build/smoke

# `make wheel`: sdist and wheel in dist/ (the wheel carries resources/ as viewer/resources).
wheel: $(VENV)/.installed-package
	$(PY) -m build --outdir dist .

benchmark: $(VENV)/.installed $(DEMO)/study.toml
	$(PY) benchmarks/bench_load_and_sample.py --study $(DEMO)
	$(PY) benchmarks/bench_stats.py --study $(DEMO)
	$(PY) benchmarks/bench_report.py --study $(DEMO)

# FSLeyes, the peer `viewer render` is compared with (benchmarks/bench_fsleyes.py; optional, not
# a dependency): its own venv on Debian's python3 with Debian's wxPython (pip cannot build
# wxPython here); Debian 12's pyparsing 3.0.9 is too old for FSLeyes' shaders. GL in software
# (Mesa llvmpipe) through Xvfb or OSMesa; `time` gives the peak memory of each render.
FSLEYES_VENV := .cache/fsleyes-venv
FSLEYES_DEB_PACKAGES := python3-venv python3-wxgtk4.0 xvfb xauth libosmesa6 libgl1-mesa-dri libglu1-mesa time

$(FSLEYES_VENV)/bin/fsleyes:
	$(call install_deb,$(FSLEYES_DEB_PACKAGES))
	/usr/bin/python3 -m venv --system-site-packages $(FSLEYES_VENV)
	$(FSLEYES_VENV)/bin/pip install --quiet fsleyes 'pyparsing>=3.1'

fsleyes: $(FSLEYES_VENV)/bin/fsleyes

benchmark-fsleyes: $(VENV)/.installed $(DEMO)/study.toml $(FSLEYES_VENV)/bin/fsleyes
	$(PY) benchmarks/bench_fsleyes.py --study $(DEMO) --fsleyes $(FSLEYES_VENV)/bin/fsleyes

clean:
	rm -rf $(VENV) .demo build dist *.egg-info
