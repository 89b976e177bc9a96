"""A timepoint's regions as a DICOM Segmentation (highdicom), one segment per region.

The label map is first mapped onto the anatomy's grid (nearest neighbour through world space,
:func:`viewer.core.spaces.map_labels_to_grid`, as quantification maps regions), then each
frame of the referenced anatomy takes the labels at its own pixel centres, computed from the
frame's LPS geometry; on a series the anatomy was read from, every pixel centre falls on a
voxel centre, so the SEG holds exactly the regions' voxels on the anatomical grid.

Segment numbers run 1..N in label order (DICOM requires consecutive numbers from 1); the
region's label value is kept as the segment's Tracking ID ("label 5"), its name as the
Segment Label and its colour as the recommended display CIELab value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from viewer.core.dicom_export import concepts
from viewer.core.dicom_export.anatomy import AnatomySeries
from viewer.core.errors import ViewerError
from viewer.core.io.dicom_frames import Frame
from viewer.core.regions import LabelTable
from viewer.core.spaces import map_labels_to_grid
from viewer.core.volume import Volume

#: Region names that are calibration objects (¹⁹F reference tube, noise background), not tissue.
CALIBRATION_NAMES = ("reference", "background")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Segment:
    """One exported region: its label value, segment number, name and tracking UID."""

    label: int
    number: int
    name: str
    tracking_uid: str


def labels_on_frames(regions: Volume, anatomy: Volume, frames: Sequence[Frame]) -> np.ndarray:
    """The region labels at every pixel centre of ``frames`` (frames × rows × columns, int32).

    ``regions`` and ``anatomy`` are placed in the same (reference) world; the frames' geometry
    is in the anatomy file's own scanner space.
    """
    on_grid = map_labels_to_grid(regions, anatomy)
    world_from_file = anatomy.meta.get("world_from_file")
    file_affine = anatomy.voxel_to_world if world_from_file is None else \
        np.linalg.inv(np.asarray(world_from_file, dtype=np.float64)) @ anatomy.voxel_to_world
    to_voxel = np.linalg.inv(file_affine)
    rows, cols = frames[0].shape
    out = np.zeros((len(frames), rows, cols), dtype=np.int32)
    r, c = np.mgrid[0:rows, 0:cols]
    limits = np.array(on_grid.shape)
    for index, frame in enumerate(frames):
        if frame.shape != (rows, cols):
            raise ViewerError(f"{frame.path}: frames of different sizes cannot be segmented as one series")
        pixel_to_lps = np.eye(4)
        pixel_to_lps[:3, 0] = frame.row_cosine * frame.pixel_spacing_mm[1]  # along a row: column index
        pixel_to_lps[:3, 1] = frame.col_cosine * frame.pixel_spacing_mm[0]  # down a column: row index
        pixel_to_lps[:3, 3] = frame.origin_lps
        m = to_voxel @ LPS_TO_RAS @ pixel_to_lps
        ijk = [np.rint(m[a, 0] * c + m[a, 1] * r + m[a, 3]).astype(np.int64) for a in range(3)]
        inside = np.ones((rows, cols), dtype=bool)
        for axis in range(3):
            inside &= (ijk[axis] >= 0) & (ijk[axis] < limits[axis])
            np.clip(ijk[axis], 0, limits[axis] - 1, out=ijk[axis])
        out[index] = np.where(inside, on_grid[ijk[0], ijk[1], ijk[2]], 0)
    return out


def build_segmentation(anatomy_series: AnatomySeries, frame_labels: np.ndarray, table: LabelTable,
                       name_text: Callable[[str], str], series_number: int, software_version: str
                       ) -> tuple[Dataset, list[Segment]]:
    """The Segmentation of the labels present on the frames, and its segments.

    Raises:
        ViewerError: no region has a voxel on the anatomy.
    """
    import highdicom as hd

    present = [int(v) for v in np.unique(frame_labels) if v > 0]
    if not present:
        raise ViewerError("no region has a voxel on the anatomical image; there is nothing to segment")
    numbers = np.zeros(int(max(present)) + 1, dtype=np.uint16)
    segments: list[Segment] = []
    descriptions = []
    for number, label in enumerate(present, start=1):
        numbers[label] = number
        name = name_text(table.name(label))[:64] or f"label {label}"
        segment = Segment(label, number, name, generate_uid())
        segments.append(segment)
        calibration = table.name(label) in CALIBRATION_NAMES
        category = concepts.PHYSICAL_OBJECT if calibration else concepts.TISSUE
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name, segmented_property_category=category,
            segmented_property_type=category, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_uid=segment.tracking_uid, tracking_id=f"label {label}",
            display_color=hd.color.CIELabColor.from_rgb(*table.color(label)),
        ))
    pixels = numbers[frame_labels]
    seg = hd.seg.Segmentation(
        source_images=anatomy_series.datasets, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=series_number, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="cell-therapy-viewer", manufacturer_model_name="cell-therapy-viewer",
        software_versions=software_version, device_serial_number="none",
        content_label="REGIONS", content_description="Regions outlined in cell-therapy-viewer",
        series_description="Regions (cell-therapy-viewer)",
    )
    return seg, segments
