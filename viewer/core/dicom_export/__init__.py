"""Results in DICOM (PRODUCT.md §8, ``viewer export-dicom``): per timepoint the regions as a
Segmentation, the §3 numbers as a TID 1500 measurement report and the PDF report as
Encapsulated PDF, in the timepoint's study; optionally de-identified (PS3.15).

- :mod:`.anatomy` — the anatomical series the SEG references (original, or written anew);
- :mod:`.segmentation` — labels on the anatomy's frames, the SEG (highdicom);
- :mod:`.concepts` — the SR's coded concepts and UCUM units;
- :mod:`.measurement_report` — the SR (highdicom);
- :mod:`.encapsulated_pdf` — the report as an Encapsulated PDF instance (pydicom);
- :mod:`.deidentify` — marking, date shifting and the final identifier check;
- :mod:`.export` — :func:`export_dicom`, one folder per timepoint, written atomically.
"""
