"""Face-connected clusters of a boolean mask, in numpy: how the ¹⁹F reference tube is grown
from the core a reader drew (:func:`clusters_touching`), for the quantifier and for the default
levels and focus of a view (which must not import scipy.ndimage, ≈0.13 s, nor the quantifier's
module, to draw a picture)."""

from __future__ import annotations

import numpy as np

#: Voxels sharing a face are neighbours. Diagonal (26-) connectivity would let pairs of
#: noise voxels touching at a corner pass the cluster-size test far more often.
#: (scipy.ndimage.generate_binary_structure(3, 1), written out: importing scipy.ndimage costs
#: ≈0.13 s, which a command that only draws a view need not pay.)
CLUSTER_STRUCTURE = np.array([[[0, 0, 0], [0, 1, 0], [0, 0, 0]],
                              [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                              [[0, 0, 0], [0, 1, 0], [0, 0, 0]]], dtype=bool)

#: Most voxels :func:`clusters_touching` may visit growing in numpy, as a multiple of the
#: image's voxels, before it labels the whole image with scipy instead (the reference tube is
#: grown in a few dozen steps over a small box; a cluster spanning the image would cost more
#: in numpy than labelling does).
GROWTH_WORK = 4


def clusters_touching(above: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The seeds plus every face-connected cluster of ``above`` that touches them.

    The drawn reference region is usually a core inside the tube; this grows it to the whole
    tube (the brightest ¹⁹F object, which holds no cells). Grown in numpy one face-neighbour
    step at a time inside the box the growth can have reached (the seeds' box widened by one
    voxel a step), so drawing a view needs no scipy; scipy's labelling does the job when growing
    would visit more than :data:`GROWTH_WORK` times the image's voxels. Both give the same mask.
    """
    above = np.asarray(above, dtype=bool)
    seeds = np.asarray(seeds, dtype=bool)
    grown = _grown_within(above, seeds & above, GROWTH_WORK * above.size)
    if grown is None:
        from scipy import ndimage

        components, _ = ndimage.label(above, structure=CLUSTER_STRUCTURE)
        touching = np.unique(components[seeds & (components > 0)])
        return np.isin(components, touching[touching > 0]) | seeds
    return grown | seeds


def _grown_within(above: np.ndarray, start: np.ndarray, work: int) -> np.ndarray | None:
    """``start`` grown through face neighbours inside ``above`` until it stops (None if it
    has not stopped before visiting ``work`` voxels). Step k can only reach the start's box
    widened by k voxels, so each step works on that crop of the image."""
    grown = start.copy()
    if not grown.any():
        return grown
    low, high = [], []
    for axis in range(grown.ndim):
        hits = np.flatnonzero(grown.any(axis=tuple(a for a in range(grown.ndim) if a != axis)))
        low.append(int(hits[0]))
        high.append(int(hits[-1]) + 1)
    step = 0
    while work > 0:
        step += 1
        box = tuple(slice(max(0, lo - step), min(n, hi + step)) for lo, hi, n in zip(low, high, grown.shape))
        part = grown[box]
        work -= part.size
        wider = part.copy()
        for axis in range(part.ndim):
            ahead = [slice(None)] * part.ndim
            behind = [slice(None)] * part.ndim
            ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
            wider[tuple(ahead)] |= part[tuple(behind)]
            wider[tuple(behind)] |= part[tuple(ahead)]
        wider &= above[box]
        if np.array_equal(wider, part):
            return grown
        grown[box] = wider
    return None
