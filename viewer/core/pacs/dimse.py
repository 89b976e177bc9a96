"""DIMSE with a PACS node through pynetdicom: C-ECHO and study-level C-FIND (PRODUCT.md §8).

Every failure is one :class:`ViewerError` line naming the node and what went wrong (refused
connection, rejected association and why, a failure status), never pynetdicom's log.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator

from viewer.core.errors import ViewerError
from viewer.core.pacs.nodes import Node
from viewer.core.pacs.query import RETURN_KEYS, StudyMatch, StudyQuery, match_from_values

#: Result reasons of an association rejection (PS3.8 Table 9-21), the ones a user can act on.
_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "the application context is not supported",
    (1, 3): "the calling AE title is not recognised",
    (1, 7): "the called AE title is not recognised",
    (2, 1): "no reason given",
    (2, 2): "the protocol version is not supported",
    (3, 1): "the server is temporarily congested",
    (3, 2): "the server's local limit is exceeded",
}


def _where(node: Node) -> str:
    return f"PACS node '{node.name}' ({node.called_aet}@{node.host}:{node.port})"


@contextmanager
def association(node: Node, contexts: list, roles: list | None = None, handlers: list | None = None) -> Iterator:
    """An association with ``node`` for the presentation ``contexts`` (with SCP/SCU ``roles``
    negotiated and event ``handlers`` bound, as a C-GET needs), released after."""
    from pynetdicom import AE

    if not node.has_dimse:
        raise ViewerError(f"PACS node '{node.name}' has no DIMSE address (host, port, called_aet)")
    _reachable(node)
    ae = AE(ae_title=node.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = node.timeout_s
    ae.connection_timeout = min(node.timeout_s, 10.0)
    for context in contexts:  # an abstract syntax, or (abstract syntax, transfer syntaxes)
        if isinstance(context, tuple):
            ae.add_requested_context(context[0], list(context[1]))
        else:
            ae.add_requested_context(context)
    assoc = ae.associate(node.host, node.port, ae_title=node.called_aet, ext_neg=roles or None,
                         evt_handlers=handlers or None)
    if not assoc.is_established:
        raise ViewerError(_why_not(node, assoc))
    _quick_acknowledgements(assoc)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _quick_acknowledgements(assoc) -> None:
    """Make the association's socket send every PDU at once and acknowledge what it receives at
    once, not up to 40 ms later.

    Why: a PACS sending a C-GET's instances (Orthanc, with Nagle's algorithm on its side) holds
    the last part of each instance until what it sent before is acknowledged, and the kernel
    delays that acknowledgement: ~37 ms per instance, 660 instances of a local Orthanc in 23 s.
    Linux's TCP_QUICKACK turns the delay off until the kernel turns it back on by itself, so it
    is set again before every read of this socket (pynetdicom reads through
    ``AssociationSocket.recv``; only this association's socket is wrapped): 3.7 s. TCP_NODELAY
    does the same for the instances this side sends (C-STORE). Where an option does not exist
    (another system, not a TCP socket) nothing is changed."""
    holder = getattr(getattr(assoc, "dul", None), "socket", None)
    raw = getattr(holder, "socket", None)
    if raw is None:
        return
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    if not hasattr(socket, "TCP_QUICKACK"):
        return
    receive = holder.recv

    def receive_acknowledging(nr_bytes: int):
        current = holder.socket
        if current is not None:
            try:
                current.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass
        return receive(nr_bytes)

    holder.recv = receive_acknowledging


def _reachable(node: Node) -> None:
    """Refuse at once, and say so, when nothing accepts a connection at the node's port
    (pynetdicom reports a refused connection as an aborted association)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=min(node.timeout_s, 10.0)):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise ViewerError(f"cannot reach {_where(node)}: {reason}") from None


def _why_not(node: Node, assoc) -> str:
    """One line saying why no association was made."""
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        source, reason = (int(primitive.result_source), int(primitive.diagnostic)) if primitive is not None else (0, 0)
        text = _REJECT_REASONS.get((source, reason), f"source {source}, reason {reason}")
        return f"{_where(node)} rejected the association: {text}"
    if assoc.is_aborted:
        return f"{_where(node)} aborted the association"
    return f"cannot reach {_where(node)}: no association within {min(node.timeout_s, 10.0):g} s"


def echo(node: Node) -> None:
    """C-ECHO: returns when the node answers with status Success."""
    from pynetdicom.sop_class import Verification

    with association(node, [Verification]) as assoc:
        status = assoc.send_c_echo()
    check_status(node, "C-ECHO", status)


def find_studies(node: Node, query: StudyQuery) -> list[StudyMatch]:
    """Study-level C-FIND (Study Root) with the query's keys; every answered study once."""
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    filters = query.filters()
    for keyword in RETURN_KEYS:
        setattr(identifier, keyword, filters.get(keyword, ""))
    matches: dict[str, StudyMatch] = {}
    with association(node, [StudyRootQueryRetrieveInformationModelFind]) as assoc:
        for status, answer in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            code = check_status(node, "C-FIND", status, pending_ok=True)
            if code in (0xFF00, 0xFF01) and answer is not None:
                match = match_from_values({keyword: answer.get(keyword) for keyword in RETURN_KEYS})
                matches[match.study_uid] = match
    return sorted(matches.values(), key=lambda m: (m.study_date, m.study_uid))


def check_status(node: Node, operation: str, status, pending_ok: bool = False) -> int:
    """The status code; a failure, or no status at all (the association broke), is an error."""
    if status is None or "Status" not in status:
        raise ViewerError(f"{_where(node)} gave no {operation} response (the association broke or timed out)")
    code = int(status.Status)
    if code == 0x0000 or (pending_ok and code in (0xFF00, 0xFF01)):
        return code
    comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
    raise ViewerError(f"{_where(node)} answered {operation} with status 0x{code:04X}{comment}")
