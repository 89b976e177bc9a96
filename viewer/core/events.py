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
        #: events held during a batch, in order, one per distinct (name, info)
        self._pending: dict[tuple, tuple[str, dict[str, Any]]] = {}

    def connect(self, name: str, callback: Callback) -> None:
        if callback not in self._callbacks[name]:
            self._callbacks[name].append(callback)

    def disconnect(self, name: str, callback: Callback) -> None:
        if callback in self._callbacks[name]:
            self._callbacks[name].remove(callback)

    def emit(self, name: str, **info: Any) -> None:
        """Call every callback of ``name`` now, or once at the end of the current batch."""
        if self._depth:
            self._pending.setdefault((name, _frozen(info)), (name, info))
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
                for name, info in pending.values():
                    self.emit(name, **info)


def _frozen(value: Any) -> Any:
    """A hashable key for an event's info: slices (an edit's box; unhashable before Python
    3.12), lists, sets and dicts become tuples; anything else unhashable is keyed by identity
    (such events are never merged)."""
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted((_frozen(v) for v in value), key=repr)))
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value
