"""VolumeView: the 3D view (VTK) — anatomy surface or volume rendering, ¹⁹F hotspots, regions, cursor.

The main window creates this widget lazily (only in the 2×2 layout), so VTK is imported here
and nowhere on the start-up path.

Geometry: every volume keeps its own voxel grid. Each actor is built in *voxel* coordinates
(vtkImageData with spacing 1, origin at the crop offset) and placed in world space (RAS mm) by
the volume's 4×4 ``voxel_to_world`` as the actor's user matrix. That is exact for oblique,
rotated and flipped grids; nothing is resampled to a common grid.

What is drawn:

* anatomy — a smoothed isosurface of the T1 on a 2× block-averaged grid (fast; a brain or skin
  envelope), semi-transparent so what lies inside shows; or, in ``"volume"`` mode, a GPU ray
  cast with a grey ramp from the anatomy's display levels;
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
from dataclasses import dataclass
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
    QVBoxLayout,
    QWidget,
)
from scipy import ndimage
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonDataModel import (
    vtkImageData,
    vtkPiecewiseFunction,
    vtkPolyData,
)
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkFiltersCore import (
    vtkAppendPolyData,
    vtkFlyingEdges3D,
    vtkPolyDataNormals,
    vtkQuadricDecimation,
    vtkWindowedSincPolyDataFilter,
)
from vtkmodules.vtkFiltersSources import vtkLineSource, vtkSphereSource
from vtkmodules.vtkInteractionWidgets import vtkOrientationMarkerWidget
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkColorTransferFunction,
    vtkCoordinate,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkTextActor,
    vtkVolume,
    vtkVolumeProperty,
    vtkWindowToImageFilter,
)
from vtkmodules.vtkRenderingVolume import vtkFixedPointVolumeRayCastMapper
from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

from viewer.core.display import colormap_lut
from viewer.core.layers import calibration_mask
from viewer.core.spaces import compact_labels
from viewer.core.volume import Volume

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
#: ¹⁹F maps are upsampled this many times (linear) around the hotspots before contouring, so
#: a cluster of a few 2 mm voxels is drawn as a rounded blob rather than a diamond.
HOTSPOT_UPSAMPLE = 2
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

#: Half length of each cursor axis (mm) and radius of its sphere (mm).
CURSOR_HALF_LENGTH_MM = 14.0
CURSOR_RADIUS_MM = 2.0
CURSOR_COLOR = (0.1, 1.0, 0.2)

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

#: Volume rendering: opacity per voxel length of the brightest tissue. Low, so that through
#: ≈ 100 mm of brain the anatomy stays a see-through fog around hotspots and regions.
VOLUME_MAX_OPACITY = 0.008
#: CPU ray caster: one ray per this many pixels (1.5 halves the cost, barely visible on a fog).
CPU_IMAGE_SAMPLE_DISTANCE = 1.5
#: OpenGL renderers that are software emulations: the GPU ray caster crawls there (≈ 2–4 s a
#: frame on llvmpipe for the demo) while VTK's CPU ray caster takes ≈ 0.5 s.
SOFTWARE_GL_NAMES = ("llvmpipe", "softpipe", "swiftshader", "software rasterizer", "swr")


# -- pure helpers (numpy and VTK data, no rendering) -------------------------------------------

def vtk_matrix(affine: np.ndarray) -> vtkMatrix4x4:
    """A vtkMatrix4x4 holding a 4×4 numpy affine (row-major, as VTK expects)."""
    matrix = vtkMatrix4x4()
    affine = np.asarray(affine, dtype=float)
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(affine[row, column]))
    return matrix


def image_data(array: np.ndarray, origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
               spacing: float = 1.0) -> vtkImageData:
    """Wrap a numpy [i, j, k] array as vtkImageData in *voxel* units of its source grid.

    ``origin`` is the voxel index of the first sample and ``spacing`` the step between samples,
    both in source voxels (e.g. 2 for a 2× downsample), so the source's ``voxel_to_world`` as
    user matrix places the result in world mm. VTK stores x fastest, hence the Fortran order.
    """
    array = np.asarray(array)
    image = vtkImageData()
    image.SetDimensions(*array.shape)
    image.SetOrigin(*origin)
    image.SetSpacing(spacing, spacing, spacing)
    flat = np.ravel(array, order="F")
    scalars = numpy_to_vtk(np.ascontiguousarray(flat), deep=True)
    scalars.SetName("values")
    image.GetPointData().SetScalars(scalars)
    return image


def block_mean_2x(data: np.ndarray) -> np.ndarray:
    """Average 2×2×2 blocks (float32); odd trailing planes are dropped. Sample n sits at voxel 2n+0.5."""
    data = np.asarray(data, dtype=np.float32)
    ni, nj, nk = (s // 2 * 2 for s in data.shape)
    blocks = data[:ni, :nj, :nk].reshape(ni // 2, 2, nj // 2, 2, nk // 2, 2)
    return blocks.mean(axis=(1, 3, 5))


def anatomy_threshold(data: np.ndarray, percentile: float = 30.0) -> float:
    """Isosurface level of the anatomy: a percentile of the nonzero voxels, halved.

    The 30th percentile of a T1's nonzero voxels lies in grey matter; half of it falls between
    the background (≈ 0) and tissue, so the contour is the outer envelope (brain for a
    skull-stripped T1, skin otherwise) rather than a grey/white boundary.
    """
    values = np.asarray(data).reshape(-1)
    values = values[::max(1, values.size // 2_000_000)]
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return 0.5
    return 0.5 * float(np.percentile(values, percentile))


def bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, ...] | None:
    """Slices of the bounding box of a mask grown by ``pad`` voxels (clipped), or None if empty."""
    found = ndimage.find_objects(mask.astype(np.int8))
    if not found or found[0] is None:
        return None
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(found[0], mask.shape))


def clusters_at_least(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """The mask without its 26-connected components smaller than ``min_voxels``."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


