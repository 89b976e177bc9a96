"""Refusing ONNX graphs whose running time cannot be bounded before they run (PRODUCT.md §4).

A model is a graph of standard operators; almost every operator does an amount of work fixed by
the sizes of its inputs. Control flow is the exception: a ``Loop`` repeats its body until a
trip count or a condition computed *inside the graph* says stop, so a card-conforming model can
spin for hours on one region (issue 13: a huge ``Loop`` hung ``viewer stats`` and the window).
This module reads the graph's protobuf (a small wire-format reader: the ``onnx`` package is not
a runtime dependency, and reading bytes runs no code) and applies these rules, recursively into
every subgraph and every model-local function:

- ``Loop`` is accepted only with a **constant trip count** ``M`` — an initializer, or the output
  of a ``Constant`` node, holding one integer — and only while the product of the trip counts of
  the Loops nested around each other stays ≤ :data:`MAX_LOOP_ITERATIONS`. Refused: no ``M``
  (the loop runs until its condition turns false: a ``while`` loop), an ``M`` computed in the
  graph (from the input's values *or its shape* — nothing bounds it before running), and the
  "infinite" ``M = INT64_MAX`` exporters write for ``while`` loops.
- ``If`` runs one branch once: accepted, both branches checked.
- ``Scan`` and ``SequenceMap`` run their body once per element of a tensor or sequence that the
  graph has already computed, so their iteration count is bounded by memory already held:
  accepted, bodies checked (a constant Loop inside one is still subject to the product rule
  counting the Scan as one pass).
- Any other operator carrying a subgraph (e.g. onnxruntime's ``BeamSearch``, ``GreedySearch``,
  ``Sampling``, which loop up to a length read from their inputs) is refused as control flow the
  viewer cannot bound.
- Nesting deeper than :data:`MAX_NESTING` (subgraphs or function calls; a function calling
  itself) is refused, and so is a graph whose function calls expand to more than
  :data:`MAX_CHECKED_NODES` nodes.

What remains — straight-line operators whose cost follows tensor sizes the graph may still make
large (``Range``, ``Expand``, ``ConstantOfShape``) — is bounded at run time by the time budget
of :mod:`viewer.core.predict.model`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewer.core.errors import file_error

#: Largest number of body executions nested Loops may add up to (product of their constant
#: trip counts). A per-region feature model has no use for more; exporters write 2⁶³−1 for
#: "until the condition says stop".
MAX_LOOP_ITERATIONS = 1_000_000

#: Deepest nesting of subgraphs and function calls accepted.
MAX_NESTING = 16

#: Most node visits the check makes (a function is checked at every call, so calls nested in
#: calls could otherwise make the check itself take exponential time).
MAX_CHECKED_NODES = 1_000_000

#: ONNX TensorProto data types a trip count may be stored as (INT32 = 6, INT64 = 7).
_INTEGER_TENSOR_TYPES = {6: "<i", 7: "<q"}
#: TensorProto.data_location EXTERNAL: the value lives in another file the viewer never reads.
_EXTERNAL_DATA = 1

#: Operators (default domain) whose subgraph attributes the rules above understand.
_BOUNDED_BODY_OPS = {"If", "Scan", "SequenceMap"}
#: Domains whose operators never carry subgraphs (their attributes need not be read: tree
#: ensembles hold hundreds of thousands of attribute values).
_GRAPH_FREE_DOMAINS = {"ai.onnx.ml"}


class _Malformed(Exception):
    """The bytes are not a well-formed protobuf message."""


# -- protobuf wire format ------------------------------------------------------------------------

def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one message, in order.

    Varints are ints; length-delimited fields are memoryviews (sub-messages, strings, packed
    arrays); fixed-size fields are their raw bytes.
    """
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise _Malformed
        if pos > end:
            raise _Malformed
        yield number, wire, value


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", "replace")


# -- the messages the rules need -------------------------------------------------------------------

@dataclass
class _Node:
    op_type: str = ""
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    graphs: list[tuple[str, memoryview]] = field(default_factory=list)  # (attribute name, GraphProto)
    constant: int | None = None  # a Constant node's integer scalar value


