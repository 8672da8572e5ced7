"""Rewrite rules as data, and the one driver that applies them (tinygrad's PatternMatcher).

    def drop_identity(m: Match) -> Replacement | None:
        return Replacement.outputs(m.root, [m.root.inputs[0]])

    rules = [Rule(Op("Identity"), drop_identity)]
    rewrites = apply_rules(ir_model, rules)     # applies them until nothing changes

A :class:`Op` pattern matches a node by op type and, optionally, the producers of
some of its inputs (``Op("BatchNormalization", inputs={0: Op("Conv", name="conv")})``);
the nodes it matched are in ``match[name]``. A rule's function looks at the match and
returns a :class:`Replacement` — values that take the place of the matched node's
outputs, and the new nodes that compute them — or ``None`` to leave the graph alone.

The driver keeps the graph's contract, so rule functions need not:

* new nodes go in just before the first node whose outputs they replace, so a rule
  whose new nodes read only values visible there keeps the order topological;
* a value a rule creates takes the name of the value it replaces (a folded Conv's
  output keeps the BatchNormalization output's name, as calibration tables and the
  layer-by-layer compare pair tensors by name); graph outputs keep their names, and a
  replacement that could not keep one (the new value is a graph input, an
  initializer or another output) is refused;
* the replaced nodes, the matched nodes left without consumers, and initializers
  that only they read are removed.

Only the main graph is rewritten; subgraphs (If/Loop bodies) are left as they are.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from lowbit.errors import ModelError

log = logging.getLogger(__name__)

ONNX_DOMAINS = ("", "ai.onnx")
MAX_ROUNDS = 100


class Op:
    """A pattern: a node of one of ``op_types`` whose listed inputs come from sub-patterns.

    ``inputs`` maps an input index to the pattern its producer must match. With
    ``exclusive`` (the default) a sub-pattern's output must feed only that input and
    not be a graph output, so the rewrite can drop the producer. ``name`` captures
    the node in the match.
    """

    __slots__ = ("domain", "exclusive", "inputs", "name", "op_types")

    def __init__(self, *op_types: str, name: str = "", inputs: Mapping[int, Op] | None = None,
                 exclusive: bool = True, domain: str = "") -> None:
        if not op_types:
            raise ValueError("a pattern needs at least one op type")
        self.op_types = frozenset(op_types)
        self.name = name
        self.inputs = dict(inputs or {})
        self.exclusive = exclusive
        self.domain = domain

    def match(self, node: ir.Node) -> Match | None:
        """The match rooted at ``node``, or None."""
        nodes: dict[str, ir.Node] = {}
        if not self._match(node, nodes):
            return None
        return Match(root=node, nodes=nodes)

    def _match(self, node: ir.Node, nodes: dict[str, ir.Node]) -> bool:
        if node.op_type not in self.op_types or not _same_domain(node.domain, self.domain):
            return False
        for index, sub in self.inputs.items():
            if index >= len(node.inputs) or node.inputs[index] is None:
                return False
            value = node.inputs[index]
            assert value is not None
            producer = value.producer()
            if producer is None:
                return False
            if sub.exclusive and (len(value.uses()) != 1 or value.is_graph_output()):
                return False
            if not sub._match(producer, nodes):
                return False
        if self.name:
            nodes[self.name] = node
        return True


@dataclass(frozen=True)
class Match:
    """The node a pattern matched (``root``) and the named nodes below it."""

    root: ir.Node
    nodes: Mapping[str, ir.Node] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ir.Node:
        return self.nodes[name]

    @property
    def graph(self) -> ir.Graph:
        graph = self.root.graph
        assert isinstance(graph, ir.Graph), "patterns match nodes of a graph"
        return graph


@dataclass(frozen=True)
class Replacement:
    """``values``: (old, new) pairs, new taking old's place; ``nodes``: new nodes computing
    the new values, in topological order."""

    values: tuple[tuple[ir.Value, ir.Value], ...]
    nodes: tuple[ir.Node, ...] = ()

    @classmethod
    def outputs(cls, node: ir.Node, new_values: Sequence[ir.Value],
                nodes: Sequence[ir.Node] = ()) -> Replacement:
        """Replace ``node``'s outputs, in order, by ``new_values`` (computed by ``nodes``)."""
        pairs = tuple(zip(node.outputs, new_values, strict=False))
        return cls(pairs, tuple(nodes))


@dataclass(frozen=True)
class Rule:
    """A pattern and the function that rewrites what it matched (None: no rewrite)."""

    pattern: Op
    rewrite: Callable[[Match], Replacement | None]


