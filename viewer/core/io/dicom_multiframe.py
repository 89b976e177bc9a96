"""Enhanced multi-frame DICOM (MR, CT, PET): frames placed by their functional groups."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from viewer.core.errors import file_error
from viewer.core.io.dicom_frames import Frame
from viewer.core.io.dicom_scan import number_of_frames


def enhanced_frames(where: Path, path: Path, ds: Dataset) -> list[Frame]:
    """Every frame of an enhanced multi-frame file."""
    raise file_error(where, f"{path.name} is a multi-frame (enhanced) DICOM file with {number_of_frames(ds)} "
                            "frames, which cannot be read yet")
