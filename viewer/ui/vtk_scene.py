"""The VTK pieces the 3D view is built from, without the widget: grids as vtkImageData placed by
their voxel→world matrices, isosurfaces, the anatomy's volume with its transfer function, the
cursor and the orientation cube. Geometry as :mod:`viewer.ui.volume_view` explains: every actor
in its own voxel grid, placed in world space (RAS mm) by the volume's 4×4 ``voxel_to_world``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtkmodules.vtkRenderingOpenGL2  # registers the OpenGL back end
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  (registers the GPU volume mapper)
from scipy import ndimage
from vtkmodules.util.numpy_support import numpy_to_vtk
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
from vtkmodules.vtkFiltersSources import vtkLineSource
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkColorTransferFunction,
    vtkPolyDataMapper,
    vtkVolume,
    vtkVolumeProperty,
)
from vtkmodules.vtkRenderingVolume import vtkFixedPointVolumeRayCastMapper
from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

from viewer.core.transfer_function import (
    TransferFunction,
    sample_stride,
)

#: ¹⁹F maps are upsampled this many times (linear) around the hotspots before contouring, so
#: a cluster of a few 2 mm voxels is drawn as a rounded blob rather than a diamond.
HOTSPOT_UPSAMPLE = 2


#: Half length of each cursor axis (mm) and radius of its sphere (mm).
CURSOR_HALF_LENGTH_MM = 14.0
#: The crosshair's arms start this far from the cursor (mm), so what lies at the cursor stays
#: visible: a ¹⁹F hotspot at a scanner's noise is only a few millimetres across.
CURSOR_GAP_MM = 5.0
CURSOR_COLOR = (0.1, 1.0, 0.2)


#: Volume rendering, CPU ray caster: at least one ray per this many pixels in a still frame
#: (1.5 costs ≈ half of 1; the shaded surface stays sharp), and at most this many while the
#: user rotates (VTK picks the distance that keeps the interactor's frame rate).
CPU_IMAGE_SAMPLE_DISTANCE = 1.5
CPU_MAX_IMAGE_SAMPLE_DISTANCE = 4.0
#: Volume rendering: samples along a ray every this many voxels in a still frame, and while
#: rotating (trilinear interpolation between samples; opacity is corrected for the step).
VOLUME_SAMPLE_VOXELS = 1.0
VOLUME_INTERACTIVE_SAMPLE_VOXELS = 2.0
#: CPU ray caster: images with more voxels are ray-cast on a regular 2× (3×, …) strided copy.
#: Shading needs a gradient per voxel: for a 512×512×300 int16 CT ≈ 6 s at the first frame and
#: ≈ 0.45 s a frame after (llvmpipe, 2 cores); its 256×256×150 copy ≈ 1.9 s once, ≈ 0.3 s a frame.
CPU_MAX_VOXELS = 32_000_000
#: Shading of the volume rendering (Phong: ambient, diffuse, specular, specular power): the
#: gradient of the intensity acts as a surface normal, so the cortex shows its gyri and sulci.
VOLUME_SHADING = (0.25, 0.75, 0.15, 12.0)


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


def anatomy_volume(data: np.ndarray, voxel_to_world: np.ndarray, gpu: bool) -> vtkVolume:
    """A shaded, trilinear ray-cast volume of ``data`` placed in world mm by ``voxel_to_world``.

    ``gpu``: VTK's GPU ray caster (smart mapper) on the full grid; else the CPU ray caster, on a
    strided copy of images above ``CPU_MAX_VOXELS`` (a strided view of a memmap: only the copy
    handed to VTK is made). Sample distances follow the voxel size; VTK coarsens them while
    the user rotates. Colour and opacity: :func:`apply_transfer_function`.
    """
    voxel_mm = _mean_voxel_mm(voxel_to_world)
    stride = 1 if gpu else sample_stride(np.shape(data), CPU_MAX_VOXELS)
    array = np.asarray(data[::stride, ::stride, ::stride] if stride > 1 else data)
    if gpu:
        mapper = vtkSmartVolumeMapper()
        mapper.SetAutoAdjustSampleDistances(1)
        mapper.SetInteractiveUpdateRate(10.0)
    else:
        mapper = vtkFixedPointVolumeRayCastMapper()
        mapper.SetAutoAdjustSampleDistances(1)
        mapper.SetMinimumImageSampleDistance(CPU_IMAGE_SAMPLE_DISTANCE)
        mapper.SetImageSampleDistance(CPU_IMAGE_SAMPLE_DISTANCE)
        mapper.SetMaximumImageSampleDistance(CPU_MAX_IMAGE_SAMPLE_DISTANCE)
        mapper.SetSampleDistance(VOLUME_SAMPLE_VOXELS * voxel_mm * stride)
        mapper.SetInteractiveSampleDistance(VOLUME_INTERACTIVE_SAMPLE_VOXELS * voxel_mm * stride)
    mapper.SetInputData(image_data(array, spacing=float(stride)))
    volume = vtkVolume()
    volume.SetMapper(mapper)
    volume.SetUserMatrix(vtk_matrix(voxel_to_world))
    prop = vtkVolumeProperty()
    prop.SetInterpolationTypeToLinear()
    ambient, diffuse, specular, power = VOLUME_SHADING
    prop.SetAmbient(ambient)
    prop.SetDiffuse(diffuse)
    prop.SetSpecular(specular)
    prop.SetSpecularPower(power)
    # opacities are per voxel length of the image, whatever its voxel size or stride
    prop.SetScalarOpacityUnitDistance(voxel_mm)
    volume.SetProperty(prop)
    return volume


def apply_transfer_function(volume: vtkVolume, tf: TransferFunction) -> None:
    """Load a :class:`TransferFunction`'s control points and shading into a volume's property."""
    prop = volume.GetProperty()
    colours = vtkColorTransferFunction()
    for value, r, g, b in tf.colour:
        colours.AddRGBPoint(value, r, g, b)
    opacity = vtkPiecewiseFunction()
    for value, alpha in tf.opacity:
        opacity.AddPoint(value, alpha)
    prop.SetColor(colours)
    prop.SetScalarOpacity(opacity)
    prop.SetShade(int(tf.shade))


def _mean_voxel_mm(voxel_to_world: np.ndarray) -> float:
    """Mean edge length (mm) of a voxel of a grid with this voxel→world affine."""
    return float(np.mean(np.linalg.norm(np.asarray(voxel_to_world, dtype=float)[:3, :3], axis=0)))


def cursor_actor() -> vtkActor:
    """Six arms along the three axes, from ``CURSOR_GAP_MM`` to ``CURSOR_HALF_LENGTH_MM`` on
    either side of 0: they point at the cursor without covering what lies there."""
    append = vtkAppendPolyData()
    for axis in range(3):
        for sign in (-1.0, 1.0):
            start = [0.0, 0.0, 0.0]
            end = [0.0, 0.0, 0.0]
            start[axis], end[axis] = sign * CURSOR_GAP_MM, sign * CURSOR_HALF_LENGTH_MM
            line = vtkLineSource()
            line.SetPoint1(*start)
            line.SetPoint2(*end)
            append.AddInputConnection(line.GetOutputPort())
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


def rgb01(rgb: tuple[int, int, int] | np.ndarray) -> tuple[float, float, float]:
    return tuple(float(c) / 255.0 for c in rgb[:3])  # type: ignore[return-value]


# -- the widget --------------------------------------------------------------------------------
