"""Display protocols (PRODUCT.md §5, "the reading room"): named presets of which layers are
shown, and how strongly, so the first screen reads as anatomy with the cells on it.

With every overlay on at once a T1 reads as a pink and olive wash and a ¹⁹F hotspot is a few
pixels; a radiologist reading cell tracking wants grey anatomy, the ¹⁹F map and the regions.
A protocol says which roles are visible and their opacity; levels and colormaps stay each
role's own (the reader's window/level survives a change of protocol). The window, `viewer
render --protocol` and the report's key images use the same protocols. The anatomy is always
shown: it is the opaque base of every view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from viewer.core.display import DisplayProps
from viewer.core.errors import ViewerError


@dataclass(frozen=True)
class Protocol:
    """One named preset.

    Attributes:
        name: what the reader chooses ("cell tracking").
        description: one line for the toolbar's tooltip and the report's caption.
        shown: roles visible under this protocol (besides the anatomy, always shown).
        opacity: opacity (0–1) per shown role, where it differs from the role's own.
        needs: roles of which at least one must exist for the protocol to mean something
            (the default protocol is the first whose needs a timepoint meets).
    """

    name: str
    description: str
    shown: frozenset[str]
    opacity: Mapping[str, float] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()

    def applied_to(self, displays: Mapping[str, DisplayProps]) -> dict[str, DisplayProps]:
        """``displays`` with each role's visibility (and opacity) set by this protocol."""
        result = {}
        for role, props in displays.items():
            visible = role == "anatomical" or role in self.shown
            changed = replace(props, visible=visible)
            if visible and role in self.opacity:
                changed = replace(changed, opacity=self.opacity[role])
            result[role] = changed
        return result


_PROTOCOLS = (
    Protocol("cell tracking", "grey anatomy with the ¹⁹F cell map and the regions",
             frozenset({"fluorine", "regions"}), {"fluorine": 0.85}, frozenset({"fluorine"})),
    Protocol("viability", "grey anatomy with SPIO (total cells), Gd ΔR1 (dead cells) and the regions",
             frozenset({"spio", "gd", "regions"}), {}, frozenset({"spio", "gd"})),
    Protocol("PET", "grey anatomy with PET uptake (SUV) and the regions",
             frozenset({"pet", "regions"}), {"pet": 0.6}, frozenset({"pet"})),
    Protocol("perfusion", "grey anatomy with ADC, Tmax and tissue sodium (TSC) and the regions",
             frozenset({"adc", "tmax", "sodium", "regions"}), {}, frozenset({"adc", "tmax", "sodium"})),
    Protocol("all", "every layer at its own opacity", frozenset({"fluorine", "pet", "spio", "gd", "sodium", "adc",
                                                                   "tmax", "regions", "other"})),
)

#: Every protocol by name, in toolbar order.
PROTOCOLS: Mapping[str, Protocol] = MappingProxyType({p.name: p for p in _PROTOCOLS})


def protocol(name: str) -> Protocol:
    """The protocol called ``name`` (case-insensitive); a ViewerError lists the names."""
    for known in PROTOCOLS.values():
        if known.name.lower() == name.strip().lower():
            return known
    raise ViewerError(f"unknown display protocol {name!r}; expected one of: {', '.join(PROTOCOLS)}")


def default_protocol(roles: Iterable[str]) -> Protocol:
    """The protocol a timepoint with these images opens with: cell tracking when there is a
    ¹⁹F map, else viability, PET or perfusion by what exists, else every layer."""
    present = set(roles)
    for candidate in _PROTOCOLS:
        if candidate.needs & present:
            return candidate
    return PROTOCOLS["all"]


__all__ = ["PROTOCOLS", "Protocol", "default_protocol", "protocol"]
