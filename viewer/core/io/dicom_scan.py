"""Finding DICOM files and grouping them into series, headers only.

Shared by the series loader (:mod:`viewer.core.io.dicom`) and the exam importer, so that a
folder a user opens and a folder they import are read by the same rules.

Why these rules:
- Files are found by content, not name: every file under a folder is tried with
  ``pydicom.dcmread(force=False)``; files without the DICOM preamble (README, text, JSON) are
  skipped. PACS exports name files ``IM000123`` or ``1.2.840…`` without an extension.
- A ``DICOMDIR`` given as the path is followed through its directory records (pydicom's
  ``FileSet``), so a CD/DVD export is read in the order and with the files it lists (a record
  pointing outside the DICOMDIR's folder is refused, as the manifest refuses ``../``); a folder
  holding a DICOMDIR is scanned like any folder (its referenced files lie below it), and the
  DICOMDIR itself, having no pixel data, is never taken for an image.
- Pixel data is never read here: elements larger than ``_DEFER_SIZE_BYTES`` are deferred, so
  scanning a 1,000-file exam costs about what ``dcmread(stop_before_pixels=True)`` costs.
- Files are grouped by SeriesInstanceUID. Objects without pixel data (structured reports,
  presentation states, RT plans, KOS) are kept as series with ``has_pixels = False`` so that an
  importer can list them with the reason they are skipped instead of hiding them.
- pydicom warns about non-conforming values (a DS with too many digits, an unknown VR); these
  are the scanner's problem, not the user's, and never reach the terminal. One warning is a
  user's problem: compressed pixel data that ends before its delimiter (a file cut short in a
  copy) — pydicom drops the pixels, so it becomes a "truncated" error here instead of a file
  silently taken for one without an image.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag, Tag

from viewer.core.errors import Cancelled, ViewerError, file_error

#: A file refused as not DICOM is searched for the series' UIDs in this many first bytes
#: (a DICOM header is rarely longer), and UIDs shorter than this are not searched (too
#: likely to occur by chance).
_DAMAGED_SEARCH_BYTES = 65536
_MIN_UID_SEARCH_LENGTH = 16
#: Elements larger than this (bytes) are read lazily, so scanning headers never loads pixels.
_DEFER_SIZE_BYTES = 4096
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: What pydicom warns when encapsulated pixel data ends before its sequence delimiter: it
#: then drops the element, and the file would look like one without an image.
_TRUNCATION_WARNING = "End of file reached before delimiter"
DICOMDIR_NAME = "DICOMDIR"
SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"

#: ``progress(done, total)`` while scanning; ``total`` is the number of candidate files.
ProgressCallback = Callable[[int, int], None]
#: Returns True when the user asked to stop; scanning then raises :class:`ScanCancelled`.
CancelCheck = Callable[[], bool]
#: ``on_damaged(path, message)``: a damaged or truncated file, skipped (for an importer's list).
DamagedCallback = Callable[[Path, str], None]


class ScanCancelled(Cancelled):
    """The user cancelled a scan (the window's Cancel button, Ctrl+C)."""


@dataclass
class DicomSeries:
    """The files of one SeriesInstanceUID and the facts an exam browser shows about it.

    ``files`` are ``(path, header)`` pairs sorted by path; headers have their pixel data
    deferred. Every property reads the first file: a series shares these attributes.
    """

    uid: str
    files: list[tuple[Path, Dataset]] = field(default_factory=list)

    @property
    def first(self) -> Dataset:
        return self.files[0][1]

    def text(self, keyword: str) -> str:
        """The first file's value of ``keyword`` as stripped text ('' when absent)."""
        return tag_text(self.first, keyword)

    @property
    def has_pixels(self) -> bool:
        """True when at least one file holds pixel data."""
        return any(has_pixel_data(ds) for _, ds in self.files)

    def images_only(self) -> "DicomSeries":
        """The same series without its files that hold no pixel data."""
        return DicomSeries(self.uid, [(p, ds) for p, ds in self.files if has_pixel_data(ds)])

    def images_without_pixels(self) -> list[Path]:
        """Files of the image SOP class of this series that hold no pixel data: a slice cut
        short inside its header (pydicom then reads what is there and stops). Without them
        the volume would silently lose a slice, at an end where no gap shows."""
        without = [(path, ds) for path, ds in self.files if not has_pixel_data(ds)]
        if not without:  # the usual case: nothing to compare, no tag read
            return []
        classes = {tag_text(ds, "SOPClassUID") for _, ds in self.files if has_pixel_data(ds)}
        return [path for path, ds in without if tag_text(ds, "SOPClassUID") in classes]

    @property
    def is_segmentation(self) -> bool:
        """A DICOM Segmentation (SEG): pixel data that are region labels, not an image."""
        return self.text("SOPClassUID") == SEGMENTATION_SOP_CLASS

    @property
    def modality(self) -> str:
        return self.text("Modality").upper()

    @property
    def description(self) -> str:
        return self.text("SeriesDescription") or self.text("ProtocolName")

    @property
    def study_uid(self) -> str:
        return self.text("StudyInstanceUID")

    @property
    def study_date(self) -> str:
        """YYYYMMDD of the study (falls back to the series' and the acquisition's date)."""
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            value = self.text(keyword)
            if value:
                return value[:8]
        return ""

    @property
    def nucleus(self) -> str:
        """Imaged nucleus as written ("1H", "19F", "23NA"): classic ImagedNucleus (0018,0085)
        or the enhanced MR ResonantNucleus (0018,9100), '' when neither is present."""
        return self.text("ImagedNucleus") or self.text("ResonantNucleus")

    @property
    def image_type(self) -> tuple[str, ...]:
        """ImageType (classic) or FrameType (enhanced), upper case."""
        value = self.first.get("ImageType") or self.first.get("FrameType")
        if value is None:
            value = _shared_frame_type(self.first)
        return tuple(str(v).strip().upper() for v in _as_list(value))

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def n_images(self) -> int:
        """2-D images stored: the sum of NumberOfFrames (1 for a classic file)."""
        return sum(number_of_frames(ds) for _, ds in self.files)


def tag_text(ds: Dataset, keyword: str) -> str:
    """A tag's value as stripped text ('' when absent or empty).

    Values of the plain-ASCII VRs (UIDs, code strings, dates, times, decimal and integer
    strings) are decoded straight from the file's bytes when pydicom has not converted them
    yet: converting a DS or UI value builds and validates Python objects, and for a 1,000-file
    exam that conversion cost more than reading the files (benchmarks/bench_import.py).
    """
    raw = raw_ascii(ds, keyword)
    if raw is not None:
        return raw
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


#: VRs whose values are ASCII text with ``\\`` between values (PS3.5 §6.2): safe to decode
#: without the dataset's character set.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})


def raw_ascii(ds: Dataset, keyword: str) -> str | None:
    """The stripped text of a not-yet-converted ASCII-VR element, '' when empty, or None when
    the element is absent, already converted, or of another VR (then use pydicom's value)."""
    tag = _tag_of(keyword)
    if tag is None:
        return None
    element = ds.get_item(tag)
    if element is None or not isinstance(element, RawDataElement):
        return None
    vr = element.VR or dictionary_VR(element.tag)
    if vr not in _ASCII_VRS:
        return None
    if not element.value:
        return ""
    text = element.value.decode("ascii", "replace")
    return "\\".join(part.strip(" \x00") for part in text.split("\\")).strip()


def raw_unsigned_short(ds: Dataset, keyword: str) -> int | None:
    """A not-yet-converted single US value (Rows, Columns, SamplesPerPixel) read from its two
    bytes in the file's byte order; None when absent, converted or not one US value."""
    tag = _tag_of(keyword)
    element = None if tag is None else ds.get_item(tag)
    if not isinstance(element, RawDataElement) or element.value is None or len(element.value) != 2:
        return None
    if (element.VR or dictionary_VR(element.tag)) != "US":
        return None
    return int.from_bytes(element.value, "little" if element.is_little_endian else "big")


def raw_value_bytes(ds: Dataset, keyword: str) -> bytes | None:
    """The bytes of a not-yet-converted element (None when absent or already converted): for
    cheap tests such as "does Manufacturer mention SIEMENS" without decoding its character set."""
    tag = _tag_of(keyword)
    element = None if tag is None else ds.get_item(tag)
    if not isinstance(element, RawDataElement) or element.value is None:
        return None
    return bytes(element.value)


@functools.lru_cache(maxsize=512)
def _tag_of(keyword: str) -> BaseTag | None:
    """The tag of a keyword, looked up once (pydicom resolves keywords on every access)."""
    try:
        return Tag(keyword)
    except (KeyError, ValueError):
        return None


def has_pixel_data(ds: Dataset) -> bool:
    """True when the dataset holds an image (integer or float pixel data)."""
    return any(key in ds for key in PIXEL_KEYWORDS)


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames as an int (1 when absent or malformed)."""
    try:
        return max(int(str(ds.get("NumberOfFrames", 1) or 1).strip()), 1)
    except ValueError:
        return 1


def read_header(path: Path) -> Dataset | None:
    """The dataset with large values (pixels) deferred, or None for a non-DICOM file.

    Raises:
        ViewerError: the file cannot be read (permissions), is truncated or is damaged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        return _read_header(path, caught)


def _read_header(path: Path, caught: list) -> Dataset | None:
    """:func:`read_header` inside a caller's ``catch_warnings(record=True)`` (one context for
    a whole scan: entering one per file cost a tenth of the scan); ``caught`` is emptied."""
    try:
        ds = pydicom.dcmread(path, force=False, defer_size=_DEFER_SIZE_BYTES)
    except InvalidDicomError:
        return None
    except (IsADirectoryError, FileNotFoundError):  # a folder, or a dangling link: nothing to read
        return None
    except OSError as exc:
        raise file_error(path, f"cannot be read ({short_error(exc)})") from None
    except Exception as exc:  # a DICOM file with a broken body
        raise file_error(path, f"is a damaged DICOM file ({short_error(exc)})") from None
    finally:
        truncated = any(_TRUNCATION_WARNING in str(w.message) for w in caught)
        del caught[:]
    if truncated:
        raise file_error(path, "is truncated (the file ends before its pixel data does); it may have been "
                               "cut short by a copy or a transfer")
    return ds


def candidate_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every file to try: files as given, folders recursively, a DICOMDIR through its records.

    Raises:
        ViewerError: a path does not exist.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        try:
            mode = path.stat().st_mode  # one stat per given path (an importer passes 1,000 files)
        except (FileNotFoundError, NotADirectoryError):
            raise file_error(path, "not found") from None
        if stat.S_ISDIR(mode):
            found.extend(_files_below(path))
        elif not stat.S_ISREG(mode):
            raise file_error(path, "is not a regular file (a FIFO, socket or device); expected a DICOM file or a "
                                   "folder of DICOM files")
        elif path.name.upper() == DICOMDIR_NAME:
            found.extend(dicomdir_files(path))
        else:
            found.append(path)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


def _files_below(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (hidden names skipped), sorted.

    The directory listing's entry types tell files from folders without a stat per file; a
    FIFO, socket or device is not a file to read (opening a FIFO would wait forever).
    Linked folders are not followed (as ``os.walk``)."""
    files: list[Path] = []
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_file():
                files.append(Path(entry.path))
    return sorted(files)


def dicomdir_files(path: Path) -> list[Path]:
    """The files a DICOMDIR's records reference, in record order.

    Raises:
        ViewerError: not a readable DICOMDIR, or it references a file that is missing.
    """
    from pydicom.fileset import FileSet

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fileset = FileSet(pydicom.dcmread(path))
    except Exception as exc:
        raise file_error(path, f"is not a readable DICOMDIR ({short_error(exc)})") from None
    root = path.parent.resolve()
    files = []
    for instance in fileset:
        target = Path(instance.path)
        if not target.resolve().is_relative_to(root):
            raise file_error(path, f"references {target}, outside the DICOMDIR's folder")
        if not target.is_file():
            raise file_error(path, f"references {target}, which is missing")
        files.append(target)
    return files


def iter_dicom_files(
    paths: Iterable[str | Path],
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_damaged: DamagedCallback | None = None,
) -> list[tuple[Path, Dataset]]:
    """``(path, header)`` of every DICOM file under ``paths`` (non-DICOM files skipped).

    A damaged or truncated file raises, unless ``on_damaged(path, message)`` is given: then
    it is reported there and skipped (an importer lists it; a loader must refuse).
    """
    return _read_all(candidate_files(paths), progress, should_cancel, on_damaged)[0]


def _read_all(
    candidates: list[Path],
    progress: ProgressCallback | None,
    should_cancel: CancelCheck | None,
    on_damaged: DamagedCallback | None,
) -> tuple[list[tuple[Path, Dataset]], list[Path]]:
    """(DICOM files with their headers, files not recognised as DICOM)."""
    total = len(candidates)
    found: list[tuple[Path, Dataset]] = []
    unrecognised: list[Path] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for done, path in enumerate(candidates, start=1):
            if should_cancel is not None and should_cancel():
                raise ScanCancelled("scan cancelled")
            try:
                ds = _read_header(path, caught)
                if ds is None:
                    unrecognised.append(path)
            except ViewerError as exc:
                if on_damaged is None:
                    raise
                on_damaged(path, str(exc))
                ds = None
            if progress is not None:
                progress(done, total)
            if ds is not None and not _is_directory_record_file(ds):
                found.append((path, ds))
    return found, unrecognised


def scan_series(
    paths: Iterable[str | Path],
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_damaged: DamagedCallback | None = None,
) -> list[DicomSeries]:
    """Every series under ``paths``, image series or not, ordered by study date, study UID,
    SeriesNumber and UID (the order a PACS browser shows). ``on_damaged``: see
    :func:`iter_dicom_files`; it also receives files that are not readable as DICOM but hold
    the UID of a series found (see :func:`_damaged_members`)."""
    found, unrecognised = _read_all(candidate_files(paths), progress, should_cancel, on_damaged)
    by_uid: dict[str, DicomSeries] = {}
    stubs: list[tuple[Path, Dataset]] = []  # neither series UID nor pixels: a header cut short?
    for path, ds in found:
        uid = tag_text(ds, "SeriesInstanceUID")
        if not uid and not has_pixel_data(ds):
            stubs.append((path, ds))
            continue
        uid = uid or f"(no SeriesInstanceUID: {path.parent})"
        by_uid.setdefault(uid, DicomSeries(uid)).files.append((path, ds))
    damaged = _damaged_members(unrecognised + [path for path, _ in stubs], by_uid)
    for path, ds in stubs:
        if all(path != member for member, _ in damaged):
            uid = f"(no SeriesInstanceUID: {path.parent})"
            by_uid.setdefault(uid, DicomSeries(uid)).files.append((path, ds))
    for path, uid in damaged:
        message = (f"{path}: is not readable as DICOM (damaged) but belongs to series {uid}; "
                   "the series would be read without this file")
        if on_damaged is None:
            raise ViewerError(message)
        on_damaged(path, message)
    return sorted(by_uid.values(), key=_series_order)


def _damaged_members(unrecognised: list[Path], series: dict[str, DicomSeries]) -> list[tuple[Path, str]]:
    """Files refused as "not DICOM" that look like members of a found series.

    A slice whose preamble or file meta is damaged is not recognised as DICOM; at the first or
    last position its loss leaves no gap for the spacing check to see, so the volume would
    silently lose a slice. Two signs tell such a file from an unrelated one (a README, a
    JPEG, a NIfTI): its header text still holds the SeriesInstanceUID, or — when it is
    garbage throughout — it sits among the series' files and is named like them (the same
    name with other digits: ``IM000123``, ``1.2.840…7.dcm``).
    """
    if not unrecognised or not series:
        return []
    members = _members_by_uid(unrecognised, series)
    named = _members_by_name(unrecognised, series)
    return members + [(path, uid) for path, uid in named if all(path != p for p, _ in members)]


def _name_shape(name: str) -> str:
    """A file name with every run of digits replaced by '#' (``IM00012.dcm`` → ``IM#.dcm``)."""
    return re.sub(r"[0-9]+", "#", name)


def _members_by_name(unrecognised: list[Path], series: dict[str, DicomSeries]) -> list[tuple[Path, str]]:
    """Unrecognised files in a series' folder named like every file of that series there."""
    shapes: dict[tuple[Path, str], str] = {}
    for uid, one in series.items():
        by_folder: dict[Path, set[str]] = {}
        for path, _ in one.files:
            by_folder.setdefault(path.parent, set()).add(_name_shape(path.name))
        for folder, names in by_folder.items():
            if len(names) == 1 and "#" in next(iter(names)):
                shapes[(folder, next(iter(names)))] = uid
    return [(path, shapes[(path.parent, _name_shape(path.name))]) for path in unrecognised
            if (path.parent, _name_shape(path.name)) in shapes]


def _members_by_uid(unrecognised: list[Path], series: dict[str, DicomSeries]) -> list[tuple[Path, str]]:
    """Unrecognised files whose first bytes hold a found series' UID."""
    uids = [(uid, uid.encode("ascii", "ignore")) for uid in series if len(uid) >= _MIN_UID_SEARCH_LENGTH]
    members = []
    for path in unrecognised:
        try:
            with open(path, "rb") as handle:
                head = handle.read(_DAMAGED_SEARCH_BYTES)
        except OSError:
            continue
        for uid, needle in uids:
            if needle and needle in head:
                members.append((path, uid))
                break
    return members


def image_series(paths: Iterable[str | Path]) -> list[DicomSeries]:
    """The series that hold pixel data.

    Raises:
        ViewerError: there is none (the message names the paths).
    """
    paths = list(paths)
    scanned = [s for s in scan_series(paths) if s.has_pixels]
    for series in scanned:
        missing = series.images_without_pixels()
        if missing:
            raise file_error(missing[0], "holds no pixel data although the other files of its series do (the file "
                                         "may have been cut short); the series would be read without it")
    found = [s.images_only() for s in scanned]
    images = [s for s in found if not s.is_segmentation]
    if images:  # a SEG beside its image is not a second image to choose (alone, it is refused by name)
        found = images
    if not found:
        if len(paths) == 1 and Path(paths[0]).is_file():
            raise file_error(paths[0], "is not a DICOM image file (expected a DICOM image file, a DICOMDIR or a "
                                       "folder of DICOM files)")
        where = ", ".join(str(p) for p in paths)
        raise ViewerError(f"{where}: contains no DICOM image files")
    return found


def short_error(exc: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _is_directory_record_file(ds: Dataset) -> bool:
    """A DICOMDIR (Media Storage Directory): every one holds a DirectoryRecordSequence."""
    return "DirectoryRecordSequence" in ds


def _series_order(series: DicomSeries) -> tuple:
    number = series.text("SeriesNumber")
    try:
        numeric = float(number)
    except ValueError:
        numeric = float("inf")
    return (series.study_date, series.study_uid, numeric, series.uid)


def _shared_frame_type(ds: Dataset) -> object:
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        for item in shared:
            for seq_name in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "PETFrameTypeSequence"):
                seq = item.get(seq_name)
                if seq and "FrameType" in seq[0]:
                    return seq[0].FrameType
    return ()


def _as_list(value: object) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return [value]


__all__ = [
    "DicomSeries", "ScanCancelled", "PIXEL_KEYWORDS", "candidate_files", "dicomdir_files", "has_pixel_data",
    "image_series", "iter_dicom_files", "number_of_frames", "read_header", "scan_series",
    "raw_ascii", "raw_unsigned_short", "raw_value_bytes", "short_error", "tag_text",
]
