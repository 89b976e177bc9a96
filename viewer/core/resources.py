"""Where the bundled resources (demo anatomy, models, icons) live.

In a source checkout or an editable install they are the repository's top-level
``resources/`` folder; in a wheel or a frozen app they are copied inside the package as
``viewer/resources``. Looking in both places keeps one source of truth in the repository.
"""

from __future__ import annotations

from pathlib import Path

from viewer.core.errors import ViewerError


def resources_dir() -> Path:
    """The folder holding ``anatomy/``, ``models/`` and the other bundled resources."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "resources", package.parent / "resources"):
        if (candidate / "anatomy").is_dir():
            return candidate
    raise ViewerError(f"bundled resources not found next to {package} (installation incomplete)")


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource, e.g. ``resource_path("anatomy", "NOTICE.txt")``."""
    path = resources_dir().joinpath(*parts)
    if not path.exists():
        raise ViewerError(f"bundled resource {'/'.join(parts)} is missing from {resources_dir()}")
    return path