@dataclass
class HotspotField:
    """A cropped, upsampled piece of a ¹⁹F map ready for contouring.

    Attributes:
        values: the crop (float32), upsampled ``HOTSPOT_UPSAMPLE`` times.
        origin: voxel index (in the ¹⁹F grid) of ``values[0, 0, 0]``.
        spacing: step between samples in ¹⁹F voxels (1 / upsampling).
    """

    values: np.ndarray
    origin: tuple[float, float, float]
    spacing: float


def hotspot_field(data: np.ndarray, keep: np.ndarray, upsample: int = HOTSPOT_UPSAMPLE) -> HotspotField | None:
    """The ¹⁹F values where ``keep`` is true (zero elsewhere), cropped around it and upsampled.

    Zeroing outside ``keep`` removes the reference tube and noise specks before contouring;
    cropping keeps the upsampling cheap whatever the map's size.
    """
    box = bounding_box(keep, pad=2)
    if box is None:
        return None
    crop = np.where(keep[box], np.nan_to_num(np.asarray(data[box], dtype=np.float32)), np.float32(0))
    if upsample > 1:
        # (n − 1)·u + 1 samples per axis put sample m exactly at voxel m / u (zoom maps the
        # first and last samples onto the first and last voxels when grid_mode is False).
        factors = [((n - 1) * upsample + 1) / n for n in crop.shape]
        crop = ndimage.zoom(crop, factors, order=1, grid_mode=False)
    return HotspotField(crop, tuple(float(s.start) for s in box), 1.0 / max(upsample, 1))  # type: ignore[arg-type]


# -- VTK pipelines ---------------------------------------------------------------------------

def contour(image: vtkImageData, level: float, smooth_iterations: int = 0,
            max_triangles: int | None = None) -> vtkPolyData:
    """Isosurface of an image at ``level`` (flying edges), optionally decimated and smoothed.

    Decimation and windowed-sinc smoothing keep translucent rendering fast and remove the
    voxel staircase. Normals are recomputed afterwards for smooth shading.
    """
    surface = vtkFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, float(level))
    surface.ComputeNormalsOff()
    surface.ComputeScalarsOff()
    surface.Update()
    output = surface.GetOutput()
    if output.GetNumberOfPoints() == 0:
        return output
    if max_triangles is not None and output.GetNumberOfCells() > max_triangles:
        decimate = vtkQuadricDecimation()
        decimate.SetInputData(output)
        decimate.SetTargetReduction(1.0 - max_triangles / output.GetNumberOfCells())
        decimate.Update()
        output = decimate.GetOutput()
    if smooth_iterations > 0:
        smoother = vtkWindowedSincPolyDataFilter()
        smoother.SetInputData(output)
        smoother.SetNumberOfIterations(smooth_iterations)
        smoother.SetPassBand(0.05)
        smoother.NonManifoldSmoothingOn()
        smoother.NormalizeCoordinatesOn()
        smoother.Update()
        output = smoother.GetOutput()
    normals = vtkPolyDataNormals()
    normals.SetInputData(output)
    normals.ConsistencyOn()
    normals.SplittingOff()
    normals.Update()
    return normals.GetOutput()


def surface_actor(polydata: vtkPolyData, affine: np.ndarray, rgb: tuple[float, float, float],
                  opacity: float, specular: float = 0.15) -> vtkActor:
    """An actor for a voxel-space surface placed in world mm by ``affine`` (voxel→world)."""
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.SetUserMatrix(vtk_matrix(affine))
    prop = actor.GetProperty()
    prop.SetColor(*rgb)
    prop.SetOpacity(float(opacity))
    prop.SetSpecular(specular)
    prop.SetSpecularPower(30)
    return actor