def apply_rules(model: ir.Model, rules: Sequence[Rule], *, max_rounds: int = MAX_ROUNDS) -> int:
    """Apply ``rules`` to the main graph until none fires; returns the number of rewrites."""
    graph = model.graph
    by_type: dict[str, list[Rule]] = defaultdict(list)
    for rule in rules:
        for op_type in rule.pattern.op_types:
            by_type[op_type].append(rule)
    total = 0
    for _ in range(max_rounds):
        changed = 0
        for node in list(graph):
            if node.graph is not graph:
                continue  # removed by an earlier rewrite in this round
            for rule in by_type.get(node.op_type, ()):
                match = rule.pattern.match(node)
                if match is None:
                    continue
                replacement = rule.rewrite(match)
                if replacement is not None and apply_replacement(graph, match, replacement):
                    changed += 1
                    break
        total += changed
        if not changed:
            return total
    raise ModelError(f"graph rewriting did not settle after {max_rounds} rounds: "
                     f"two rules undo each other ({', '.join(sorted(by_type))})")


def apply_replacement(graph: ir.Graph, match: Match, replacement: Replacement) -> bool:
    """Put ``replacement`` into ``graph``; False (graph untouched) when names cannot be kept."""
    pairs = [(old, new) for old, new in replacement.values if old is not new]
    created = {value for node in replacement.nodes for value in node.outputs}
    if not all(keeps_names(old, new) for old, new in pairs if new not in created):
        return False
    if not pairs and not replacement.nodes:
        return False
    producers = [old.producer() for old, _ in pairs]
    if replacement.nodes:
        graph.insert_before(_first_in_graph(graph, [p for p in producers if p is not None]),
                            list(replacement.nodes))
    for old, new in pairs:
        name = old.name
        if new in created or old.is_graph_output():
            old.name = None
            new.name = name
        if new in created or old.is_graph_output():
            # The value keeps the type and shape the old one had where it knows none:
            # shape inference may not run before a graph output is written, and where it
            # cannot infer the shape (a Reshape to a computed shape) a graph output
            # without one fails the ONNX checker.
            new.type = new.type if new.type is not None else old.type
            new.shape = new.shape if new.shape is not None else old.shape
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
    _remove_dead(graph, [*(p for p in producers if p is not None), *match.nodes.values(),
                         match.root])
    return True


def keeps_names(old: ir.Value, new: ir.Value) -> bool:
    """Whether an existing value ``new`` can take ``old``'s place with every name kept:
    not when ``old`` is a graph output and ``new`` has a name of its own that must stay."""
    return not (old.is_graph_output() and old is not new and (
        new.is_graph_input() or new.is_graph_output() or new.is_initializer()))


def _first_in_graph(graph: ir.Graph, nodes: Sequence[ir.Node]) -> ir.Node:
    if len(set(nodes)) == 1:
        return nodes[0]
    wanted = set(nodes)
    for node in graph:
        if node in wanted:
            return node
    raise AssertionError("a replaced value has no producer in the graph")


def _remove_dead(graph: ir.Graph, candidates: Sequence[ir.Node]) -> None:
    """Remove candidates nobody reads, then the producers of their inputs left unread
    (a worklist), then initializers only the removed nodes read."""
    inputs: list[ir.Value] = []
    work = list(candidates)
    while work:
        node = work.pop()
        if node.graph is not graph:
            continue
        if any(v.uses() or v.is_graph_output() for v in node.outputs):
            continue
        values = [v for v in node.inputs if v is not None]
        graph.remove(node, safe=True)
        inputs.extend(values)
        work.extend(p for p in (v.producer() for v in values) if p is not None)
    for value in inputs:
        if (value.is_initializer() and not value.uses() and not value.is_graph_input()
                and not value.is_graph_output() and value.name is not None
                and value.name in graph.initializers):
            del graph.initializers[value.name]


# Helpers the rule functions share.

def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant array (an initializer or a Constant's output), or None."""
    if value is None:
        return None
    if value.const_value is not None:
        return np.asarray(value.const_value.numpy())
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and _same_domain(
            producer.domain, ""):
        attr = producer.attributes.get("value")
        if attr is not None and attr.type == ir.AttributeType.TENSOR:
            return np.asarray(attr.as_tensor().numpy())
    return None


def new_initializer(graph: ir.Graph, array: np.ndarray, name: str) -> ir.Value:
    """Register ``array`` as an initializer under a name not yet taken (``name``, ``name_``…)."""
    while name in graph.initializers:
        name += "_"
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype),
                     const_value=tensor)
    graph.register_initializer(value)
    return value


def clone_node(node: ir.Node, inputs: Sequence[ir.Value | None], *,
               attributes: Mapping[str, ir.Attr] | None = None,
               num_outputs: int | None = None, name: str | None = None) -> ir.Node:
    """A new node of ``node``'s op and attributes (some replaced) on new inputs."""
    attrs = dict(node.attributes)
    attrs.update(attributes or {})
    return ir.Node(node.domain, node.op_type, list(inputs), attributes=list(attrs.values()),
                   num_outputs=len(node.outputs) if num_outputs is None else num_outputs,
                   name=node.name if name is None else name, version=node.version)


def _same_domain(found: str, wanted: str) -> bool:
    if wanted in ONNX_DOMAINS:
        return found in ONNX_DOMAINS
    return found == wanted
