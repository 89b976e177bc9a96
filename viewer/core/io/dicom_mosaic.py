"""Siemens MOSAIC files: many slices tiled into one stored image.

Why these rules:
- A MOSAIC is recognised by ImageType containing "MOSAIC" or by the Siemens CSA image header
  value NumberOfImagesInMosaic; reading one as a single slice would put every tile at the
  wrong place (a 360×360×1 image instead of 72×72×20), so it is never read as a plain slice.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from viewer.core.errors import file_error
from viewer.core.io.dicom_frames import Frame


def is_mosaic(ds: Dataset) -> bool:
    """True for a Siemens MOSAIC image (ImageType holds "MOSAIC")."""
    image_type = ds.get("ImageType") or ()
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return any(str(v).strip().upper() == "MOSAIC" for v in values)


def mosaic_frames(where: Path, path: Path, ds: Dataset) -> list[Frame]:
    """The tiles of a MOSAIC file as frames."""
    raise file_error(where, f"{path.name} is a Siemens MOSAIC image, which cannot be read yet")
