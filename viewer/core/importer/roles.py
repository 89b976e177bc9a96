"""Which role a series can play in a study, from its tags alone (PRODUCT.md §8 "Exam import").

:func:`guess_role` reads a :class:`SeriesFacts` (a few DICOM tags, or what a BIDS file name
and sidecar say) and returns a :class:`RoleGuess`: the role it proposes, or why the series is
skipped. The rules are tried in this order; the first that applies decides.

=====  ==========================================  ===============  =========================================
 #     when                                        outcome          why
=====  ==========================================  ===============  =========================================
 1     no pixel data (SR, PR, KO, RT plan/struct,  skip             nothing to show; listed so a user sees
       DOC, REG)                                                    the exam was read completely
 2     ImageType LOCALIZER, or description word    skip             scouts are a few orthogonal slices that
       localizer/localiser/scout/survey/surview/                    do not form one volume and carry no
       topogram/scanogram/pilot/tripilot/loc                        finding
 3     colour pixels (RGB, YBR, PALETTE)           skip             every layer is one value per voxel;
                                                                    colour is a rendered picture
 4     Secondary Capture SOP class without         skip             a picture of a screen: no place in the
       ImagePositionPatient/Orientation                             patient to put it
 5     ImageType SCREEN SAVE / SCREENSHOT /        skip             derived screen captures (dose reports,
       CAPTURE, or description screen/screenshot/                   key-image snapshots) are pictures, not
       snapshot/capture/dose report                                 measurements
 6     ImageType PROJECTION IMAGE / MIP / MAX_IP   skip             a projection through the volume has no
       / MIN_IP, or description word mip/minip                      third axis
 7     Modality PT                                 pet              PET is identified by its modality; a
                                                                    series whose CorrectedImage lacks ATTN
                                                                    or DECY is skipped (non-attenuation-
                                                                    corrected PET gives no SUV, QIBA)
 8     ImagedNucleus/ResonantNucleus 19F           fluorine         compared without case and spaces: it is
       (or nuc-/acq- 19F in a BIDS name)                            a CS value ("19F", "19f", "F19")
 9     nucleus 23Na ("23NA" is the CS spelling)    sodium           as 8
 10    another nucleus than 1H (31P, 13C, 129Xe)   skip             no role shows it
 11    ImageType ADC, description word adc/dadc    adc              the ADC map; exponential ADC (eADC) and
       or "apparent diffusion"                                      trace images are other quantities
 12    description word tmax / "t max"             tmax             Tmax is named, never inferred from a
                                                                    perfusion source series
 13    description ΔR2*/dR2*/deltaR2*/dR2star, or  spio             the spio role is a difference map
       "SPIO" together with map/R2*/R2star                          (post − pre, 1/s)
 14    description ΔR1/dR1/deltaR1, or "Gd"        gd               likewise ΔR1; "Gd" alone is *not*
       together with map/R1/release                                 enough: "T1 post Gd" is an anatomical
                                                                    image with contrast, not a ΔR1 map
 15    an absolute R2*/R2star/T2* map or R1/T1     skip             loading a plain R2* as ΔR2* would count
       map (or ImageType T1/T2 MAP) without Δ                       baseline tissue relaxation as iron;
                                                                    assign it by hand if it is a difference
 16    diffusion images (ImageType DIFFUSION,      skip             raw or other diffusion-derived images
       TRACEW, FA; words dwi/trace/diffusion/                       are not the ADC role
       diff/eadc/colfa/tensor/dti/b1000)
 17    perfusion other than Tmax (cbf, cbv, mtt,   skip             no role for these maps
       ttp, dsc, perfusion, asl)
 18    MR of 1H (or no nucleus given)              anatomical       ¹H anatomy; T1-weighted (below) is
                                                                    preferred over other weightings
 19    CT                                          anatomical       anatomy for PET/CT days without MR; any
                                                                    MR anatomy is preferred
 20    anything else (US, XA, NM, OT, ...)         skip             no role for the modality
=====  ==========================================  ===============  =========================================

**T1-weighted** (rule 18, preference tier 0 over tier 1 for other ¹H images): description word
t1/t1w/3dt1/t1c/t1ce/t1gd, mprage/mp2rage/uni/spgr/fspgr/bravo/flash/vibe (and not a "map");
or enhanced-MR ImageType value T1; or, when the description names no weighting (t2, flair,
pd, stir, t2*), the timing: inversion recovery (ScanningSequence IR) with 300 ms ≤ TI ≤ 1300 ms
(MPRAGE; STIR's short TI and FLAIR's long TI excluded), spin echo with TR < 800 ms and
TE < 30 ms, or spoiled gradient echo with TR < 100 ms, TE < 10 ms and flip angle ≥ 8° (a low
flip angle makes it proton-density weighted).

**BIDS** (rules 18/20 for NIfTI files named by BIDS): the suffix is the weighting the dataset's
author declared, so T1w/UNIT1/inplaneT1 are T1-weighted anatomy (tier 0), T2w/PDw/T2starw/
FLAIR/PDT2/inplaneT2 other ¹H anatomy (tier 1), ``pet`` is PET; any other suffix (bold, dwi,
asl, sbref, phasediff, ...) is skipped unless rules 8-17 found its role in the entities.

Ties between several candidates for one role are settled in :mod:`viewer.core.importer.plan`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

#: Roles a series can be imported as (every image role but the region label map).
IMPORT_ROLES: tuple[str, ...] = ("anatomical", "fluorine", "spio", "gd", "pet", "sodium", "adc", "tmax")

#: How reasons and tables name a role.
ROLE_TITLES = {
    "anatomical": "anatomy", "fluorine": "19F", "spio": "dR2* (SPIO)", "gd": "dR1 (Gd)", "pet": "PET",
    "sodium": "23Na", "adc": "ADC", "tmax": "Tmax",
}

#: Anatomy preference tiers (lower is preferred).
TIER_T1_WEIGHTED, TIER_OTHER_PROTON, TIER_CT = 0, 1, 2

SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
NO_PIXEL_KINDS = {
    "SR": "structured report", "PR": "presentation state", "KO": "key object selection",
    "RTSTRUCT": "RT structure set", "RTPLAN": "RT plan", "RTRECORD": "RT treatment record",
    "DOC": "encapsulated document", "REG": "registration", "SEG": "segmentation",
}

_LOCALIZER_WORDS = {"localizer", "localiser", "scout", "survey", "surview", "topogram", "scanogram", "pilot",
                    "tripilot", "loc"}
_CAPTURE_WORDS = {"screen", "screenshot", "screensave", "snapshot", "capture"}
_PROJECTION_WORDS = {"mip", "minip", "mips"}
_T1_WORDS = {"t1", "t1w", "3dt1", "t1c", "t1ce", "t1gd", "mprage", "mp2rage", "spgr", "fspgr", "bravo", "flash",
             "vibe", "t1weighted", "uni"}
_OTHER_WEIGHTING_WORDS = {"t2", "t2w", "flair", "pd", "pdw", "stir", "t2*", "t2star", "t2starw", "swi", "tse2"}
_DWI_WORDS = {"dwi", "trace", "tracew", "diffusion", "diff", "eadc", "colfa", "tensor", "dti", "b1000"}
_PERFUSION_WORDS = {"cbf", "rcbf", "cbv", "rcbv", "mtt", "ttp", "dsc", "perfusion", "perf", "asl", "pwi"}
_DELTA_R2STAR = {"dr2*", "dr2star", "deltar2*", "deltar2star", "dr2s"}
_R2STAR = {"r2*", "r2star", "r2starmap", "t2*map", "t2starmap"}
_DELTA_R1 = {"dr1", "deltar1"}
_R1 = {"r1", "r1map", "t1map"}
_MAP_WORDS = {"map", "maps"}

BIDS_T1_SUFFIXES = {"T1w", "UNIT1", "inplaneT1", "MP2RAGE"}
BIDS_OTHER_ANATOMY_SUFFIXES = {"T2w", "PDw", "T2starw", "FLAIR", "PDT2", "inplaneT2", "T1rho"}


@dataclass(frozen=True)
class SeriesFacts:
    """What the role rules read about one series; nothing else influences the guess.

    Attributes:
        modality: DICOM Modality, upper case ("MR", "PT", "CT", "SR"...).
        nucleus: ImagedNucleus / ResonantNucleus as written ("1H", "19F", "23NA") or "".
        description: SeriesDescription (or ProtocolName); for BIDS the entities and suffix.
        image_type: ImageType (or FrameType) values, upper case.
        sop_class_uid: SOPClassUID of the first file.
        photometric: PhotometricInterpretation, upper case.
        samples_per_pixel: SamplesPerPixel (3 for colour).
        has_pixels: at least one file holds pixel data.
        has_geometry_tags: ImagePositionPatient and ImageOrientationPatient (or functional
            groups) are present.
        scanning_sequence: ScanningSequence values ("SE", "GR", "IR", "EP").
        repetition_time_ms, echo_time_ms, inversion_time_ms, flip_angle_deg: timing, if given.
        corrected_image: PET CorrectedImage values; None when not known (BIDS), so rule 7's
            correction check is not applied.
        bids_suffix: the BIDS suffix ("T1w", "pet") for NIfTI files named by BIDS, else "".
    """

    modality: str = ""
    nucleus: str = ""
    description: str = ""
    image_type: tuple[str, ...] = ()
    sop_class_uid: str = ""
    photometric: str = "MONOCHROME2"
    samples_per_pixel: int = 1
    has_pixels: bool = True
    has_geometry_tags: bool = True
    scanning_sequence: tuple[str, ...] = ()
    repetition_time_ms: float | None = None
    echo_time_ms: float | None = None
    inversion_time_ms: float | None = None
    flip_angle_deg: float | None = None
    corrected_image: tuple[str, ...] | None = None
    bids_suffix: str = ""


@dataclass(frozen=True)
class RoleGuess:
    """The proposal for one series.

    Attributes:
        role: the proposed role, or None when the series is skipped.
        reason: why, in words (the rule that decided and the tag it read).
        rule: short name of the rule ("nucleus", "localizer", ...), stable for tests and UIs.
        tier: anatomy preference (0 T1-weighted, 1 other ¹H, 2 CT); 0 for other roles.
        t1_weighted: the series counts as T1-weighted.
    """

    role: str | None
    reason: str
    rule: str
    tier: int = 0
    t1_weighted: bool = False


def guess_role(facts: SeriesFacts) -> RoleGuess:
    """The role the tags propose, or the reason to skip (the module docstring's table)."""
    words = description_words(facts.description)
    for rule in _RULES:
        guess = rule(facts, words)
        if guess is not None:
            return guess
    return _skip("modality", f"modality {facts.modality or '(none)'} has no role")  # pragma: no cover


def normalise_nucleus(text: str) -> str:
    """"19f", " 19F", "F19" → "19F"; "23NA", "Na23" → "23NA"; "" stays "" (upper case, digits first)."""
    compact = re.sub(r"\s+", "", str(text)).upper()
    match = re.fullmatch(r"([A-Z]{1,2})(\d{1,3})", compact)
    return f"{match.group(2)}{match.group(1)}" if match else compact


def description_words(text: str) -> set[str]:
    """Lower-case words of a description; Δ becomes "d" and "*" is kept ("ΔR2*" → "dr2*").

    Words are split at anything but letters, digits and "*", so "ep2d_diff_ADC" gives "adc"
    and "T1_MPRAGE_sag" gives "t1", "mprage", "sag".
    """
    lowered = str(text).replace("Δ", "d").replace("δ", "d").lower()
    words = {w for w in re.split(r"[^a-z0-9*]+", lowered) if w}
    pairs = re.findall(r"(?<![a-z0-9])(delta|d)\s*[-_ ]\s*(r2\*|r2star|r1)(?![a-z0-9])", lowered)
    words.update(f"{a}{b}" for a, b in pairs)
    return words


def is_t1_weighted(facts: SeriesFacts, words: set[str] | None = None) -> tuple[bool, str]:
    """Whether a ¹H image is T1-weighted and the evidence (see the module docstring)."""
    words = description_words(facts.description) if words is None else words
    if facts.bids_suffix:
        return facts.bids_suffix in BIDS_T1_SUFFIXES, f"BIDS suffix {facts.bids_suffix}"
    named = sorted(words & _T1_WORDS)
    if named and not words & _MAP_WORDS:
        return True, f"description word {named[0]!r}"
    if "T1" in facts.image_type:
        return True, "ImageType T1"
    if words & _OTHER_WEIGHTING_WORDS:
        return False, f"description word {min(words & _OTHER_WEIGHTING_WORDS)!r}"
    return _t1_from_timing(facts)


def _t1_from_timing(facts: SeriesFacts) -> tuple[bool, str]:
    tr, te, ti, flip = facts.repetition_time_ms, facts.echo_time_ms, facts.inversion_time_ms, facts.flip_angle_deg
    sequence = set(facts.scanning_sequence)
    if "IR" in sequence and ti is not None and 300.0 <= ti <= 1300.0:
        return True, f"inversion recovery with TI {ti:g} ms"
    if "SE" in sequence and tr is not None and te is not None and tr < 800.0 and te < 30.0:
        return True, f"spin echo with TR {tr:g} ms, TE {te:g} ms"
    if ("GR" in sequence and tr is not None and te is not None and flip is not None
            and tr < 100.0 and te < 10.0 and flip >= 8.0):
        return True, f"spoiled gradient echo with TR {tr:g} ms, TE {te:g} ms, flip {flip:g}°"
    return False, "no T1 weighting in the description, ImageType or timing"


# -- the rules, in order ------------------------------------------------------------------------

Rule = Callable[[SeriesFacts, set[str]], "RoleGuess | None"]


def _skip(rule: str, reason: str) -> RoleGuess:
    return RoleGuess(None, reason, rule)


def _no_pixels(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if facts.has_pixels:
        return None
    kind = NO_PIXEL_KINDS.get(facts.modality, "")
    what = f"{facts.modality}: {kind}" if kind else facts.modality or "no Modality"
    return _skip("no-pixels", f"no pixel data ({what})")


def _localizer(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if "LOCALIZER" in facts.image_type:
        return _skip("localizer", "localizer (ImageType LOCALIZER)")
    found = sorted(words & _LOCALIZER_WORDS)
    if found:
        return _skip("localizer", f"localizer/scout (description word {found[0]!r})")
    return None


def _colour(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if facts.samples_per_pixel != 1 or facts.photometric.startswith(("RGB", "YBR", "PALETTE")):
        return _skip("colour", f"colour image ({facts.photometric or 'SamplesPerPixel'}): a layer holds one "
                               "value per voxel")
    return None


def _secondary_capture(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if facts.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX) and not facts.has_geometry_tags:
        return _skip("secondary-capture", "secondary capture without geometry (no ImagePositionPatient/"
                                          "ImageOrientationPatient)")
    return None


def _screen_capture(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    marked = [v for v in facts.image_type if v in ("SCREEN SAVE", "SCREENSHOT", "SCREEN_SAVE", "CAPTURE")]
    if marked:
        return _skip("screen-capture", f"derived screen capture (ImageType {marked[0]})")
    found = sorted(words & _CAPTURE_WORDS)
    if found or {"dose", "report"} <= words:
        return _skip("screen-capture", f"derived screen capture (description word {(found or ['dose report'])[0]!r})")
    return None


def _projection(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    marked = [v for v in facts.image_type if v in ("PROJECTION IMAGE", "MIP", "MAX_IP", "MIN_IP")]
    found = sorted(words & _PROJECTION_WORDS)
    if marked or found:
        evidence = f"ImageType {marked[0]}" if marked else f"description word {found[0]!r}"
        return _skip("projection", f"projection image ({evidence}), not a volume")
    return None


def _pet(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if facts.modality != "PT" and facts.bids_suffix != "pet":
        return None
    if facts.corrected_image is not None:
        missing = [c for c in ("ATTN", "DECY") if c not in facts.corrected_image]
        if missing:
            return _skip("pet-uncorrected", f"PET without {' and '.join(missing)} in CorrectedImage (not attenuation/"
                                            "decay corrected): no SUV")
    return RoleGuess("pet", "PET (Modality PT)" if facts.modality == "PT" else "PET (BIDS suffix pet)", "pet")


def _nucleus(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    nucleus = normalise_nucleus(facts.nucleus)
    if nucleus == "19F":
        return RoleGuess("fluorine", f"nucleus {facts.nucleus.strip()}", "nucleus")
    if nucleus == "23NA":
        return RoleGuess("sodium", f"nucleus {facts.nucleus.strip()}", "nucleus")
    if nucleus and nucleus != "1H":
        return _skip("nucleus", f"nucleus {facts.nucleus.strip()} has no role")
    return None


def _adc(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if "ADC" in facts.image_type:
        return RoleGuess("adc", "ADC map (ImageType ADC)", "adc")
    if words & {"adc", "dadc"} or "apparent diffusion" in facts.description.lower():
        return RoleGuess("adc", f"ADC map (description {facts.description!r})", "adc")
    return None


def _tmax(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if "tmax" in words or re.search(r"\bt[-_ ]max\b", facts.description.lower()):
        return RoleGuess("tmax", f"Tmax map (description {facts.description!r})", "tmax")
    return None


def _spio(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if words & _DELTA_R2STAR or ("spio" in words and words & (_MAP_WORDS | _R2STAR)):
        return RoleGuess("spio", f"ΔR2* map (description {facts.description!r})", "spio")
    return None


def _gd(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if words & _DELTA_R1 or ("gd" in words and words & (_MAP_WORDS | _R1 | {"release"})):
        return RoleGuess("gd", f"ΔR1 map (description {facts.description!r})", "gd")
    return None


def _absolute_relaxation_map(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    typed = " ".join(v for v in facts.image_type if "MAP" in v)
    r2 = words & _R2STAR or ({"t2*", "t2star"} & words and words & _MAP_WORDS) or re.search(r"[TR]2", typed)
    r1 = words & _R1 or ("t1" in words and words & _MAP_WORDS) or re.search(r"[TR]1", typed)
    if r2 or r1:
        which = "R2*/T2*" if r2 else "R1/T1"
        target = "ΔR2* (spio)" if r2 else "ΔR1 (gd)"
        return _skip("absolute-map", f"absolute {which} map, not the {target} difference map; assign it by hand "
                                     "if it is one")
    return None


def _diffusion(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    marked = [v for v in facts.image_type if v in ("DIFFUSION", "TRACEW", "TRACE", "FA", "EADC")]
    found = sorted(words & _DWI_WORDS)
    if marked or found:
        evidence = f"ImageType {marked[0]}" if marked else f"description word {found[0]!r}"
        return _skip("diffusion", f"diffusion image other than an ADC map ({evidence})")
    return None


def _perfusion(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    found = sorted(words & _PERFUSION_WORDS)
    if found and facts.bids_suffix not in BIDS_T1_SUFFIXES | BIDS_OTHER_ANATOMY_SUFFIXES:
        return _skip("perfusion", f"perfusion image or map other than Tmax (description word {found[0]!r})")
    return None


def _anatomy(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    if facts.bids_suffix:
        if facts.bids_suffix in BIDS_T1_SUFFIXES:
            return RoleGuess("anatomical", f"T1-weighted ¹H (BIDS suffix {facts.bids_suffix})", "anatomy-t1",
                             TIER_T1_WEIGHTED, True)
        if facts.bids_suffix in BIDS_OTHER_ANATOMY_SUFFIXES:
            return RoleGuess("anatomical", f"¹H anatomy (BIDS suffix {facts.bids_suffix})", "anatomy",
                             TIER_OTHER_PROTON)
        return _skip("bids-suffix", f"BIDS suffix {facts.bids_suffix!r} has no role")
    if facts.modality == "MR":
        t1, evidence = is_t1_weighted(facts, words)
        if t1:
            return RoleGuess("anatomical", f"T1-weighted ¹H MR ({evidence})", "anatomy-t1", TIER_T1_WEIGHTED, True)
        return RoleGuess("anatomical", f"¹H MR, not T1-weighted ({evidence})", "anatomy", TIER_OTHER_PROTON)
    if facts.modality == "CT":
        return RoleGuess("anatomical", "CT (anatomy when the timepoint has no MR)", "anatomy-ct", TIER_CT)
    return None


def _other_modality(facts: SeriesFacts, words: set[str]) -> RoleGuess | None:
    return _skip("modality", f"modality {facts.modality or '(none)'} has no role")


_RULES: tuple[Rule, ...] = (
    _no_pixels, _localizer, _colour, _secondary_capture, _screen_capture, _projection, _pet, _nucleus,
    _adc, _tmax, _spio, _gd, _absolute_relaxation_map, _diffusion, _perfusion, _anatomy, _other_modality,
)


__all__ = [
    "IMPORT_ROLES", "ROLE_TITLES", "RoleGuess", "SeriesFacts", "description_words", "guess_role",
    "is_t1_weighted", "normalise_nucleus",
]
