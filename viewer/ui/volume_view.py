"""VolumeView: the 3D view (VTK) — anatomy surface or volume rendering, ¹⁹F hotspots, regions, cursor.

The main window creates this widget lazily (only in the 2×2 layout), so VTK is imported here
and nowhere on the start-up path.

Geometry: every volume keeps its own voxel grid. Each actor is built in *voxel* coordinates
(vtkImageData with spacing 1, origin at the crop offset) and placed in world space (RAS mm) by
the volume's 4×4 ``voxel_to_world`` as the actor's user matrix. That is exact for oblique,
rotated and flipped grids; nothing is resampled to a common grid.

What is drawn:

* anatomy — a smoothed isosurface of the T1 on a 2× block-averaged grid (fast; a brain or skin
  envelope), semi-transparent so what lies inside shows; or, in ``"volume"`` mode, a shaded ray
  cast (GPU, or CPU on software OpenGL) whose colour and opacity come from the anatomy's
  intensity distribution (:mod:`viewer.core.transfer_function`: air transparent, tissue a
  moderate grey, bright structures more opaque), chosen with a preset menu in the 3D bar and
  an opacity and a threshold slider under it;
* ¹⁹F hotspots — two nested isosurfaces in the layer's colormap (hot): an outer translucent
  shell at the display threshold and an opaque inner core at half the way to the top level.
  The reference tube (``layers.calibration_mask``) holds no cells: it is drawn separately as a
  neutral, faint grey-blue surface so the user sees it but never mistakes it for cells. Noise
  specks smaller than the study's ``min_cluster_voxels`` are not drawn;
* regions — one smoothed surface per label in its label-table colour; enclosing regions (penumbra) and
  calibration regions are faint, "background" is not drawn (it is a noise sampling box);
* the linked cursor — a small 3-axis crosshair with a sphere at ``scene.cursor``.

Scene events: ``cursor`` moves the crosshair; ``timepoint`` and ``regions`` rebuild actors;
``display`` re-thresholds hotspots or changes opacity/visibility of the role concerned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import vtkmodules.vtkInteractionStyle  # registers the interactor styles
import vtkmodules.vtkRenderingOpenGL2  # registers the OpenGL back end
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  (registers the GPU volume mapper)
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)
from scipy import ndimage
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonDataModel import (
    vtkPolyData,
)
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkCoordinate,
    vtkRenderer,
    vtkTextActor,
    vtkVolume,
    vtkWindowToImageFilter,
)

from viewer.core.display import colormap_lut
from viewer.core.layers import calibration_mask
from viewer.core.spaces import compact_labels
from viewer.core.transfer_function import (
    DEFAULT_PRESET,
    PRESETS,
    IntensityLandmarks,
    TransferFunction,
    intensity_sample,
    landmarks,
    transfer_function,
)
from viewer.core.volume import Volume
from viewer.ui.vtk_scene import (
    anatomy_threshold,
    anatomy_volume,
    apply_transfer_function,
    block_mean_2x,
    clusters_at_least,
    contour,
    cursor_actor,
    hotspot_field,
    image_data,
    orientation_cube,
    rgb01,
    surface_actor,
)

#: Display modes of the anatomy.
MODES: tuple[str, ...] = ("surface", "volume")

#: Opacity of the anatomy surface: low enough to see hotspots and regions inside it.
ANATOMY_SURFACE_OPACITY = 0.2
#: Anatomy surface colour (RGB 0–1): neutral light grey, like Slicer's default model colour.
ANATOMY_SURFACE_COLOR = (0.86, 0.86, 0.86)
#: Anatomy surfaces with more triangles are decimated to this many (translucent rendering
#: speed). The demo's envelope has ≈ 67 k and is left alone: quadric decimation would cost
#: ≈ 0.3 s of the build for no visible gain.
ANATOMY_MAX_TRIANGLES = 150_000

#: Positions (0–1) in the ¹⁹F colormap of the outer shell and inner core of a hotspot: orange
#: and light yellow in "hot", chosen apart from the core region's red and the penumbra's yellow.
HOTSPOT_LUT_POSITIONS = (0.55, 0.85)
#: Opacities of the hotspot outer shell and inner core.
HOTSPOT_OPACITIES = (0.75, 1.0)
#: Inner core level as a fraction of the way from the threshold to the top display level.
HOTSPOT_CORE_FRACTION = 0.5
#: Windowed-sinc iterations on hotspot surfaces: rounds the trilinear facets of small clusters
#: without moving them (a cubic upsampling instead rings into false satellite blobs).
HOTSPOT_SMOOTH_ITERATIONS = 25
#: Colour (RGB 0–1) and opacity of the ¹⁹F reference tube: neutral, so it is never read as cells.
TUBE_COLOR = (0.65, 0.72, 0.85)
TUBE_OPACITY = 0.3

#: Region opacity by reserved name (multiplied by the regions layer opacity); others use the
#: default. Regions are containers and hotspots their content, so regions stay translucent;
#: the penumbra encloses the core and is the faintest.
REGION_OPACITY = {"core": 0.5, "penumbra": 0.2, "injection site": 0.3, "reference": 0.2}
REGION_DEFAULT_OPACITY = 0.35
#: Regions never drawn in 3D: "background" is a noise-sampling box, not anatomy.
REGIONS_SKIPPED = ("background",)
#: Gaussian σ (voxels) applied to a region's binary mask before contouring at 0.5.
REGION_SMOOTH_SIGMA = 0.8


#: Background gradient (RGB 0–1), bottom and top: dark, as in reading rooms.
BACKGROUND_BOTTOM = (0.02, 0.02, 0.03)
BACKGROUND_TOP = (0.13, 0.14, 0.18)

#: Qt platforms without a window system: VTK cannot open a GL context inside the widget there
#: (it floods stderr with shader errors and shows nothing), so the view builds its actors but
#: shows a note instead of rendering. Tests use this to check the 3D logic without an X server.
HEADLESS_PLATFORMS = ("offscreen", "minimal")

#: Margin around the drawn objects when the camera is reset (1.0 = touching the frame).
CAMERA_MARGIN = 1.12
#: Camera view angle (degrees).
CAMERA_VIEW_ANGLE = 30.0

#: Positions of the threshold slider (its range is the image minimum to the typical tissue).
THRESHOLD_STEPS = 1000
#: OpenGL renderers that are software emulations: the GPU ray caster crawls there (≈ 2–4 s a
#: frame on llvmpipe for the demo) while VTK's CPU ray caster takes ≈ 0.15–0.3 s.
SOFTWARE_GL_NAMES = ("llvmpipe", "softpipe", "swiftshader", "software rasterizer", "swr")


# -- pure helpers (numpy and VTK data, no rendering) -------------------------------------------

class VolumeView(QWidget):
    """The 3D view of a :class:`~viewer.core.scene.Scene`.

    The scene holds only weak callbacks, so a discarded view (``deleteLater``) is not kept alive
    by it; :meth:`shutdown` (also run on close) disconnects them and releases the GL context.

    Attributes:
        timings: seconds spent in the last build of each part ("anatomy", "fluorine",
            "regions", "total").
        headless: True on a Qt platform without a window system (see ``HEADLESS_PLATFORMS``):
            actors are built and kept up to date, but nothing is rendered.
    """

    def __init__(self, scene: Any, parent: QWidget | None = None) -> None:
        started = time.perf_counter()
        super().__init__(parent)
        self.scene = scene
        self.timings: dict[str, float] = {}
        self.headless = QGuiApplication.platformName() in HEADLESS_PLATFORMS
        self._mode = "surface"
        self._anatomy_cache: dict[Any, vtkPolyData] = {}
        self._anatomy_actor: vtkActor | None = None
        self._anatomy_volume: vtkVolume | None = None
        self._anatomy_volume_key: Any = None
        self._tf_preset = DEFAULT_PRESET
        self._tf_opacity = 1.0
        self._tf_background: float | None = None  # the user's threshold; None: from the data
        self._tf_samples: dict[Any, np.ndarray] = {}  # sorted strided sample of the anatomy
        self._tf_automatic: IntensityLandmarks | None = None  # its landmarks, threshold from the data
        self._tf_marks: IntensityLandmarks | None = None
        self._tf: TransferFunction | None = None
        self._updating_controls = False
        self._hotspot_actors: list[vtkActor] = []
        self._region_actors: dict[int, vtkActor] = {}
        self._built = False
        self._software_gl: bool | None = None  # known once the GL context exists
        self._camera_set = False
        self._camera_auto = True
        self._legend_actors: list[vtkTextActor] = []
        self._hotspot_colors: list[tuple[float, float, float]] = []
        self._tube_drawn = False
        self._build_ui()
        self._build_renderer()
        self._cursor = cursor_actor()
        self.renderer.AddActor(self._cursor)
        self._rebuild_all()
        self._update_cursor()
        self._callbacks: list[tuple[str, Callable[..., None]]] = [
            (name, _weak_callback(self, method))
            for name, method in (("cursor", "_on_cursor"), ("timepoint", "_on_timepoint"),
                                 ("regions", "_on_regions"), ("display", "_on_display"))
        ]
        for name, callback in self._callbacks:
            scene.events.connect(name, callback)
        self._built = True
        self.timings["total"] = time.perf_counter() - started

    # -- construction ----------------------------------------------------------------------
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        bar.addWidget(QLabel("3D:"))
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Surface", "surface")
        self.mode_combo.addItem("Volume rendering", "volume")
        self.mode_combo.setToolTip("Anatomy as a semi-transparent surface or as a volume rendering")
        self.mode_combo.currentIndexChanged.connect(lambda _i: self.set_mode(self.mode_combo.currentData()))
        bar.addWidget(self.mode_combo)
        reset = QPushButton("Reset view")
        reset.setToolTip("Look at the anatomy from the front (anterior), superior up")
        reset.clicked.connect(self.reset_camera)
        bar.addWidget(self._build_preset_combo())
        bar.addWidget(reset)
        bar.addStretch(1)
        layout.addLayout(bar)
        layout.addWidget(self._build_volume_controls())
        self.vtk_widget: QVTKRenderWindowInteractor | None = None
        if self.headless:
            note = QLabel("3D view unavailable: Qt runs without a window system "
                          f"(QT_QPA_PLATFORM={QGuiApplication.platformName()})")
            note.setAlignment(Qt.AlignmentFlag.AlignCenter)
            layout.addWidget(note, 1)
            self._window = None  # nothing to render into; the renderer still holds the actors
        else:
            self.vtk_widget = QVTKRenderWindowInteractor(self)
            layout.addWidget(self.vtk_widget, 1)
            self._window = self.vtk_widget.GetRenderWindow()

    def _build_preset_combo(self) -> QComboBox:
        """The volume rendering's transfer-function preset (beside the mode, in volume mode)."""
        self.preset_combo = QComboBox()
        for key, label in PRESETS.items():
            self.preset_combo.addItem(label, key)
        self.preset_combo.setToolTip(
            "How the anatomy's intensities are shown, from the image's own histogram: air is always "
            "transparent. Tissue: grey, moderately opaque, bright structures more opaque. Outer surface: "
            "the skin (the brain if skull-stripped). Bright: white matter in MR, bone in CT. See-through: "
            "everything faint, like an X-ray")
        self.preset_combo.currentIndexChanged.connect(
            lambda _i: self.set_transfer_function(preset=self.preset_combo.currentData()))
        self.preset_combo.setVisible(False)
        return self.preset_combo

    def _build_volume_controls(self) -> QWidget:
        """The volume-rendering row under the bar (shown in volume mode): opacity and threshold.

        Opacity scales the preset's (0–300 %); the threshold is the background ceiling, from the
        image minimum (slider left) to the typical tissue (right).
        """
        self.volume_controls = QWidget()
        row = QHBoxLayout(self.volume_controls)
        row.setContentsMargins(4, 0, 4, 0)
        row.addWidget(QLabel("Opacity"))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 300)
        self.opacity_slider.setValue(100)
        self.opacity_slider.setMinimumWidth(70)
        self.opacity_slider.setMaximumWidth(140)
        self.opacity_slider.setToolTip("Opacity of the volume rendering, in % of the preset's")
        self.opacity_slider.valueChanged.connect(lambda value: self.set_transfer_function(opacity=value / 100.0))
        row.addWidget(self.opacity_slider)
        row.addWidget(QLabel("Threshold"))
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, THRESHOLD_STEPS)
        self.threshold_slider.setMinimumWidth(70)
        self.threshold_slider.setMaximumWidth(140)
        self.threshold_slider.setToolTip("Values at or below this are transparent (air, background noise); "
                                         "found from the image's histogram until you move it")
        self.threshold_slider.valueChanged.connect(self._on_threshold_slider)
        row.addWidget(self.threshold_slider)
        self.threshold_label = QLabel("")
        self.threshold_label.setMinimumWidth(self.threshold_label.fontMetrics().horizontalAdvance("−00000") + 4)
        row.addWidget(self.threshold_label)
        row.addStretch(1)
        self.volume_controls.setVisible(False)
        return self.volume_controls

    def _build_renderer(self) -> None:
        self.renderer = vtkRenderer()
        self.renderer.GradientBackgroundOn()
        self.renderer.SetBackground(*BACKGROUND_BOTTOM)
        self.renderer.SetBackground2(*BACKGROUND_TOP)
        # Depth peeling sorts the translucent anatomy, shells and regions per pixel.
        self.renderer.SetUseDepthPeeling(1)
        self.renderer.SetMaximumNumberOfPeels(6)
        self.renderer.SetOcclusionRatio(0.02)
        # In volume rendering, hotspots, tube and regions are drawn on this layer over the
        # volume (same camera): through ≈ 100 mm of see-through fog they would otherwise be
        # washed out, as the CPU ray caster composites over all translucent geometry.
        self.overlay = vtkRenderer()
        self.overlay.SetLayer(1)
        self.overlay.SetActiveCamera(self.renderer.GetActiveCamera())
        self.overlay.SetUseDepthPeeling(1)
        self.overlay.SetMaximumNumberOfPeels(6)
        self.overlay.SetOcclusionRatio(0.02)
        self.overlay.InteractiveOff()
        self._marker: vtkOrientationMarkerWidget | None = None
        window = self._window
        if window is None:
            return
        window.SetAlphaBitPlanes(1)
        window.SetMultiSamples(0)
        window.SetNumberOfLayers(2)
        window.AddRenderer(self.renderer)
        window.AddRenderer(self.overlay)
        interactor = window.GetInteractor()
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera

        style = vtkInteractorStyleTrackballCamera()
        style.AddObserver("StartInteractionEvent", self._on_user_camera)
        interactor.SetInteractorStyle(style)
        self._marker = vtkOrientationMarkerWidget()
        self._marker.SetOrientationMarker(orientation_cube())
        self._marker.SetInteractor(interactor)
        self._marker.SetViewport(0.0, 0.0, 0.11, 0.15)
        self._marker.SetEnabled(1)
        self._marker.InteractiveOff()

    # -- public API --------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """``"surface"`` or ``"volume"``: how the anatomy is drawn."""
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Draw the anatomy as a surface or as a volume rendering (built on first use)."""
        if mode not in MODES:
            raise ValueError(f"unknown 3D mode {mode!r}; expected one of {', '.join(MODES)}")
        if mode == self._mode:
            return
        self._mode = mode
        index = self.mode_combo.findData(mode)
        if index != self.mode_combo.currentIndex():
            self.mode_combo.setCurrentIndex(index)
        self.volume_controls.setVisible(mode == "volume")
        self.preset_combo.setVisible(mode == "volume")
        self._rebuild_anatomy()
        self._rebuild_fluorine()
        self._rebuild_regions()
        self._place_cursor()
        self.request_render()

    def _place_cursor(self) -> None:
        """The cursor goes with the hotspots and regions: over the (mostly opaque) volume."""
        self._remove(self._cursor)
        self._content_renderer().AddActor(self._cursor)

    @property
    def transfer_function(self) -> TransferFunction | None:
        """The volume rendering's colour and opacity functions (None until volume mode is used)."""
        return self._tf

    @property
    def intensity_landmarks(self) -> IntensityLandmarks | None:
        """The landmarks of the anatomy's histogram behind :attr:`transfer_function`."""
        return self._tf_marks

    def set_transfer_function(self, preset: str | None = None, opacity: float | None = None,
                              threshold: float | None = None, automatic_threshold: bool = False) -> None:
        """Change the volume rendering's preset (a key of ``PRESETS``), opacity scale (1 = the
        preset's) or background threshold (image units; ``automatic_threshold`` returns to the
        one found from the histogram). The controls follow; the render is redrawn."""
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
            self._tf_preset = preset
        if opacity is not None:
            self._tf_opacity = max(float(opacity), 0.0)
        if threshold is not None:
            self._tf_background = float(threshold)
        if automatic_threshold:
            self._tf_background = None
        self._sync_volume_controls()
        if self._anatomy_volume is not None:
            self._apply_transfer_function(self.scene.anatomy)
            self.request_render()

    def _on_threshold_slider(self, position: int) -> None:
        if self._updating_controls or self._tf_marks is None:
            return
        low, high = self._threshold_range()
        self.set_transfer_function(threshold=low + (high - low) * position / THRESHOLD_STEPS)

    def _threshold_range(self) -> tuple[float, float]:
        """Values the threshold slider spans: the image minimum to the typical tissue."""
        automatic = self._tf_automatic
        if automatic is None:
            return 0.0, 1.0
        return automatic.minimum, max(automatic.tissue, automatic.minimum + 1e-6)

    def _sync_volume_controls(self) -> None:
        """Show the current preset, opacity and threshold in the controls without feedback."""
        self._updating_controls = True
        try:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(self._tf_preset))
            self.preset_combo.blockSignals(False)
            self.opacity_slider.blockSignals(True)
            self.opacity_slider.setValue(round(100 * self._tf_opacity))
            self.opacity_slider.blockSignals(False)
            if self._tf_marks is not None:
                low, high = self._threshold_range()
                threshold = self._tf_marks.background
                self.threshold_slider.blockSignals(True)
                self.threshold_slider.setValue(round(THRESHOLD_STEPS * np.clip((threshold - low) / (high - low), 0, 1)))
                self.threshold_slider.blockSignals(False)
                self.threshold_label.setText(f"{threshold:.4g}")
        finally:
            self._updating_controls = False

    def reset_camera(self) -> None:
        """Look at the drawn objects from the front (anterior, +y), superior (+z) up, and fit them.

        From the front the patient's right (+x) is on the screen's left, as when facing them.
        The fit uses the visible props (anatomy surface, hotspots, tube, regions), not the
        anatomy grid, whose empty padding would make the head small.
        """
        low, high = self._visible_bounds()
        centre = (low + high) / 2.0
        extent = high - low
        shown = self.vtk_widget if self.vtk_widget is not None else self
        width, height = shown.width(), shown.height()
        aspect = width / height if width > 0 and height > 0 else 1.0
        half_view = 0.5 * CAMERA_MARGIN * max(extent[0] / aspect, extent[2])
        distance = half_view / np.tan(np.radians(CAMERA_VIEW_ANGLE / 2.0)) + extent[1] / 2.0
        camera = self.renderer.GetActiveCamera()
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(centre + np.array([0.0, distance, 0.0])))
        camera.SetViewUp(0.0, 0.0, 1.0)
        camera.SetViewAngle(CAMERA_VIEW_ANGLE)
        self.renderer.ResetCameraClippingRange()
        self._camera_set = True
        self._camera_auto = True
        self.request_render()

    def _visible_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (mm) of the drawn objects without the cursor; the anatomy grid if none."""
        boxes = []
        anatomy = self._anatomy_volume if self._mode == "volume" else self._anatomy_actor
        for prop3d in [anatomy, *self._hotspot_actors, *self._region_actors.values()]:
            if prop3d is not None and prop3d.GetVisibility():
                bounds = np.array(prop3d.GetBounds(), dtype=float)
                if np.all(np.isfinite(bounds)) and bounds[1] >= bounds[0]:
                    boxes.append(bounds)
        if not boxes:
            return self.scene.anatomy.world_bounds()
        stacked = np.array(boxes)
        return stacked[:, 0::2].min(axis=0), stacked[:, 1::2].max(axis=0)

    def request_render(self) -> None:
        """Redraw now if shown (VTK renders on the GUI thread); a hidden view redraws when shown."""
        if self.isVisible():
            self._render()

    def _render(self) -> None:
        if self._window is None:
            return
        self._window.Render()
        if self._software_gl is None and self._configure_for_gl():
            self._window.Render()

    def _configure_for_gl(self) -> bool:
        """Once the GL context exists: drop depth peeling on software OpenGL. True if changed.

        Depth peeling sorts translucent surfaces exactly but costs ≈ 4× per frame on Mesa
        llvmpipe (0.45 s instead of 0.11 s for the demo), which makes rotating sluggish; without
        it translucent surfaces are blended in drawing order, a small error from most angles.
        """
        software = _software_gl(self._window)
        if software is None:
            return False
        self._software_gl = software
        if software:
            self.renderer.SetUseDepthPeeling(0)
            self.overlay.SetUseDepthPeeling(0)
            return True
        return False

    def grab_frame(self) -> np.ndarray:
        """The current frame as an (height, width, 3) uint8 RGB array, top row first.

        Raises:
            RuntimeError: the view is headless (no window system to render with).
        """
        if self.headless:
            raise RuntimeError("the 3D view cannot render without a window system (headless Qt platform)")
        self._render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self._window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.ShouldRerenderOn()
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
        return np.ascontiguousarray(pixels[::-1, :, :3])

    def shutdown(self) -> None:
        """Disconnect from the scene and release the OpenGL context (idempotent)."""
        for name, callback in self._callbacks:
            self.scene.events.disconnect(name, callback)
        self._callbacks = []
        if self._marker is not None:
            self._marker.SetEnabled(0)
            self._marker = None
        if self.vtk_widget is not None:
            self.vtk_widget.Finalize()

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    def deleteLater(self) -> None:
        """Release the GL context before Qt deletes the widget (the main window discards the
        view this way when another study is opened)."""
        self.shutdown()
        super().deleteLater()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self.vtk_widget is not None:
            self.vtk_widget.Initialize()

    def resizeEvent(self, event: Any) -> None:
        """Refit the camera to the new aspect until the user has moved it."""
        super().resizeEvent(event)
        if self._built and self._camera_auto:
            self.reset_camera()

    def _on_user_camera(self, *_args: Any) -> None:
        self._camera_auto = False

    # -- scene events --------------------------------------------------------------------------
    def _on_cursor(self, **_info: Any) -> None:
        self._update_cursor()
        self.request_render()

    def _on_timepoint(self, **_info: Any) -> None:
        self._rebuild_all()
        self.request_render()

    def _on_regions(self, labels: Any = None, box: Any = None, **_info: Any) -> None:
        if box is None and labels is not None and not labels:
            self._apply_region_display()  # the label table only (rename, recolour): no new surfaces
        else:
            self._rebuild_regions()
        self.request_render()

    def _on_display(self, role: str | None = None, **_info: Any) -> None:
        if role == "fluorine":
            self._rebuild_fluorine()
        elif role == "regions":
            self._apply_region_display()
        elif role == "anatomical":
            self._rebuild_anatomy()
        else:
            return
        self.request_render()

    # -- building actors ---------------------------------------------------------------------
    def _rebuild_all(self) -> None:
        self._rebuild_anatomy()
        self._rebuild_fluorine()
        self._rebuild_regions()
        if not self._camera_set:
            self.reset_camera()

    def _update_legend(self) -> None:
        """Colour key in the top-left corner: what each colour of the 3D view is."""
        for actor in self._legend_actors:
            self.renderer.RemoveViewProp(actor)
        self._legend_actors = []
        anchor = vtkCoordinate()
        anchor.SetCoordinateSystemToNormalizedViewport()
        anchor.SetValue(0.012, 0.985)
        for row, (text, rgb) in enumerate(self._legend_entries()):
            actor = vtkTextActor()
            actor.SetInput(text)
            prop = actor.GetTextProperty()
            prop.SetFontSize(13)
            prop.SetColor(*rgb)
            prop.SetVerticalJustificationToTop()
            prop.ShadowOn()
            coordinate = actor.GetPositionCoordinate()
            coordinate.SetCoordinateSystemToDisplay()
            coordinate.SetReferenceCoordinate(anchor)
            coordinate.SetValue(0.0, -17.0 * row)
            self.renderer.AddViewProp(actor)
            self._legend_actors.append(actor)

    def _legend_entries(self) -> list[tuple[str, tuple[float, float, float]]]:
        """(text, RGB 0–1) of every visible kind of object, in drawing order."""
        entries: list[tuple[str, tuple[float, float, float]]] = []
        fluorine_props = self.scene.display.get("fluorine")
        if fluorine_props is not None and fluorine_props.visible:
            fluorine = self.scene.volumes.get("fluorine")
            units = fluorine.units if fluorine is not None else ""
            if self._hotspot_colors:
                threshold = _fluorine_threshold(fluorine_props)
                entries.append((f"19F hotspots (≥ {threshold:.3g} {units})", self._hotspot_colors[0]))
            if self._tube_drawn:
                entries.append(("19F reference tube (no cells)", TUBE_COLOR))
        region_props = self.scene.display.get("regions")
        if region_props is None or region_props.visible:
            table = self.scene.label_table()
            for label in self._region_actors:
                entries.append((table.name(label), rgb01(table.color(label))))
        return entries

    def _content_renderer(self) -> vtkRenderer:
        """Where hotspots, tube and regions go: over the volume in volume mode, else with the surface."""
        return self.overlay if self._mode == "volume" else self.renderer

    def _remove(self, actor: vtkActor) -> None:
        self.renderer.RemoveActor(actor)
        self.overlay.RemoveActor(actor)

    def _timed(self, part: str, started: float) -> None:
        self.timings[part] = time.perf_counter() - started

    def _rebuild_anatomy(self) -> None:
        """Show the anatomy in the current mode (surfaces are cached per image)."""
        started = time.perf_counter()
        anatomy = self.scene.anatomy
        props = self.scene.display.get("anatomical")
        visible = props is None or props.visible
        for prop3d in (self._anatomy_actor, self._anatomy_volume):
            if prop3d is not None:
                self.renderer.RemoveViewProp(prop3d)
        self._anatomy_actor = None
        if self._mode == "surface":
            polydata = self._anatomy_surface(anatomy)
            actor = surface_actor(polydata, anatomy.voxel_to_world, ANATOMY_SURFACE_COLOR,
                                  ANATOMY_SURFACE_OPACITY, specular=0.05)
            actor.SetVisibility(visible)
            self.renderer.AddActor(actor)
            self._anatomy_actor = actor
        else:
            volume = self._anatomy_volume_prop(anatomy)
            volume.SetVisibility(visible)
            self.renderer.AddVolume(volume)
        self._timed("anatomy", started)

    def _anatomy_surface(self, anatomy: Volume) -> vtkPolyData:
        """Smoothed, decimated envelope of the anatomy on a 2× block-averaged grid (cached)."""
        key = _volume_key(anatomy)
        if key not in self._anatomy_cache:
            data = np.asarray(anatomy.data)
            level = anatomy_threshold(data)
            coarse = ndimage.gaussian_filter(block_mean_2x(data), sigma=0.7)
            image = image_data(coarse, origin=(0.5, 0.5, 0.5), spacing=2.0)
            self._anatomy_cache = {key: contour(image, level, smooth_iterations=15,
                                                max_triangles=ANATOMY_MAX_TRIANGLES)}
        return self._anatomy_cache[key]

    def _anatomy_volume_prop(self, anatomy: Volume) -> vtkVolume:
        """The ray-cast volume of the anatomy (:func:`anatomy_volume`, built once per image) with
        colour and opacity from its intensity distribution (:meth:`_apply_transfer_function`)."""
        key = _volume_key(anatomy)
        if self._anatomy_volume is None or self._anatomy_volume_key != key:
            gpu = not self.headless and _gpu_volume_rendering_ok(self._window, self._software_gl)
            # Only the GPU ray caster takes part in depth peeling (sorted with the translucent
            # surfaces); asking it of the CPU ray caster garbles the frame.
            self.renderer.SetUseDepthPeelingForVolumes(gpu)
            self._anatomy_volume = anatomy_volume(anatomy.data, anatomy.voxel_to_world, gpu)
            self._anatomy_volume_key = key
        self._apply_transfer_function(anatomy)
        return self._anatomy_volume

    def _apply_transfer_function(self, anatomy: Volume) -> None:
        """Colour and opacity of the volume from the anatomy's landmarks and the user's choices.

        The strided sample is taken once per image (a few ms even for a 512×512×300 memmap);
        changing the preset, opacity or threshold only rebuilds the control points.
        """
        key = _volume_key(anatomy)
        if key not in self._tf_samples:
            self._tf_samples = {key: intensity_sample(anatomy.data)}
            self._tf_automatic = landmarks(self._tf_samples[key])
            self._tf_background = None  # a threshold in another image's units means nothing here
        self._tf_marks = landmarks(self._tf_samples[key], background=self._tf_background)
        self._tf = transfer_function(self._tf_marks, self._tf_preset, self._tf_opacity)
        if self._anatomy_volume is not None:
            apply_transfer_function(self._anatomy_volume, self._tf)
        self._sync_volume_controls()

    def _rebuild_fluorine(self) -> None:
        """Hotspot shells and cores (tube and specks excluded) plus the neutral reference tube."""
        started = time.perf_counter()
        for actor in self._hotspot_actors:
            self._remove(actor)
        self._hotspot_actors = []
        self._hotspot_colors = []
        self._tube_drawn = False
        fluorine = self.scene.volumes.get("fluorine")
        props = self.scene.display.get("fluorine")
        if fluorine is None or props is None:
            self._update_legend()
            self._timed("fluorine", started)
            return
        data = np.nan_to_num(np.asarray(fluorine.data, dtype=np.float32))
        threshold = _fluorine_threshold(props)
        tube = calibration_mask(self.scene.volumes, self.scene.region_names(), fluorine)
        tube = np.zeros(data.shape, bool) if tube is None else tube
        above = data > threshold
        min_cluster = self.scene.study.calibration.min_cluster_voxels
        cells = clusters_at_least(above & ~tube, min_cluster)
        lut = colormap_lut(props.colormap)
        core_level = threshold + HOTSPOT_CORE_FRACTION * (float(props.levels[1]) - threshold)
        hot = hotspot_field(data, cells)
        if hot is not None:
            image = image_data(hot.values, hot.origin, hot.spacing)
            for level, position, opacity in zip((threshold, core_level), HOTSPOT_LUT_POSITIONS, HOTSPOT_OPACITIES):
                polydata = contour(image, level, smooth_iterations=HOTSPOT_SMOOTH_ITERATIONS)
                if polydata.GetNumberOfPoints():
                    rgb = rgb01(lut[round(position * 255)])
                    self._hotspot_colors.append(rgb)
                    self._hotspot_actors.append(
                        surface_actor(polydata, fluorine.voxel_to_world, rgb, opacity * props.opacity, specular=0.4))
        # The calibration mask also holds the "background" region's noise specks: keep clusters.
        tube_field = hotspot_field(data, clusters_at_least(tube & above, min_cluster), upsample=1)
        if tube_field is not None:
            polydata = contour(image_data(tube_field.values, tube_field.origin), threshold, smooth_iterations=10)
            if polydata.GetNumberOfPoints():
                self._hotspot_actors.append(surface_actor(polydata, fluorine.voxel_to_world, TUBE_COLOR, TUBE_OPACITY))
                self._tube_drawn = True
        for actor in self._hotspot_actors:
            actor.SetVisibility(props.visible)
            self._content_renderer().AddActor(actor)
        self._update_legend()
        self._timed("fluorine", started)

    def _rebuild_regions(self) -> None:
        """One smoothed surface per drawn label of the region map, in its label-table colour."""
        started = time.perf_counter()
        for actor in self._region_actors.values():
            self._remove(actor)
        self._region_actors = {}
        regions = self.scene.volumes.get("regions")
        if regions is None:
            self._timed("regions", started)
            return
        # boxes per label present (find_objects on raw values allocates up to the largest label)
        values, compact = compact_labels(np.asarray(regions.data))
        boxes = ndimage.find_objects(compact)
        table = self.scene.label_table()  # the names and colours the 2-D views draw
        for index, box in enumerate(boxes):
            label = int(values[index])
            name = table.name(label)
            if box is None or name in REGIONS_SKIPPED:
                continue
            padded = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, n)) for s, n in zip(box, compact.shape))
            mask = ndimage.gaussian_filter((compact[padded] == index + 1).astype(np.float32), REGION_SMOOTH_SIGMA)
            image = image_data(mask, tuple(float(s.start) for s in padded))  # type: ignore[arg-type]
            polydata = contour(image, 0.5, smooth_iterations=10)
            if not polydata.GetNumberOfPoints():
                continue
            actor = surface_actor(polydata, regions.voxel_to_world, rgb01(table.color(label)), 1.0)
            self._region_actors[label] = actor
            self._content_renderer().AddActor(actor)
        self._apply_region_display()
        self._timed("regions", started)

    def _apply_region_display(self) -> None:
        props = self.scene.display.get("regions")
        layer_opacity = props.opacity if props is not None else 1.0
        table = self.scene.label_table()
        for label, actor in self._region_actors.items():
            name = table.name(label)
            actor.GetProperty().SetColor(*rgb01(table.color(label)))
            actor.GetProperty().SetOpacity(layer_opacity * REGION_OPACITY.get(name, REGION_DEFAULT_OPACITY))
            actor.SetVisibility(props is None or props.visible)
        self._update_legend()

    def _update_cursor(self) -> None:
        self._cursor.SetPosition(*np.asarray(self.scene.cursor, dtype=float))


# -- small private helpers ----------------------------------------------------------------------

def _weak_callback(view: VolumeView, method: str) -> Callable[..., None]:
    """A scene callback that calls ``view.<method>`` while the view (and its C++ side) lives.

    A bound method would let the scene keep a discarded view alive, and calling into a widget
    whose C++ object was deleted raises.
    """
    import weakref

    from shiboken6 import isValid

    ref = weakref.ref(view)

    def callback(**info: Any) -> None:
        target = ref()
        if target is not None and isValid(target):
            getattr(target, method)(**info)

    return callback


def _volume_key(volume: Volume) -> Any:
    """Identity of an image for caching: its file and grid when it has one, else the object."""
    if volume.source is not None:
        return (str(volume.source), volume.shape, volume.voxel_to_world.tobytes())
    return id(volume)


def _fluorine_threshold(props: Any) -> float:
    """The ¹⁹F contour level: the display's visible-range floor, else its low level."""
    low = float(props.visible_range[0])
    return low if np.isfinite(low) else float(props.levels[0])


def _software_gl(window: Any) -> bool | None:
    """Whether the render window's OpenGL is a software emulation; None before its context exists."""
    try:
        report = window.ReportCapabilities().lower()
    except Exception:  # noqa: BLE001 — no context yet
        return None
    renderer = next((line for line in report.splitlines() if "opengl renderer string" in line), None)
    if renderer is None:
        return None
    return any(name in renderer for name in SOFTWARE_GL_NAMES)


def _gpu_volume_rendering_ok(window: Any, software: bool | None) -> bool:
    """Whether to use the GPU ray caster: a hardware OpenGL context (else VTK's CPU ray caster).

    Software OpenGL (Mesa llvmpipe under Xvfb or in VMs) runs the GPU ray caster on the CPU
    several times slower than the CPU ray caster itself (≈ 2–4 s against ≈ 0.5 s a frame).
    """
    try:
        if not window.SupportsOpenGL():
            return False
    except Exception:  # noqa: BLE001 — any failure means "use the CPU mapper"
        return False
    if software is None:
        software = _software_gl(window)
    return software is False
