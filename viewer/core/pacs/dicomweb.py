"""DICOMweb with a PACS node through dicomweb-client: reachability and QIDO-RS study search
(PRODUCT.md §8).

Credentials go into the HTTP session only (basic or bearer); every error is one
:class:`ViewerError` line naming the node's address and the HTTP status or network problem,
with any secret the node holds removed from it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from viewer.core.errors import ViewerError
from viewer.core.pacs.nodes import Node
from viewer.core.pacs.query import RETURN_KEYS, StudyMatch, StudyQuery, match_from_values

#: What an HTTP status means for a user (the common ones a PACS answers).
_HTTP_MEANING = {
    400: "the server did not understand the request",
    401: "the server needs credentials, or refused the ones given (check username/password_env or token_env)",
    403: "the credentials are not allowed to do this",
    404: "no DICOMweb service at this address (check the dicomweb root, e.g. …/dicom-web)",
    409: "the server refused to store the objects (a conflict)",
    413: "the request is too large for the server",
    500: "the server failed",
    502: "a gateway in front of the server failed",
    503: "the server is unavailable",
    504: "a gateway in front of the server timed out",
}


def _session(node: Node):
    import requests

    class Session(requests.Session):
        """Sends a query's ``*`` wildcard unencoded: dicomweb-client writes it as %2A, which
        Orthanc 1.10's DICOMweb plugin does not decode (``PatientName=Muster%2A`` matched
        nothing); RFC 3986 allows a bare ``*`` in a query. Verifies TLS as the node says."""

        def send(self, request, **kwargs):  # type: ignore[override]
            if request.url and "?" in request.url:
                head, query = request.url.split("?", 1)
                request.url = f"{head}?{query.replace('%2A', '*').replace('%2a', '*')}"
            return super().send(request, **kwargs)

        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[override]
            """The node's TLS choice (pacs.toml's ca_bundle or verify_tls) over the
            environment's: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a
            session's ``verify`` (psf/requests#3829), so a hospital CA, or ``verify_tls =
            false``, was silently ignored wherever those are set. Proxies still come from
            the environment."""
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            settings["verify"] = self.verify
            return settings

    session = Session()
    session.verify = node.verify_tls
    credentials = node.credentials
    if credentials.token:
        session.headers["Authorization"] = f"Bearer {credentials.token}"
    elif credentials.username:
        session.auth = (credentials.username, credentials.password or "")
    return session


#: Attempts per HTTP request. dicomweb-client retries *every* failure (its ``retrying``
#: decorator catches exceptions too) five times with exponential back-off: a node that refuses
#: the connection took 30 s to say so. One retry after 1 s still rides out a busy server's 503.
HTTP_ATTEMPTS = 2


def client(node: Node):
    """A dicomweb-client for the node, its session holding the credentials."""
    from dicomweb_client.api import DICOMwebClient

    if not node.has_dicomweb:
        raise ViewerError(f"PACS node '{node.name}' has no DICOMweb address (dicomweb = \"http://…\")")
    web = DICOMwebClient(node.dicomweb, session=_session(node), timeout=node.timeout_s)
    web.set_http_retry_params(retry=True, max_attempts=HTTP_ATTEMPTS, wait_exponential_multiplier=500)
    return web


def scrubbed(node: Node, text: str) -> str:
    """``text`` with the node's secrets replaced by ``***``."""
    for secret in node.credentials.secrets():
        text = text.replace(secret, "***")
    return text


@contextmanager
def talking_to(node: Node, what: str) -> Iterator[None]:
    """Turn the HTTP and network errors of a DICOMweb exchange into one line."""
    import requests
    from pydicom.errors import InvalidDicomError
    from retrying import RetryError

    def answered(status: int | None) -> ViewerError:
        meaning = _HTTP_MEANING.get(status or 0, "")
        return ViewerError(scrubbed(node, f"PACS node '{node.name}' ({node.dicomweb}) answered {what} with HTTP "
                                          f"{status}" + (f": {meaning}" if meaning else "")))

    try:
        yield
    except requests.exceptions.HTTPError as exc:
        raise answered(exc.response.status_code if exc.response is not None else None) from None
    except RetryError as exc:  # a status dicomweb-client retries (429, 408, 503, 504), every attempt
        response = getattr(exc.last_attempt, "value", None)
        raise answered(getattr(response, "status_code", None)) from None
    except requests.exceptions.SSLError:
        raise ViewerError(f"PACS node '{node.name}' ({node.dicomweb}): the server's TLS certificate is not trusted "
                          "(give the hospital's CA as ca_bundle in pacs.toml)") from None
    except requests.exceptions.ConnectionError:
        raise ViewerError(f"cannot reach PACS node '{node.name}' ({node.dicomweb}): connection refused or the host "
                          "is unknown") from None
    except requests.exceptions.Timeout:
        raise ViewerError(f"PACS node '{node.name}' ({node.dicomweb}) did not answer {what} within "
                          f"{node.timeout_s:g} s") from None
    except InvalidDicomError:  # a part cut short (the server stopped mid-transfer) or not DICOM
        raise ViewerError(f"PACS node '{node.name}' ({node.dicomweb}) sent, in {what}, an instance that is not a "
                          "whole DICOM file (the transfer was cut off?); nothing was kept") from None
    except (ValueError, KeyError) as exc:  # a body that is not the DICOM JSON it should be
        raise ViewerError(scrubbed(node, f"PACS node '{node.name}' ({node.dicomweb}) sent an answer to {what} "
                                         f"that is not DICOM JSON ({type(exc).__name__})")) from None


def echo(node: Node) -> None:
    """Reachability over DICOMweb: a QIDO-RS study search for at most one study."""
    web = client(node)
    with talking_to(node, "a study search"):
        web.search_for_studies(limit=1, fields=["StudyInstanceUID"])


def find_studies(node: Node, query: StudyQuery) -> list[StudyMatch]:
    """QIDO-RS study search with the query's keys, every study of every page."""
    from pydicom.datadict import keyword_for_tag

    web = client(node)
    matches: dict[str, StudyMatch] = {}
    with talking_to(node, "a study search"):
        # pages of QIDO_PAGE, by offset, until a page is short or brings no new study: a
        # server may ignore the offset (Orthanc 1.10 does when matching ModalitiesInStudy),
        # and dicomweb-client's own get_remaining then asks for the same page forever
        offset = 0
        while True:
            page = web.search_for_studies(search_filters=query.filters(), fields=list(RETURN_KEYS),
                                          limit=QIDO_PAGE, offset=offset)
            before = len(matches)
            for answer in page:
                values: dict[str, Any] = {}
                for tag, element in answer.items():
                    keyword = keyword_for_tag(int(tag, 16))
                    if keyword in RETURN_KEYS:
                        values[keyword] = _json_value(keyword, element)
                match = match_from_values(values)
                matches[match.study_uid] = match
            if len(page) < QIDO_PAGE or len(matches) == before:
                break
            offset += len(page)
    return sorted(matches.values(), key=lambda m: (m.study_date, m.study_uid))


#: Studies asked for per QIDO-RS request.
QIDO_PAGE = 500


def _json_value(keyword: str, element: dict) -> Any:
    """A DICOM JSON element's value: a person name's alphabetic form, a list for the modalities."""
    values = element.get("Value") or []
    if keyword == "ModalitiesInStudy":
        return [str(v) for v in values]
    if not values:
        return None
    first = values[0]
    if keyword == "PatientName":
        return str(first.get("Alphabetic", "")) if isinstance(first, dict) else str(first)
    return first
