"""The grammar of SCIM filters (RFC 7644 section 3.4.2.2) and PATCH paths (RFC 7644 section 3.5.2).

Tokens come from scim2-filter-parser's lexer, corrected by subclassing (sly keeps the base
class's rule order): numbers of any length and JSON form, strings with JSON escapes, and
`true`/`false`/`null` only as whole words, so `nullable` and `truex` stay attribute names. Its sly
parser is not used: it gives `and` and `or` one precedence (`a or b and c` read as
`(a or b) and c`), and a sly grammar cannot be corrected by subclassing. A recursive-descent parser
over the same tokens, about 100 lines, states the RFC's precedence (not, then and, then or) in its
structure, bounds nesting, and reports errors in words; PATCH paths reuse its pieces.
Every error is `InvalidFilter`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from scim2_filter_parser.lexer import SCIMLexer
from sly.lex import Token

from identity.jsontext import UNSTORABLE
from scim.errors import InvalidFilter

MAX_FILTER_LENGTH = 4096
# What no database text holds (identity.jsontext.UNSTORABLE): NUL, and a lone UTF-16 surrogate.
REFUSED_CHARACTERS = UNSTORABLE
MAX_DEPTH = 32


class _Lexer(SCIMLexer):  # type: ignore[misc]
    """scim2-filter-parser's lexer with its token rules corrected; sly keeps the base order."""

    tokens = SCIMLexer.tokens
    # Whole words only: `nullable` and `truex` are attribute names.
    FALSE = r"false(?![A-Za-z0-9_$-])"
    TRUE = r"true(?![A-Za-z0-9_$-])"
    NULL = r"null(?![A-Za-z0-9_$-])"
    NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_$])"

    @_(r'"(?:[^"\\]|\\.)*"')  # type: ignore[name-defined, untyped-decorator]  # noqa: F821
    def COMP_VALUE(self, t: Token) -> Token:  # noqa: N802
        t.value = json.loads(t.value)  # a JSON string (RFC 7159): escapes decoded, bad ones refused
        if (found := REFUSED_CHARACTERS.search(t.value)) is not None:  # refused here, not as a 500 by the database
            raise InvalidFilter("a filter value cannot contain the NUL character" if found.group() == "\x00" else
                                "a filter value cannot contain a lone surrogate (\\ud800-\\udfff not in a pair)")
        return t

    def error(self, t: Token) -> None:
        raise InvalidFilter(f"unexpected character {t.value[0]!r} at position {t.index}")


# -- parse tree -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttrPath:
    """`[URI ":"] ATTRNAME ["." subAttr]`; names as written (compare them case-insensitively)."""

    uri: str | None
    name: str
    sub_attr: str | None = None

    def __str__(self) -> str:
        text = f"{self.uri}:{self.name}" if self.uri else self.name
        return f"{text}.{self.sub_attr}" if self.sub_attr else text


@dataclass(frozen=True)
class Compare:
    """`attrPath op compValue`, or `attrPath pr` (value None)."""

    path: AttrPath
    op: str
    value: Any = None


@dataclass(frozen=True)
class Logical:
    op: str  # "and" | "or"
    left: Filter
    right: Filter


@dataclass(frozen=True)
class Not:
    operand: Filter


@dataclass(frozen=True)
class ValuePath:
    """`attrPath "[" valFilter "]"`: the inner filter applies to one value of `path` at a time."""

    path: AttrPath
    filter: Filter


Filter: TypeAlias = Compare | Logical | Not | ValuePath


@dataclass(frozen=True)
class PatchPath:
    """A PATCH path (RFC 7644 section 3.5.2): `attrPath` or `valuePath ["." subAttr]`."""

    attr: AttrPath  # for a valuePath, the multi-valued attribute (sub_attr None)
    value_filter: Filter | None = None
    sub_attr: str | None = None  # the sub-attribute after the filter, or the attrPath's own

    @property
    def uri(self) -> str | None:
        return self.attr.uri


_OPERATORS = ("PR", "EQ", "NE", "CO", "SW", "EW", "GT", "GE", "LT", "LE")
_WORDS = {"RPAREN": "')'", "RBRACKET": "']'", "value": "a value (string, number, true, false or null)",
          **{op: "an operator" for op in _OPERATORS}}

# -- parser -----------------------------------------------------------------------------------

