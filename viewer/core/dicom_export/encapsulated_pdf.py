"""The PDF report as an Encapsulated PDF instance (PS3.3 A.45.1), in the timepoint's study.

highdicom has no class for encapsulated documents, so the IOD's modules are filled here with
pydicom: Patient and General Study copied from the anatomy the report describes (the same
study as the Segmentation and the SR), Encapsulated Document Series, General Equipment,
SC Equipment, Encapsulated Document and SOP Common.
"""

from __future__ import annotations

from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, EncapsulatedPDFStorage, ExplicitVRLittleEndian, generate_uid

#: Series number of the report.
PDF_SERIES_NUMBER = 904

#: Patient and General Study attributes copied from the anatomy.
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
           "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
           "SpecificCharacterSet", "PatientIdentityRemoved", "DeidentificationMethod",
           "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified")


def encapsulated_pdf(pdf: bytes, anatomy: Dataset, title: str, software_version: str, created: datetime,
                     identifying: bool) -> Dataset:
    """An Encapsulated PDF dataset holding ``pdf`` in ``anatomy``'s patient and study.

    ``identifying``: the document shows the patient's identity (BurnedInAnnotation YES);
    a de-identified report does not.
    """
    ds = Dataset()
    for keyword in _COPIED:
        if keyword in anatomy:
            ds[keyword] = anatomy[keyword]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = "Report (cell-therapy-viewer)"
    ds.Manufacturer = "cell-therapy-viewer"
    ds.SoftwareVersions = software_version
    ds.ConversionType = "WSD"  # workstation
    ds.InstanceNumber = 1
    ds.ContentDate = created.strftime("%Y%m%d")
    ds.ContentTime = created.strftime("%H%M%S")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES" if identifying else "NO"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
