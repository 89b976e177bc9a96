"""PACS nodes from ``pacs.toml`` (PRODUCT.md §8): where a node is and how to reach it.

A node is named in ``[node.NAME]`` and speaks DICOMweb (``dicomweb = "http(s)://host:port/root"``:
QIDO-RS, WADO-RS, STOW-RS) and/or DIMSE (``host``, ``port``, ``called_aet``, ``calling_aet``:
C-ECHO, C-FIND, C-GET, C-STORE). The file lives in ``$XDG_CONFIG_HOME/cell-therapy-viewer/``
(``~/.config`` without XDG) unless ``--config FILE`` names another.

Credentials for DICOMweb are HTTP basic (``username`` with ``password`` or
``password_env``) or a bearer token (``token`` or ``token_env``); the ``*_env`` keys name an
environment variable, so a secret need not be written in the file. A :class:`Node` keeps
them out of its ``repr`` and nothing here puts them in a message: errors name the node and the
key, never the value. ``https://`` nodes are verified against the system's certificate
authorities by default (``ca_bundle = "FILE"`` for a hospital's own CA); ``verify_tls = false``
turns verification off, for a test server only.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from viewer.core.errors import ViewerError, file_error

#: The configuration's file name in the per-user configuration folder.
CONFIG_NAME = "pacs.toml"
APP_FOLDER = "cell-therapy-viewer"
#: An AE title: 1-16 characters of the DICOM default repertoire, no backslash, not all spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
DEFAULT_CALLING_AET = "CTVIEWER"
_KEYS = {"dicomweb", "host", "port", "called_aet", "calling_aet", "username", "password", "password_env",
         "token", "token_env", "verify_tls", "ca_bundle", "timeout_s"}


@dataclass(frozen=True)
class Credentials:
    """HTTP credentials for a DICOMweb node (kept out of ``repr``)."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "bearer token" if self.token else "basic" if self.username else "none"

    def secrets(self) -> tuple[str, ...]:
        """The secret values, for callers that must keep them out of what they print."""
        return tuple(value for value in (self.password, self.token) if value)