class _Parser:
    """Recursive descent: FILTER = or; or = and *("or" and); and = unary *("and" unary);
    unary = "not" unary / "(" FILTER ")" / attrPath "[" FILTER "]" ["." sub compare] / attrExp.
    """

    def __init__(self, text: str) -> None:
        if len(text) > MAX_FILTER_LENGTH:
            raise InvalidFilter(f"filter longer than {MAX_FILTER_LENGTH} characters")
        self.text = text
        try:
            self.tokens = list(_Lexer().tokenize(text))
        except (ValueError, json.JSONDecodeError) as exc:
            raise InvalidFilter(f"malformed filter: {exc}") from None
        self.pos = 0
        self.depth = 0

    # token helpers
    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def accept(self, *types: str) -> Token | None:
        token = self.peek()
        if token is not None and token.type in types:
            self.pos += 1
            return token
        return None

    def expect(self, *types: str) -> Token:
        token = self.accept(*types)
        if token is None:
            found = self.peek()
            where = "end of filter" if found is None else f"{found.value!r} at position {found.index}"
            wanted = " or ".join(dict.fromkeys(_WORDS.get(t, t) for t in types))
            raise InvalidFilter(f"expected {wanted}, found {where}")
        return token

    def done(self) -> None:
        token = self.peek()
        if token is not None:
            raise InvalidFilter(f"unexpected {token.value!r} at position {token.index}")

    # grammar
    def filter(self, inner: bool = False) -> Filter:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidFilter(f"filter nested deeper than {MAX_DEPTH}")
        node = self.conjunction(inner)
        while self.accept("OR"):
            node = Logical("or", node, self.conjunction(inner))
        self.depth -= 1
        return node

    def conjunction(self, inner: bool) -> Filter:
        node = self.unary(inner)
        while self.accept("AND"):
            node = Logical("and", node, self.unary(inner))
        return node

    def unary(self, inner: bool) -> Filter:
        if self.accept("NOT"):  # RFC 7644 writes `not (...)`; a bare `not attrExp` is read the same way
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise InvalidFilter(f"filter nested deeper than {MAX_DEPTH}")
            return Not(self.unary(inner))
        if self.accept("LPAREN"):
            node = self.filter(inner)
            self.expect("RPAREN")
            return node
        path = self.attr_path()
        if self.accept("LBRACKET"):
            if inner:
                raise InvalidFilter("a value filter cannot contain another value filter")
            return self.value_path(path)
        return self.attr_exp(path)

    def value_path(self, path: AttrPath) -> Filter:
        if path.sub_attr is not None:
            raise InvalidFilter(f"{path} is a sub-attribute; a value filter needs a multi-valued attribute")
        inner = self.filter(inner=True)
        self.expect("RBRACKET")
        sub = self.accept("SUBATTR")
        if sub is not None:  # `emails[type eq "work"].value co "@x"`: one value matching both
            inner = Logical("and", inner, self.attr_exp(AttrPath(None, sub.value)))
        return ValuePath(path, inner)

    def attr_exp(self, path: AttrPath) -> Compare:
        op = self.expect(*_OPERATORS)
        if op.type == "PR":
            return Compare(path, "pr")
        return Compare(path, op.type.lower(), self.comp_value())

    def comp_value(self) -> Any:
        token = self.accept("COMP_VALUE", "NUMBER", "TRUE", "FALSE", "NULL", "ATTRNAME") or self.expect("value")
        if token.type == "COMP_VALUE":
            return token.value
        if token.type == "NUMBER":
            number = float(token.value) if any(c in token.value for c in ".eE") else int(token.value)
            return number
        word = token.value.lower()  # `True`/`FALSE` as sent by some clients: JSON spells them lowercase
        if word in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[word]
        raise InvalidFilter(f"expected a value (string, number, true, false, null), found {token.value!r}")

    def attr_path(self) -> AttrPath:
        uri = self.accept("SCHEMA_URI")
        name = self.accept("ATTRNAME")
        if name is None:
            # An operator word or literal used as a name (`pr eq 1`, `null eq 1`) is not an attribute.
            found = self.peek()
            where = "end of filter" if found is None else f"{found.value!r} at position {found.index}"
            raise InvalidFilter(f"expected an attribute name, found {where}")
        sub = self.accept("SUBATTR")
        return AttrPath(uri.value if uri else None, name.value, sub.value if sub else None)


def parse_filter(text: str) -> Filter:
    """Parse a SCIM filter; raise InvalidFilter when it is malformed."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidFilter("empty filter")
    parser = _Parser(text)
    node = parser.filter()
    parser.done()
    return node


def parse_path(text: str) -> PatchPath:
    """Parse a PATCH path (RFC 7644 section 3.5.2: `attrPath / valuePath [subAttr]`).

    Raises InvalidFilter; the PATCH code turns it into invalidPath.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidFilter("empty path")
    parser = _Parser(text)
    attr = parser.attr_path()
    if not parser.accept("LBRACKET"):
        parser.done()
        return PatchPath(AttrPath(attr.uri, attr.name), None, attr.sub_attr)
    if attr.sub_attr is not None:
        raise InvalidFilter(f"{attr} is a sub-attribute; a value filter needs a multi-valued attribute")
    inner = parser.filter(inner=True)
    parser.expect("RBRACKET")
    sub = parser.accept("SUBATTR")
    parser.done()
    return PatchPath(attr, inner, sub.value if sub else None)


def parse_datetime(value: Any) -> dt.datetime:
    """Parse an RFC 7643 dateTime (xsd:dateTime) as aware UTC; naive values are taken as UTC."""
    if not isinstance(value, str):
        raise InvalidFilter(f"expected a dateTime string, got {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise InvalidFilter(f"invalid dateTime {value!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
