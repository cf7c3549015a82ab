"""One bounded pass over a JSON request body, before anything parses it: nesting depth, string
length, keys per object, items per array, and strict numbers (``NaN``, ``Infinity``, numbers that
overflow to infinity). Each bound is a ``MIXOPT_MAX_JSON_*`` setting; a refusal names the JSON
path of the offending value (``runs[3].tags``) and the setting.

The pass never builds the document and never recurses. It works on the body's bytes with a few
vectorised sweeps (numpy), so its cost depends on the size of the body, not on its shape:

1. escapes are neutralised without moving a byte (``\\\\`` and ``\\"`` become ``__``), so every
   quote left opens or closes a string, and a string's length is the gap between its quotes;
2. the structural bytes outside strings (``[]{},``, and the ``N``/``I`` only ``NaN`` and
   ``Infinity`` put there) are kept with their offsets; a running sum of +1/-1 over the brackets
   is the depth after each of them;
3. keys/items per container: at each level whose commas could exceed a bound, the commas at that
   level are grouped by the container opened last at that level;
4. values in the whole body (``MIXOPT_MAX_JSON_NODES``): one per comma and per opening bracket
   outside strings, plus one, counted while steps 1-2 run block by block (4 MiB, the quote
   parity carried over); the arrays of step 2 are dropped once they outgrow any JSON of that
   many values, so the pass's own memory is bounded too. The count bounds what parsing and
   validating the body can hold (10-250 bytes a value), whatever its shape;
5. only numbers that could overflow (an exponent of three digits or more, a run of 100 digits)
   are converted (``float``) to see whether they are infinite.

The path of a refusal comes from the same arrays: the last container opened at each level before
the offending byte, and the commas at that level since (the index, or the key that follows the
last of them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.config import Settings

_QUOTE, _COMMA, _OPEN_ARRAY, _OPEN_OBJECT = (ord(c) for c in '",[{')

#: bytes.translate table: the structural bytes stay, every other byte becomes 0
_STRUCTURE = bytes(c if c in b'"[]{},NI' else 0 for c in range(256))
#: +1 for an opening bracket, -1 for a closing one
_DEPTH_STEP = np.zeros(256, np.int8)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1
#: bytes.translate table for numbers: digits (and ``+``, only seen in exponents) become ``1``,
#: exponent markers ``e``, a ``-`` and ``.`` stay (part of a number), anything else ends one
_NUMBERS = bytes(
    ord("1") if c in b"0123456789+" else ord("e") if c in b"eE" else c if c in b"-." else ord(" ")
    for c in range(256)
)
#: a number that may overflow a float holds one of these (in the _NUMBERS alphabet): a positive
#: exponent of three digits or more, or a run of 100 digits (a mantissa and an exponent each
#: below them stay under 1e199, and an integer needs 4301 digits to be refused)
_OVERFLOW_HINTS = (b"e111", b"1" * 100)
#: Python refuses to convert longer integers (sys.get_int_max_str_digits)
_MAX_INT_DIGITS = 4300


@dataclass(frozen=True)
class JsonLimits:
    depth: int
    string_bytes: int
    keys: int
    items: int
    nodes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> JsonLimits:
        return cls(
            depth=settings.max_json_depth,
            string_bytes=settings.max_json_string_bytes,
            keys=settings.max_json_keys,
            items=settings.max_json_items,
            nodes=settings.max_json_nodes,
        )


@dataclass(frozen=True)
class Refusal:
    """Why a body is refused: HTTP status, JSON path (``body`` for the whole) and message."""

    status: int
    field: str
    message: str


def check(body: bytes, limits: JsonLimits) -> Refusal | None:
    """The first bound a JSON body exceeds, else None. A body that is not JSON at all passes
    (the route's parser reports where it breaks), unless it nests too deeply on the way."""
    return _check(body, limits)[0]


#: what :func:`check_and_parse` answers for a body it leaves to the route's own parser
NOT_PARSED = object()


def check_and_parse(body: bytes, limits: JsonLimits) -> tuple[Refusal | None, Any]:
    """:func:`check`, then the body parsed in pieces of about ``PIECE_BYTES`` (the GIL changes
    hands between pieces, so a thread parsing a 45 MB body never holds up the event loop for
    long); the object is what ``json.loads(body)`` gives. ``NOT_PARSED`` when refused, not
    UTF-8, or not JSON (the route's parser then reports where it breaks)."""
    refusal, scan = _check(body, limits)
    if refusal or scan is None or scan.body is not body:
        return refusal, NOT_PARSED
    try:
        return None, _Pieces(scan).parse()
    except ValueError:  # JSONDecodeError, or a piece that is not JSON on its own
        return None, NOT_PARSED


def _check(body: bytes, limits: JsonLimits) -> tuple[Refusal | None, _Scan | None]:
    encoding = json.detect_encoding(body)  # as json.loads does: UTF-16/32 and a BOM are JSON too
    if encoding != "utf-8":
        body = body.decode(encoding, "replace").encode()
    scan = _Scan(body, max_nodes=limits.nodes)
    if scan.nodes > limits.nodes:
        return _too_many(scan.nodes, limits), None
    if not scan.complete:  # more structure than any JSON of that many values: not JSON
        return None, None
    refusal = _depth(scan, limits)
    if refusal or not scan.balanced:
        return refusal, None if not scan.balanced else scan
    return _strings(scan, limits) or _counts(scan, limits) or _non_finite(scan), scan


#: bytes of one piece parsed at once by :func:`check_and_parse` (a few milliseconds)
PIECE_BYTES = 256 * 2**10
_WHITESPACE = b" \t\r\n"


class _Pieces:
    """Parse a checked body container by container: the members of a container larger than
    ``PIECE_BYTES`` are parsed in groups of about that size (``json.loads`` of ``[`` + members
    + ``]``, or ``{`` ... ``}``), and a single member larger than that is split the same way
    (depth is bounded by the check, so is the recursion)."""

    def __init__(self, scan: _Scan):
        self.scan, self.body = scan, scan.body

    def parse(self) -> Any:
        start = len(self.body) - len(self.body.lstrip(_WHITESPACE))
        if len(self.body) <= PIECE_BYTES or not self.body.startswith((b"[", b"{"), start):
            return json.loads(self.body)
        return self._container(0)

    def _value(self, begin: int, end: int) -> Any:
        """The value in ``body[begin:end]`` (whitespace around it allowed)."""
        if end - begin <= PIECE_BYTES:
            return json.loads(self.body[begin:end])
        offsets, chars = self.scan.offsets, self.scan.chars
        i = int(np.searchsorted(offsets, begin))
        if i < len(offsets) and offsets[i] < end and chars[i] in (_OPEN_ARRAY, _OPEN_OBJECT):
            if not self.body[begin : int(offsets[i])].strip(_WHITESPACE):
                return self._container(i)
        return json.loads(self.body[begin:end])  # a long string or number

    def _container(self, i: int) -> Any:
        scan, body = self.scan, self.body
        level = int(scan.depth[i])
        after = scan.depth[i + 1 :]
        j = i + 1 + int(np.argmax(after == level - 1))  # its closing bracket
        inner = slice(i + 1, j)
        commas = np.flatnonzero((scan.depth[inner] == level) & (scan.chars[inner] == _COMMA))
        bounds = np.concatenate(
            ([scan.offsets[i]], scan.offsets[i + 1 + commas], [scan.offsets[j]])
        )
        is_object = scan.chars[i] == _OPEN_OBJECT
        result: Any = {} if is_object else []
        a, n = 0, len(bounds) - 1
        while a < n:
            c = int(np.searchsorted(bounds, bounds[a] + PIECE_BYTES, side="right")) - 1
            lo = int(bounds[a]) + 1
            if c > a:  # members a..c-1 together
                hi = int(bounds[c])
                if c == a + 1 and n > 1 and not body[lo:hi].strip(_WHITESPACE):
                    raise ValueError("an empty member")  # "[1,,2]" or "[1,]" cut at that member
                if is_object:
                    result.update(json.loads(b"{" + body[lo:hi] + b"}"))
                else:
                    result.extend(json.loads(b"[" + body[lo:hi] + b"]"))
                a = c
                continue
            hi = int(bounds[a + 1])  # one member larger than a piece
            if is_object:
                result.update([self._member(lo, hi)])
            else:
                result.append(self._value(lo, hi))
            a += 1
        return result

    def _member(self, begin: int, end: int) -> tuple[str, Any]:
        """``"key": value`` in ``body[begin:end]``."""
        quotes = self.scan.quotes
        k = int(np.searchsorted(quotes, begin))
        opening, closing = int(quotes[k]), int(quotes[k + 1])
        if self.body[begin:opening].strip(_WHITESPACE):
            raise ValueError("not a member")
        colon = self.body.index(b":", closing + 1)
        if self.body[closing + 1 : colon].strip(_WHITESPACE):
            raise ValueError("not a member")
        return json.loads(self.body[opening : closing + 1]), self._value(colon + 1, end)


def _neutral(body: bytes) -> bytes:
    """``body`` with its escapes neutralised without moving a byte (``\\\\`` and ``\\"``
    become ``__``): every quote left opens or closes a string."""
    return body.replace(b"\\\\", b"__").replace(b'\\"', b"__") if b"\\" in body else body


def _too_many(nodes: int, limits: JsonLimits) -> Refusal:
    return Refusal(
        413,
        "body",
        f"{nodes} JSON values in the body; at most {limits.nodes} (MIXOPT_MAX_JSON_NODES): "
        "split the request (fewer runs, points or mixtures per request)",
    )


#: the body is masked in blocks of this many bytes (the pass's temporaries are a few of them)
BLOCK_BYTES = 4 * 2**20


class _Scan:
    """The body's structure as arrays: offsets of the quotes, and offsets, bytes and depth of the
    structural bytes outside strings.

    Memory: the body is masked block by block (the quote parity carried over), so the pass's
    temporaries are a few blocks whatever the body's size; the arrays it keeps hold only the
    structural bytes outside strings and the quotes, and are dropped as soon as they outgrow any
    body within ``max_nodes`` values (then :attr:`complete` is False and :attr:`nodes` is still
    counted to the end): a valid body has at most four structural bytes per value (a comma or
    an opening bracket, its closing one, the two N of a NaN) and four quotes (a key and a string
    value)."""

    def __init__(self, body: bytes, text: bytes | None = None, max_nodes: int | None = None):
        self.body = body
        text = _neutral(body) if text is None else text
        quotes: list[np.ndarray] | None = []
        offsets: list[np.ndarray] | None = []
        chars: list[np.ndarray] | None = []
        parity, kept, nodes = 0, 0, 1
        for start in range(0, len(text), BLOCK_BYTES):
            marks = np.frombuffer(text[start : start + BLOCK_BYTES].translate(_STRUCTURE), np.uint8)
            quote = marks == _QUOTE
            # 1 from an opening quote up to its closing quote (excluded): inside a string
            inside = np.bitwise_xor.accumulate(quote.view(np.uint8))
            if parity:
                inside ^= 1
            parity = int(inside[-1])
            inside |= quote.view(np.uint8)
            at = np.flatnonzero(np.where(inside.view(bool), np.uint8(0), marks))
            found = marks[at]
            nodes += int(np.count_nonzero(found == _COMMA))
            nodes += int(np.count_nonzero((found == _OPEN_ARRAY) | (found == _OPEN_OBJECT)))
            kept += at.size + int(np.count_nonzero(quote))
            if quotes is None or offsets is None or chars is None:
                continue
            if max_nodes is not None and (nodes > max_nodes or kept > 8 * max_nodes + 16):
                quotes = offsets = chars = None  # beyond any body within max_nodes
                continue
            quotes.append(np.flatnonzero(quote) + start)
            offsets.append(at + start)
            chars.append(found)
        #: values in the body (see :func:`nodes`)
        self.nodes = nodes
        #: False when the arrays were dropped (too many values, or not JSON)
        self.complete = quotes is not None
        self.quotes = np.concatenate(quotes) if quotes else np.zeros(0, np.int64)
        self.offsets = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        self.chars = np.concatenate(chars) if chars else np.zeros(0, np.uint8)
        #: depth after each structural byte (an opening bracket counts itself)
        self.depth = np.cumsum(_DEPTH_STEP[self.chars], dtype=np.int32)
        self.balanced = len(self.quotes) % 2 == 0 and (
            not self.depth.size or (int(self.depth.min()) >= 0 and int(self.depth[-1]) == 0)
        )

    def inside_string(self, offset: int) -> int | None:
        """The offset of the closing quote of the string holding ``offset``, else None."""
        k = int(np.searchsorted(self.quotes, offset, side="right"))
        if k % 2 == 0:
            return None
        return int(self.quotes[k]) if k < len(self.quotes) else len(self.body)

    def path_at(self, offset: int) -> str:
        return self.path(int(np.searchsorted(self.offsets, offset)))

    def path(self, i: int) -> str:
        """The JSON path of the value after structural byte ``i - 1`` (``runs[3].tags``)."""
        try:
            return _shorten(self._path(i))
        except (IndexError, ValueError):  # a body broken before that point: no path
            return "body"

    def _path(self, i: int) -> str:
        depth, chars = self.depth[:i], self.chars[:i]
        top = int(depth[-1]) if i else 0
        opened = np.flatnonzero((chars == _OPEN_ARRAY) | (chars == _OPEN_OBJECT))
        commas = np.flatnonzero(chars == _COMMA)
        opened, open_bounds = _by_level(opened, depth[opened], top)
        commas, comma_bounds = _by_level(commas, depth[commas], top)
        path = ""
        for level in range(1, top + 1):
            container = int(opened[open_bounds[level + 1] - 1])  # the last opened at that level
            since = commas[comma_bounds[level] : comma_bounds[level + 1]]
            n = len(since) - int(np.searchsorted(since, container))  # its commas so far
            if chars[container] == _OPEN_ARRAY:
                path += f"[{n}]"
            else:
                boundary = int(since[-1]) if n else container
                key = self._key_after(int(self.offsets[boundary]))
                path = f"{path}.{key}" if path else key
        return path or "body"

    def _key_after(self, offset: int) -> str:
        k = int(np.searchsorted(self.quotes, offset))
        raw = self.body[int(self.quotes[k]) + 1 : int(self.quotes[k + 1])]
        if len(raw) > 64:
            return raw[:60].decode("utf-8", "replace") + "..."
        try:
            return json.loads(b'"' + raw + b'"')
        except ValueError:
            return raw.decode("utf-8", "replace")


def _by_level(index: np.ndarray, levels: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """``index`` grouped by level (in order within a level), and where each level starts."""
    order = np.argsort(levels.astype(np.int16), kind="stable")
    bounds = np.searchsorted(levels[order], np.arange(top + 2))
    return index[order], bounds


def _shorten(path: str, most: int = 300) -> str:
    return path if len(path) <= most else f"{path[: most // 2]}...{path[-most // 2 :]}"


def _depth(scan: _Scan, limits: JsonLimits) -> Refusal | None:
    deep = scan.depth > limits.depth
    if not deep.any():
        return None
    i = int(np.argmax(deep))
    return Refusal(
        422,
        scan.path(i),
        f"nested deeper than {limits.depth} levels of objects and arrays (MIXOPT_MAX_JSON_DEPTH)",
    )


def _strings(scan: _Scan, limits: JsonLimits) -> Refusal | None:
    lengths = scan.quotes[1::2] - scan.quotes[0::2] - 1
    long = lengths > limits.string_bytes
    if not long.any():
        return None
    k = int(np.argmax(long))
    return Refusal(
        413,
        scan.path_at(int(scan.quotes[2 * k])),
        f"a string of {int(lengths[k])} bytes as sent; at most {limits.string_bytes} "
        "(MIXOPT_MAX_JSON_STRING_BYTES)",
    )


def _counts(scan: _Scan, limits: JsonLimits) -> Refusal | None:
    """Keys per object and items per array: commas counted per container, only at the levels
    that hold enough commas to exceed a bound."""
    chars, depth = scan.chars, scan.depth
    comma = chars == _COMMA
    opened = (chars == _OPEN_ARRAY) | (chars == _OPEN_OBJECT)
    per_level = np.bincount(depth[comma])
    for level in np.flatnonzero(per_level >= min(limits.keys, limits.items)):
        if level == 0:  # commas outside any container: not JSON, the route reports it
            continue
        at = np.flatnonzero((depth == level) & (opened | comma))
        is_open = opened[at]
        container = np.cumsum(is_open, dtype=np.int32) - 1  # the container of each comma
        commas = np.bincount(container[~is_open], minlength=int(is_open.sum()))
        objects = chars[at[is_open]] == _OPEN_OBJECT
        over = np.flatnonzero(commas >= np.where(objects, limits.keys, limits.items))
        if over.size:
            g = int(over[0])
            what, limit, setting = (
                ("an object", limits.keys, "keys")
                if objects[g]
                else ("an array", limits.items, "items")
            )
            return Refusal(
                422,
                scan.path(int(at[is_open][g])),
                f"{what} with {int(commas[g]) + 1} {setting}; at most {limit} "
                f"(MIXOPT_MAX_JSON_{setting.upper()})",
            )
    return None


def nodes(body: bytes) -> int:
    """The values of a JSON body as :func:`check` counts them: one per comma and per opening
    bracket outside strings, plus one (so ``[]`` and ``[1]`` count 2, ``{"a": [1, 2]}`` 4)."""
    return _Scan(body, max_nodes=0).nodes


def _non_finite(scan: _Scan) -> Refusal | None:
    """The first NaN, Infinity, or number too large for a float (or for an int), as a 422."""
    hits = [hit for hit in (_named_constant(scan), _overflow(scan)) if hit]
    if not hits:
        return None
    offset, text = min(hits)
    return Refusal(
        422,
        scan.path_at(offset),
        f"{text} is not a finite number; JSON bodies must use finite numbers (or null)",
    )


def _named_constant(scan: _Scan) -> tuple[int, str] | None:
    """``NaN``, ``Infinity`` or ``-Infinity``: outside strings, JSON has no other N or I."""
    named = np.flatnonzero((scan.chars == ord("N")) | (scan.chars == ord("I")))
    if not named.size:
        return None
    offset = int(scan.offsets[named[0]])
    for text in ("NaN", "Infinity"):
        if scan.body.startswith(text.encode(), offset):
            negative = offset > 0 and scan.body[offset - 1] == ord("-")
            return (offset - 1, "-" + text) if negative else (offset, text)
    return None  # not JSON: the route's parser reports where


def _overflow(scan: _Scan) -> tuple[int, str] | None:
    """The first number (outside strings) that overflows a float, or an int Python refuses."""
    text = scan.body.translate(_NUMBERS)
    hits = []
    for hint in _OVERFLOW_HINTS:
        p = text.find(hint)
        while p >= 0:
            closing = scan.inside_string(p)
            if closing is not None:  # in a string: go on after it
                p = text.find(hint, closing + 1)
                continue
            start, end = text.rfind(b" ", 0, p) + 1, text.find(b" ", p)
            end = len(text) if end < 0 else end
            token = scan.body[start:end]
            if _infinite(token):
                hits.append((start, _show(token)))
                break
            p = text.find(hint, end)
    return min(hits) if hits else None


def _infinite(token: bytes) -> bool:
    if any(c in token for c in b".eE"):
        try:
            return math.isinf(float(token))
        except ValueError:  # not a JSON number: the route's parser reports it
            return False
    return len(token.lstrip(b"-")) > _MAX_INT_DIGITS


def _show(token: bytes) -> str:
    text = token.decode("ascii", "replace")
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
