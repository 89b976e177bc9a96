"""PACS: named nodes (``pacs.toml``), and query/retrieve/send over DICOMweb (dicomweb-client) and
DIMSE (pynetdicom). PRODUCT.md §8. The package sits beside ``quant`` above ``io``: it writes
what it retrieves through ``io`` and never quantifies."""
