"""What ``viewer pacs`` and the window do with a node, whichever protocols it speaks."""

from __future__ import annotations

from viewer.core.errors import ViewerError
from viewer.core.pacs import dicomweb, dimse
from viewer.core.pacs.nodes import Node
from viewer.core.pacs.query import StudyMatch, StudyQuery

PROTOCOLS = ("dicomweb", "dimse")


def protocols_of(node: Node) -> list[str]:
    """The protocols the node is configured for, DICOMweb first."""
    return [p for p, has in (("dicomweb", node.has_dicomweb), ("dimse", node.has_dimse)) if has]


def choose_protocol(node: Node, via: str | None) -> str:
    """``via`` when the node speaks it, else the node's first protocol (DICOMweb when it has both)."""
    if via is None:
        return protocols_of(node)[0]
    if via not in PROTOCOLS:
        raise ViewerError(f"--via must be one of {', '.join(PROTOCOLS)}, got {via!r}")
    if via not in protocols_of(node):
        raise ViewerError(f"PACS node '{node.name}' is not configured for {via} (it has: "
                          f"{', '.join(protocols_of(node))})")
    return via


def echo(node: Node, via: str | None = None) -> list[str]:
    """Check every protocol of the node (or ``via``'s); one line per protocol that answered.
    The first that does not answer raises its error."""
    answered = []
    for protocol in [choose_protocol(node, via)] if via else protocols_of(node):
        if protocol == "dimse":
            dimse.echo(node)
            answered.append(f"{node.name}: C-ECHO to {node.called_aet}@{node.host}:{node.port} succeeded")
        else:
            dicomweb.echo(node)
            answered.append(f"{node.name}: DICOMweb at {node.dicomweb} answered a study search")
    return answered


def find(node: Node, query: StudyQuery, via: str | None = None) -> list[StudyMatch]:
    """The studies matching ``query`` on the node."""
    protocol = choose_protocol(node, via)
    return dimse.find_studies(node, query) if protocol == "dimse" else dicomweb.find_studies(node, query)
