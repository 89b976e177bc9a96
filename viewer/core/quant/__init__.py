"""Quantification per region and timepoint (PRODUCT.md §3): arrays and affines in, numbers out.

Every image is measured on its own grid with the region mapped onto it through world space
(nearest neighbour); nothing is resampled onto the region's grid. Every number is declared
in :mod:`viewer.core.quant.measures` with its name, units and description.
"""
