"""Volume: a 3-D array placed in world space.

A volume knows its voxels, where they are (``voxel_to_world``, RAS+ millimetres, the NIfTI
convention: +x toward the patient's right, +y anterior, +z superior), what it measures (its
``role`` and ``units``) and where it came from. It does not know how it is displayed (that is
:mod:`viewer.core.display`) nor how it is stored (that is :mod:`viewer.core.io`), following
3D Slicer's split of data, display and storage nodes.

Data may be lazy: an uncompressed ``.nii`` is memory-mapped by nibabel, so opening a
512×512×300 study does not copy it into memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

#: Every role an image can play in a timepoint (PRODUCT.md §2).
ROLES: tuple[str, ...] = (
    "anatomical",
    "fluorine",
    "spio",
    "gd",
    "pet",
    "sodium",
    "adc",
    "tmax",
    "regions",
    "other",
)

#: Units of each role's voxel values, as shown next to numbers and colour bars.
ROLE_UNITS: Mapping[str, str] = {
    "anatomical": "a.u.",
    "fluorine": "a.u.",
    "spio": "1/s",
    "gd": "1/s",
    "pet": "SUV",
    "sodium": "mM",
    "adc": "10⁻⁶ mm²/s",
    "tmax": "s",
    "regions": "label",
    "other": "",  # the manifest's other_units, or what the reader typed when adding it
}

#: What each role's values are, in words (used by readouts and colour bar titles).
ROLE_QUANTITY: Mapping[str, str] = {
    "anatomical": "anatomy",
    "fluorine": "¹⁹F signal",
    "spio": "ΔR2*",
    "gd": "ΔR1",
    "pet": "PET",
    "sodium": "TSC",
    "adc": "ADC",
    "tmax": "Tmax",
    "regions": "region",
    "other": "other image",
}


#: The key in ``Volume.meta`` of the identity of the file the voxels were read from
#: (:func:`viewer.core.io.levels_cache.file_identity`): set by the reader, removed when the
#: voxels are edited, so numbers cached for the file are never used for other voxels.
FILE_IDENTITY = "file_identity"


def _as_affine(matrix: Any) -> np.ndarray:
    affine = np.asarray(matrix, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"an affine must be 4×4, got {affine.shape}")
    return affine


@dataclass(eq=False)
class Volume:
    """A 3-D image with its voxel→world affine.

    Attributes:
        voxel_to_world: 4×4 affine from voxel indices (i, j, k) to RAS+ world mm.
        role: one of :data:`ROLES`.
        units: units of the voxel values (see :data:`ROLE_UNITS`).
        name: short human name ("day 7 ¹⁹F").
        source: file or folder it was read from, if any.
        meta: free-form facts from the file (e.g. how SUV was derived).
    """

    _data: Any
    voxel_to_world: np.ndarray
    role: str = "anatomical"
    units: str = ""
    name: str = ""
    source: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")
        self.voxel_to_world = _as_affine(self.voxel_to_world)
        if not self.units:
            self.units = ROLE_UNITS[self.role]
        if len(self.shape) != 3:
            raise ValueError(f"a Volume is 3-D, got shape {self.shape}")

    @classmethod
    def from_array(
        cls,
        data: np.ndarray,
        voxel_to_world: Any,
        role: str = "anatomical",
        units: str = "",
        name: str = "",
        source: Path | None = None,
        meta: dict[str, Any] | None = None,
    ) -> "Volume":
        """Wrap an in-memory array."""
        return cls(np.asarray(data), voxel_to_world, role, units, name, source, dict(meta or {}))

    # -- data --------------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The voxel array, indexed ``[i, j, k]`` (a ``np.memmap`` for uncompressed files)."""
        return self._data

    @property
    def is_memory_mapped(self) -> bool:
        """True when the voxels stay on disk and are paged in on demand."""
        return isinstance(self._data, np.memmap)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self._data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    # -- geometry ----------------------------------------------------------------------------
    @property
    def world_to_voxel(self) -> np.ndarray:
        """Inverse of :attr:`voxel_to_world` (cached; recomputed if the affine is replaced)."""
        cached = self.__dict__.get("_inverse")
        if cached is None or cached[0] is not self.voxel_to_world:
            cached = (self.voxel_to_world, np.linalg.inv(self.voxel_to_world))
            self.__dict__["_inverse"] = cached
        return cached[1]

    @property
    def spacing_mm(self) -> np.ndarray:
        """Length in mm of one voxel step along each array axis."""
        return np.linalg.norm(self.voxel_to_world[:3, :3], axis=0)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³ (|det| of the linear part, exact for oblique grids)."""
        return float(abs(np.linalg.det(self.voxel_to_world[:3, :3])))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm³)."""
        return self.voxel_volume_mm3 / 1000.0

    def voxel_to_world_points(self, ijk: np.ndarray) -> np.ndarray:
        """World mm of voxel coordinates given as an (N, 3) array."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.voxel_to_world[:3, :3].T + self.voxel_to_world[:3, 3]

    def world_to_voxel_points(self, xyz: np.ndarray) -> np.ndarray:
        """Continuous voxel coordinates of world points given as an (N, 3) array."""
        inverse = self.world_to_voxel
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inverse[:3, :3].T + inverse[:3, 3]

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world box (min, max) enclosing the voxel centres' outer faces."""
        corners = np.array(
            [[i, j, k] for i in (-0.5, self.shape[0] - 0.5)
             for j in (-0.5, self.shape[1] - 0.5) for k in (-0.5, self.shape[2] - 0.5)]
        )
        world = self.voxel_to_world_points(corners)
        return world.min(axis=0), world.max(axis=0)

    def center_world(self) -> np.ndarray:
        """World position of the centre of the grid."""
        return self.voxel_to_world_points((np.array(self.shape, dtype=float) - 1) / 2.0)

    def axcodes(self) -> tuple[str, str, str]:
        """Orientation letters of the array axes (nibabel's ``aff2axcodes``, e.g. ('R','A','S'))."""
        import nibabel.orientations as nio

        return tuple(nio.aff2axcodes(self.voxel_to_world))  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"Volume(name={self.name!r}, role={self.role!r}, shape={self.shape}, "
            f"spacing_mm={np.round(self.spacing_mm, 3).tolist()}, units={self.units!r})"
        )