def cursor_actor() -> vtkActor:
    """Three orthogonal lines (± ``CURSOR_HALF_LENGTH_MM``) and a small sphere, centred at 0."""
    append = vtkAppendPolyData()
    for axis in range(3):
        line = vtkLineSource()
        start = [0.0, 0.0, 0.0]
        end = [0.0, 0.0, 0.0]
        start[axis], end[axis] = -CURSOR_HALF_LENGTH_MM, CURSOR_HALF_LENGTH_MM
        line.SetPoint1(*start)
        line.SetPoint2(*end)
        append.AddInputConnection(line.GetOutputPort())
    sphere = vtkSphereSource()
    sphere.SetRadius(CURSOR_RADIUS_MM)
    sphere.SetThetaResolution(16)
    sphere.SetPhiResolution(12)
    append.AddInputConnection(sphere.GetOutputPort())
    append.Update()
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(append.GetOutput())
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*CURSOR_COLOR)
    prop.SetLineWidth(3.0)
    prop.SetRenderLinesAsTubes(True)
    prop.SetAmbient(0.4)
    actor.PickableOff()
    return actor


def orientation_cube() -> vtkAnnotatedCubeActor:
    """A small cube labelled R/L A/P S/I with RAS world axes, as radiologists expect."""
    cube = vtkAnnotatedCubeActor()
    cube.SetXPlusFaceText("R")
    cube.SetXMinusFaceText("L")
    cube.SetYPlusFaceText("A")
    cube.SetYMinusFaceText("P")
    cube.SetZPlusFaceText("S")
    cube.SetZMinusFaceText("I")
    cube.SetFaceTextScale(0.65)
    cube.GetCubeProperty().SetColor(0.25, 0.27, 0.32)
    cube.GetTextEdgesProperty().SetColor(0.6, 0.6, 0.6)
    for prop in (cube.GetXPlusFaceProperty(), cube.GetXMinusFaceProperty()):
        prop.SetColor(1.0, 0.55, 0.55)
    for prop in (cube.GetYPlusFaceProperty(), cube.GetYMinusFaceProperty()):
        prop.SetColor(0.55, 1.0, 0.55)
    for prop in (cube.GetZPlusFaceProperty(), cube.GetZMinusFaceProperty()):
        prop.SetColor(0.6, 0.7, 1.0)
    return cube


def _rgb01(rgb: tuple[int, int, int] | np.ndarray) -> tuple[float, float, float]:
    return tuple(float(c) / 255.0 for c in rgb[:3])  # type: ignore[return-value]


# -- the widget --------------------------------------------------------------------------------

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
        bar.addWidget(reset)
        bar.addStretch(1)
        layout.addLayout(bar)
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
        self._rebuild_anatomy()
        self._rebuild_fluorine()
        self._rebuild_regions()
        self.request_render()

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
                entries.append((table.name(label), _rgb01(table.color(label))))
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
        """A ray-cast volume of the anatomy (GPU, or CPU on software OpenGL), grey ramp over its
        display levels; the full-resolution grid, placed by its affine like the surfaces."""
        key = _volume_key(anatomy)
        props = self.scene.display.get("anatomical")
        levels = props.levels if props is not None else (0.0, float(np.max(anatomy.data)))
        if self._anatomy_volume is None or self._anatomy_volume_key != key:
            image = image_data(np.asarray(anatomy.data))
            gpu = not self.headless and _gpu_volume_rendering_ok(self._window, self._software_gl)
            if gpu:
                mapper = vtkSmartVolumeMapper()
            else:
                mapper = vtkFixedPointVolumeRayCastMapper()
                mapper.SetImageSampleDistance(CPU_IMAGE_SAMPLE_DISTANCE)
            mapper.SetInputData(image)
            # Only the GPU ray caster takes part in depth peeling (sorted with the translucent
            # surfaces); asking it of the CPU ray caster garbles the frame.
            self.renderer.SetUseDepthPeelingForVolumes(gpu)
            volume = vtkVolume()
            volume.SetMapper(mapper)
            volume.SetUserMatrix(vtk_matrix(anatomy.voxel_to_world))
            volume.SetProperty(vtkVolumeProperty())
            self._anatomy_volume = volume
            self._anatomy_volume_key = key
        _grey_ramp(self._anatomy_volume.GetProperty(), levels, anatomy_threshold(anatomy.data))
        return self._anatomy_volume

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
                    rgb = _rgb01(lut[round(position * 255)])
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
            actor = surface_actor(polydata, regions.voxel_to_world, _rgb01(table.color(label)), 1.0)
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
            actor.GetProperty().SetColor(*_rgb01(table.color(label)))
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


def _grey_ramp(prop: vtkVolumeProperty, levels: tuple[float, float], floor: float) -> None:
    """Grey colour over the display levels; opacity 0 below ``floor`` then a gentle ramp.

    The low maximum opacity keeps the anatomy see-through, like the translucent surface.
    """
    low, high = float(levels[0]), float(levels[1])
    colours = vtkColorTransferFunction()
    colours.AddRGBPoint(low, 0.0, 0.0, 0.0)
    colours.AddRGBPoint(high, 1.0, 1.0, 1.0)
    opacity = vtkPiecewiseFunction()
    opacity.AddPoint(min(floor, high - 1e-3), 0.0)
    opacity.AddPoint(high, VOLUME_MAX_OPACITY)
    prop.SetColor(colours)
    prop.SetScalarOpacity(opacity)
    prop.SetInterpolationTypeToLinear()
    # Unshaded: at such low opacity shading only adds gradient noise (and triples CPU time).
    prop.ShadeOff()


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
