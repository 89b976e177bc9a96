"""Cell-therapy imaging viewer: fuses 19F-MRI, SPIO/Gd, PET and sodium maps onto anatomical MRI."""

__version__ = "0.1.0"
