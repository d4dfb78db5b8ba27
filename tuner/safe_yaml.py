"""YAML as tuner reads it from users: study files and ``--option KEY=VALUE`` values.

Every way a file can go wrong ends in one ConfigError naming the file (and the line, where
there is one), before anything is validated or printed:

- larger than ``MAX_BYTES`` (read no further), binary (a NUL byte; an SQLite file is named
  as such), UTF-16/32, bytes that are not UTF-8;
- not YAML, several documents, a duplicate key in a mapping (YAML forbids them; PyYAML
  would silently keep the last);
- an alias bomb (``&a [*b, *b, ...]``): the document's size with every alias expanded is
  counted on the node graph, without expanding it, and must stay under ``MAX_NODES``;
- nesting deeper than ``MAX_DEPTH``.

Plain scalars follow YAML 1.2 (``_SCALARS``), and a regular file is required (a FIFO would
wait for a writer for ever).
"""

import re
import stat
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import ConfigError, shown

MAX_BYTES = 1_000_000
MAX_NODES = 100_000
"""Scalars, sequences and mappings after expanding aliases; a large study file has a few hundred."""
MAX_DEPTH = 50

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's scalars (``_SCALARS``), refusing duplicate keys and
    naming the line of a value its tag cannot construct."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicates(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicates(self, node: yaml.MappingNode) -> None:
        """A key may appear once in a mapping, and once in each mapping merged into it (``<<:``),
        whose keys the mapping itself may override."""
        seen: set = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in merged:
                    if isinstance(source, yaml.MappingNode):
                        self._refuse_duplicates(source)
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key)} (each key may appear once)", key_node.start_mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError):  # e.g. !!int abc, a 5000-digit number
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"{shown(node.value)} cannot be read as {tag}", node.start_mark) from None


_INT, _FLOAT, _BOOL = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
_SCALARS = {
    _BOOL: (r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    _INT: (r"^[-+]?(?:0|[1-9][0-9_]*)$|^0x[0-9a-fA-F_]+$|^0b[01_]+$", list("-+0123456789")),
    _FLOAT: (r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"
             r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$", list("-+0123456789.")),
}
"""Plain scalars read as YAML 1.2 reads them, as users write them: ``1e-3`` is a number (YAML 1.1
wants ``1.0e-3``); ``yes``/``no``/``on``/``off`` and ``2001-12-14`` stay text, and ``1:30`` is not
90 (YAML 1.1's base 60)."""
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers
            if tag not in (*_SCALARS, "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_pattern, _first) in _SCALARS.items():
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def load_yaml(path: str | Path) -> Any:
    """The one YAML document in the file at ``path`` (None when it has none)."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError(f"{str(path)!r} is not a regular file (a pipe or a device); give a study file")
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return parse_yaml(_decode(data, str(path)), str(path))


def parse_yaml(text: str, source: str) -> Any:
    """The one YAML document in ``text``; ``source`` names it in messages."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES // 1_000_000} MB; a study file is a few KB")
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigError(_unreadable(exc, text, source)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "not valid YAML"
        if exc.problem and exc.context and exc.context.startswith("expected"):
            problem = f"{exc.context}, {exc.problem}"
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(_unreadable(exc, text, source)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply; allowed: at most {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def _unreadable(exc: yaml.reader.ReaderError, text: str, source: str) -> str:
    line = text[: exc.position].count("\n") + 1
    return f"{source}, line {line}: character U+{exc.character:04X} is not allowed in YAML"


def _decode(data: bytes, source: str) -> str:
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES // 1_000_000} MB; a study file is a few KB")
    if data.startswith(b"SQLite format 3\x00"):
        raise ConfigError(f"{source}: is an SQLite database, not a study file (give a database as "
                          f"--storage sqlite:///{source})")
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            raise ConfigError(f"{source}: is encoded as {encoding}; save it as UTF-8")
    if b"\x00" in data:
        for encoding, zeros in (("UTF-32", (1, 2, 3)), ("UTF-16", (1,))):  # ASCII text in a wide encoding
            width = zeros[-1] + 1
            for order, positions in (("LE", zeros), ("BE", tuple(width - 1 - z for z in zeros))):
                if len(data) % width == 0 and all(not any(data[z::width]) for z in positions):
                    raise ConfigError(f"{source}: is encoded as {encoding} ({order}); save it as UTF-8")
        raise ConfigError(f"{source}: is a binary file, not a YAML study file")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}, line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; "
                          "save the file as UTF-8") from None


def _check_size(root: yaml.Node, source: str) -> None:
    """Refuse a document whose alias-expanded size or depth is too large, walking each node once."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise ConfigError(f"{source}: expands to more than {MAX_NODES} values (aliases repeat "
                                  "their anchors' content); refused before reading it")
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"{source}: nested too deeply; allowed: at most {MAX_DEPTH} levels")
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(f"{source}: an alias refers to a node that contains it; allowed: no cycles")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
