"""A timepoint's §3 numbers as a Comprehensive 3D SR measurement report (TID 1500, highdicom).

One volumetric ROI group (TID 1411) per region, referencing the region's segment of the
timepoint's Segmentation and carrying the timepoint (TID 1502), every number the region has
(concept, UCUM unit and derivation from :mod:`.concepts`; a number that could not be computed
is left out, as ``null`` is in JSON) and the yes/no flags as qualitative evaluations; model
predictions name their model and version (TID 4019). The timepoint's detection limit is a
group of its own. Values are written at full double precision.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from viewer.core.dicom_export import concepts
from viewer.core.dicom_export.segmentation import Segment
from viewer.core.quant.stats import TimepointStats

#: Series number of the measurement report.
SR_SERIES_NUMBER = 903


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _measurement(concept: concepts.Concept, value: float, algorithm=None):
    import highdicom as hd

    return hd.sr.Measurement(name=concept.name, value=value, unit=concept.unit, derivation=concept.derivation,
                             algorithm_id=algorithm)


def region_measurements(values: dict[str, Any]) -> list:
    """The TID 300 measurements of one region's §3 values (computed numbers only)."""
    import highdicom as hd

    out = []
    for key, concept in concepts.REGION_CONCEPTS.items():
        number = _number(values.get(key))
        if number is not None:
            out.append(_measurement(concept, number))
    for entry in values.get("prediction") or ():
        number = _number(entry.get("value"))
        if number is None:
            continue
        algorithm = hd.sr.AlgorithmIdentification(name=str(entry.get("model") or "model")[:64],
                                                  version=str(entry.get("version") or "unknown")[:64])
        out.append(_measurement(concepts.PREDICTION, number, algorithm))
        interval = entry.get("interval")
        if interval:
            out.append(_measurement(concepts.PREDICTION_LOW, float(interval[0]), algorithm))
            out.append(_measurement(concepts.PREDICTION_HIGH, float(interval[1]), algorithm))
    return out


def region_flags(values: dict[str, Any]) -> list:
    """The yes/no values of a region as qualitative evaluations (an unknown flag is left out)."""
    import highdicom as hd

    return [hd.sr.QualitativeEvaluation(name, concepts.YES if values[key] else concepts.NO)
            for key, name in concepts.REGION_FLAGS.items() if isinstance(values.get(key), bool)]


def build_measurement_report(stats: TimepointStats, segmentation: Dataset, segments: Sequence[Segment],
                             anatomy: Sequence[Dataset], label_text: Callable[[str], str], modalities: Sequence[str],
                             software_version: str) -> Dataset:
    """The SR document of one timepoint's numbers, referencing ``segmentation``'s segments."""
    import highdicom as hd

    time_point = hd.sr.TimePointContext(time_point=label_text(stats.label)[:64] or "timepoint")
    by_label = {segment.label: segment for segment in segments}
    groups: list = []
    for region in stats.regions:
        segment = by_label.get(region.label)
        if segment is None:
            continue  # the region has no voxel on the anatomy: no segment to measure
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=segment.tracking_uid, identifier=segment.name),
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(segmentation, segment.number),
            time_point_context=time_point,
            measurements=region_measurements(region.values),
            qualitative_evaluations=region_flags(region.values) or None,
        ))
    limit = _number(stats.detection_limit_cells_per_mm3)
    if limit is not None:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="timepoint"),
            time_point_context=time_point, finding_type=concepts.TIMEPOINT_GROUP,
            measurements=[_measurement(concepts.DETECTION_LIMIT, limit)],
        ))
    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept.from_code(concepts.Code("121007", "DCM", "Device")),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="cell-therapy-viewer", manufacturer_name="cell-therapy-viewer",
            model_name=f"cell-therapy-viewer {software_version}"),
    )
    procedures = [concepts.PET if m == "PT" else concepts.MRI for m in dict.fromkeys(modalities)] or [concepts.MRI]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=procedures, imaging_measurements=groups,
    )
    document = hd.sr.Comprehensive3DSR(
        evidence=[segmentation, *anatomy], content=report, series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="cell-therapy-viewer", is_complete=True, series_description="Measurements (cell-therapy-viewer)",
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = concepts.SCHEME
    scheme.CodingSchemeName = concepts.SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "cell-therapy-viewer project"
    document.CodingSchemeIdentificationSequence = DicomSequence([scheme])
    return document