def _node(data: memoryview) -> _Node:
    """NodeProto: input = 1, output = 2, op_type = 4, attribute = 5, domain = 7."""
    node = _Node()
    attributes: list[memoryview] = []
    for number, wire, value in _fields(data):
        if wire != 2:
            continue
        if number == 1:
            node.inputs.append(_text(value))
        elif number == 2:
            node.outputs.append(_text(value))
        elif number == 4:
            node.op_type = _text(value)
        elif number == 7:
            node.domain = _text(value)
        elif number == 5:
            attributes.append(value)
    if node.domain in _GRAPH_FREE_DOMAINS:
        return node
    for attribute in attributes:
        _read_attribute(node, attribute)
    return node


def _read_attribute(node: _Node, data: memoryview) -> None:
    """AttributeProto: name = 1, i = 3, t = 5, g = 6, graphs = 11."""
    name = ""
    tensor = integer = None
    graphs: list[memoryview] = []
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            name = _text(value)
        elif number == 3 and wire == 0:
            integer = value
        elif number == 5 and wire == 2:
            tensor = value
        elif number in (6, 11) and wire == 2:
            graphs.append(value)
    node.graphs.extend((name, g) for g in graphs)
    if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
        if name == "value" and tensor is not None:
            node.constant = _integer_scalar(tensor)
        elif name == "value_int" and integer is not None:
            node.constant = _signed(integer)