@dataclass(frozen=True)
class Node:
    """One PACS node of ``pacs.toml``."""

    name: str
    dicomweb: str | None = None
    host: str | None = None
    port: int | None = None
    called_aet: str | None = None
    calling_aet: str = DEFAULT_CALLING_AET
    credentials: Credentials = field(default_factory=Credentials)
    verify_tls: bool | str = True  # True, False, or a CA bundle's path
    timeout_s: float = 30.0

    @property
    def has_dimse(self) -> bool:
        return self.host is not None

    @property
    def has_dicomweb(self) -> bool:
        return self.dicomweb is not None


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/cell-therapy-viewer/pacs.toml`` (``~/.config`` when XDG is unset)."""
    environ = os.environ if environ is None else environ
    base = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / APP_FOLDER / CONFIG_NAME


def load_nodes(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Node]:
    """Every node of the configuration file (the default one when ``path`` is None).

    Raises:
        ViewerError: the file is missing or is not valid TOML, or a node's entry is wrong
            (one line naming the file, the node and the key; never a secret's value).
    """
    environ = os.environ if environ is None else environ
    path = Path(path) if path is not None else default_config_path(environ)
    if not path.is_file():
        raise file_error(path, "no PACS configuration here: name your nodes in it as [node.NAME] "
                               "with dicomweb = \"http://host:port/dicom-web\" and/or host, port, called_aet")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise file_error(path, f"is not a readable TOML file ({exc})") from None
    nodes = table.get("node")
    if not isinstance(nodes, dict) or not nodes:
        raise file_error(path, "names no PACS node: add a [node.NAME] table")
    return {name: _node(path, name, entry, environ) for name, entry in nodes.items()}


def find_node(nodes: Mapping[str, Node], name: str, path: str | Path | None = None) -> Node:
    """The node called ``name``, or one line listing the names there are."""
    if name not in nodes:
        where = f" in {path}" if path is not None else ""
        raise ViewerError(f"no PACS node '{name}'{where}; the nodes are: {', '.join(sorted(nodes))}")
    return nodes[name]


def _node(path: Path, name: str, entry: Any, environ: Mapping[str, str]) -> Node:
    where = f"[node.{name}]"
    if not isinstance(entry, dict):
        raise file_error(path, f"{where} must be a table of keys")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise file_error(path, f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    dicomweb = _text(path, where, entry, "dicomweb")
    if dicomweb is not None:
        parts = urlsplit(dicomweb)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise file_error(path, f"{where}: dicomweb must be an http:// or https:// address, got {dicomweb!r}")
        if parts.username or parts.password:
            raise file_error(path, f"{where}: dicomweb must not hold credentials; use username and "
                                   "password_env (or token_env)")
        dicomweb = dicomweb.rstrip("/")
    host = _text(path, where, entry, "host")
    port = entry.get("port")
    called = _text(path, where, entry, "called_aet")
    if host is not None or port is not None or called is not None:
        if host is None or port is None or called is None:
            raise file_error(path, f"{where}: a DIMSE node needs host, port and called_aet together")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise file_error(path, f"{where}: port must be a whole number from 1 to 65535, got {port!r}")
        _check_aet(path, where, "called_aet", called)
    calling = _text(path, where, entry, "calling_aet") or DEFAULT_CALLING_AET
    _check_aet(path, where, "calling_aet", calling)
    if dicomweb is None and host is None:
        raise file_error(path, f"{where}: give dicomweb and/or host, port and called_aet")
    credentials = _credentials(path, where, entry, environ)
    if credentials.kind != "none" and dicomweb is None:
        raise file_error(path, f"{where}: credentials are for DICOMweb, but the node has no dicomweb address")
    verify: bool | str = True
    if "verify_tls" in entry:
        if not isinstance(entry["verify_tls"], bool):
            raise file_error(path, f"{where}: verify_tls must be true or false")
        verify = entry["verify_tls"]
    bundle = _text(path, where, entry, "ca_bundle")
    if bundle is not None:
        bundle_path = (path.parent / bundle).resolve()
        if not bundle_path.is_file():
            raise file_error(path, f"{where}: ca_bundle {bundle} is not a file")
        verify = str(bundle_path)
    timeout = entry.get("timeout_s", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise file_error(path, f"{where}: timeout_s must be a number of seconds from 0 to 3600")
    return Node(name, dicomweb, host, port, called, calling, credentials, verify, float(timeout))


def _text(path: Path, where: str, entry: dict, key: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise file_error(path, f"{where}: {key} must be a non-empty string")
    return value.strip()


def _check_aet(path: Path, where: str, key: str, value: str) -> None:
    if not _AE_TITLE.match(value) or not value.strip():
        raise file_error(path, f"{where}: {key} {value!r} is not an AE title (1-16 printable ASCII characters, "
                               "no backslash)")


def _credentials(path: Path, where: str, entry: dict, environ: Mapping[str, str]) -> Credentials:
    """The node's credentials, from the file or the environment. Messages name keys and
    variables, never values."""
    def secret(key: str) -> str | None:
        direct, variable = _text(path, where, entry, key), _text(path, where, entry, f"{key}_env")
        if direct is not None and variable is not None:
            raise file_error(path, f"{where}: give {key} or {key}_env, not both")
        if variable is not None:
            value = environ.get(variable)
            if not value:
                raise file_error(path, f"{where}: {key}_env names the environment variable {variable}, which is "
                                       "not set")
            return value
        return direct

    username = _text(path, where, entry, "username")
    password, token = secret("password"), secret("token")
    if token is not None and (username is not None or password is not None):
        raise file_error(path, f"{where}: give a bearer token or a username and password, not both")
    if (username is None) != (password is None):
        raise file_error(path, f"{where}: HTTP basic authentication needs username and password (or password_env)")
    return Credentials(username, password, token)
