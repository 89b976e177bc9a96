"""A tiny evented-model helper (napari's habit, without Qt).

Events are named after the field that changed ("cursor", "timepoint", "display", ...).
Callbacks receive keyword arguments. ``with events.batch():`` collects events and emits each
distinct one once at the end (try/finally), so a burst of changes does not cause a storm of
redraws.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator

Callback = Callable[..., None]


class Events:
    """Named events with connect/disconnect/emit and batching."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = defaultdict(list)
        self._depth = 0
        self._pending: dict[tuple[str, tuple[tuple[str, Any], ...]], None] = {}

    def connect(self, name: str, callback: Callback) -> None:
        if callback not in self._callbacks[name]:
            self._callbacks[name].append(callback)

    def disconnect(self, name: str, callback: Callback) -> None:
        if callback in self._callbacks[name]:
            self._callbacks[name].remove(callback)

    def emit(self, name: str, **info: Any) -> None:
        """Call every callback of ``name`` now, or once at the end of the current batch."""
        if self._depth:
            self._pending.setdefault((name, tuple(sorted(info.items(), key=lambda kv: kv[0]))), None)
            return
        for callback in list(self._callbacks[name]):
            callback(**info)

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                pending, self._pending = self._pending, {}
                for name, info in pending:
                    self.emit(name, **dict(info))
