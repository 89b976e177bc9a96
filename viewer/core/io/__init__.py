"""Reading and writing images and studies: NIfTI, DICOM series, the study manifest."""