def _signed(value: int) -> int:
    """A varint read as a two's-complement int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _integer_scalar(data: memoryview) -> int | None:
    """The value of a one-element INT32/INT64 TensorProto, else None.

    TensorProto: dims = 1, data_type = 2, int32_data = 5, int64_data = 7, raw_data = 9,
    data_location = 14. Values are decoded only once the type and size say it is a scalar, so
    a large initializer costs one pass over its field headers.
    """
    dims: list[int] = []
    data_type = None
    packed: list[tuple[int, Any]] = []
    raw = None
    for number, wire, value in _fields(data):
        if number == 1:
            dims.extend(_varints(value) if wire == 2 else [value])
        elif number == 2 and wire == 0:
            data_type = value
        elif number in (5, 7):
            packed.append((wire, value))
        elif number == 9 and wire == 2:
            raw = value
        elif number == 14 and wire == 0 and value == _EXTERNAL_DATA:
            return None
    if data_type not in _INTEGER_TENSOR_TYPES or any(d != 1 for d in dims):
        return None
    if raw is not None:
        fmt = _INTEGER_TENSOR_TYPES[data_type]
        return struct.unpack(fmt, bytes(raw))[0] if len(raw) == struct.calcsize(fmt) else None
    values = [_signed(v) for wire, value in packed for v in (_varints(value) if wire == 2 else [value])]
    return values[0] if len(values) == 1 else None


def _varints(data: memoryview) -> list[int]:
    """A packed repeated varint field."""
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


@dataclass
class _Graph:
    nodes: list[_Node] = field(default_factory=list)
    constants: dict[str, int | None] = field(default_factory=dict)  # initializer name → integer scalar or None
    inputs: list[str] = field(default_factory=list)


def _graph(data: memoryview) -> _Graph:
    """GraphProto: node = 1, initializer = 5, input = 11 (ValueInfoProto, name = 1)."""
    graph = _Graph()
    for number, wire, value in _fields(data):
        if wire != 2:
            continue
        if number == 1:
            graph.nodes.append(_node(value))
        elif number == 5:
            graph.constants[_tensor_name(value)] = _integer_scalar(value)
        elif number == 11:
            graph.inputs.append(next((_text(v) for n, w, v in _fields(value) if n == 1 and w == 2), ""))
    return graph


def _tensor_name(data: memoryview) -> str:
    return next((_text(v) for n, w, v in _fields(data) if n == 8 and w == 2), "")


@dataclass
class _Function:
    nodes: list[_Node]
    inputs: list[str]


def _function(data: memoryview) -> tuple[tuple[str, str], _Function]:
    """FunctionProto: name = 1, input = 4, node = 7, domain = 10."""
    name = domain = ""
    inputs: list[str] = []
    nodes: list[_Node] = []
    for number, wire, value in _fields(data):
        if wire != 2:
            continue
        if number == 1:
            name = _text(value)
        elif number == 4:
            inputs.append(_text(value))
        elif number == 7:
            nodes.append(_node(value))
        elif number == 10:
            domain = _text(value)
    return (domain, name), _Function(nodes, inputs)


# -- the rules --------------------------------------------------------------------------------------

class _Refused(Exception):
    """The graph holds control flow the viewer cannot bound; the message says which and why."""


@dataclass
class _Checker:
    functions: Mapping[tuple[str, str], _Function]
    visited: int = 0

    def scope_of(self, outer: Mapping[str, int | None], nodes: list[_Node], inputs: list[str],
                 constants: Mapping[str, int | None]) -> dict[str, int | None]:
        """Names visible in a graph: the enclosing scope, shadowed by this graph's inputs (not
        constants), initializers and node outputs (constants only for ``Constant`` nodes)."""
        scope = dict(outer)
        scope.update({name: None for name in inputs})
        scope.update(constants)  # an initializer wins over a graph input of the same name: the
        # viewer feeds only the model's one feature input, never an overridable initializer
        for node in nodes:
            for index, name in enumerate(node.outputs):
                scope[name] = node.constant if (node.op_type == "Constant" and index == 0) else None
        return scope

    def graph(self, data: memoryview, outer: Mapping[str, int | None], iterations: int, depth: int, where: str) -> None:
        graph = _graph(data)
        scope = self.scope_of(outer, graph.nodes, graph.inputs, graph.constants)
        self.nodes(graph.nodes, scope, iterations, depth, where)

    def nodes(self, nodes: list[_Node], scope: Mapping[str, int | None], iterations: int, depth: int, where: str) -> None:
        if depth > MAX_NESTING:
            raise _Refused(f"subgraphs or function calls nested more than {MAX_NESTING} deep ({where})")
        self.visited += len(nodes)
        if self.visited > MAX_CHECKED_NODES:
            raise _Refused(f"its function calls expand to more than {MAX_CHECKED_NODES:,} nodes")
        for node in nodes:
            self.node(node, scope, iterations, depth, where)

    def node(self, node: _Node, scope: Mapping[str, int | None], iterations: int, depth: int, where: str) -> None:
        label = f"{node.op_type} node" + (f" in {where}" if where else "")
        default_domain = node.domain in ("", "ai.onnx")
        if default_domain and node.op_type == "Loop":
            nested = iterations > 1
            iterations *= self.trip_count(node, scope, label)
            if iterations > MAX_LOOP_ITERATIONS:
                around = ", counting the Loops it is nested in," if nested else ""
                raise _Refused(f"its {label} runs its body up to {iterations:,} times{around} "
                               f"(at most {MAX_LOOP_ITERATIONS:,} are accepted)")
        elif node.graphs and not (default_domain and node.op_type in _BOUNDED_BODY_OPS):
            raise _Refused(f"its {label} ({node.domain or 'ai.onnx'}) carries a subgraph the viewer cannot "
                           "bound in time")
        for attribute, body in node.graphs:
            self.graph(body, scope, iterations, depth + 1, f"the {attribute} of the {node.op_type}")
        function = self.functions.get((node.domain, node.op_type))
        if function is not None:
            local = self.scope_of({}, function.nodes, function.inputs, {})
            self.nodes(function.nodes, local, iterations, depth + 1, f"function {node.op_type}")

    @staticmethod
    def trip_count(node: _Node, scope: Mapping[str, int | None], label: str) -> int:
        """The constant trip count M of a Loop, or a refusal saying why it is not bounded."""
        name = node.inputs[0] if node.inputs else ""
        if not name:
            raise _Refused(f"its {label} has no trip count: it runs until a condition computed in the graph "
                           "turns false, which nothing bounds before it runs")
        value = scope.get(name)
        if value is None:
            raise _Refused(f"its {label} takes its trip count '{name}' from a value computed in the graph; "
                           "only a constant trip count can be bounded before it runs")
        return max(int(value), 0)


def check_bounded_graph(data: bytes, where: str | Path) -> None:
    """Refuse (``ViewerError`` naming ``where``) an ONNX model with unbounded control flow.

    ``data`` is the model file's bytes (ModelProto: graph = 7, functions = 25). The rules are
    the module docstring's. Bytes that are not a protobuf message are refused as unreadable.
    """
    view = memoryview(data)
    try:
        graph_data = None
        functions: dict[tuple[str, str], _Function] = {}
        for number, wire, value in _fields(view):
            if number == 7 and wire == 2:
                graph_data = value
            elif number == 25 and wire == 2:
                key, function = _function(value)
                functions[key] = function
        if graph_data is None:
            raise file_error(where, "not a readable ONNX model (no graph)")
        _Checker(functions).graph(graph_data, {}, 1, 0, "")
    except _Malformed:
        raise file_error(where, "not a readable ONNX model (malformed protobuf)") from None
    except _Refused as refusal:
        raise file_error(where, f"the model is refused: {refusal}") from None
