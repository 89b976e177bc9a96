"""Cell-therapy imaging viewer: fuses 19F-MRI, SPIO/Gd, PET and sodium maps onto anatomical MRI."""

__version__ = "0.1.0"
#: The name shown in the About box, the report title and footer, and the PDF's creator.
APP_NAME = "Cell-therapy imaging viewer"
