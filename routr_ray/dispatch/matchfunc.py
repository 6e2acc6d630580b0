"""Restricted evaluator for Routr ``matchFunc`` strings.

Routr evaluates ``matchFunc`` with JavaScript ``eval`` at startup; we never execute configuration as code.
Instead a small tokenizer and recursive-descent parser turn the source into an AST, and the AST is
type-checked against the protobuf descriptor of ``MessageRequest`` and compiled into Python closures, once,
at load time. Every field access is resolved at load time, so an expression can only read fields of the
request (``constructor``, ``__proto__`` and friends are unknown fields and rejected), and only the few
whitelisted methods can be called. Evaluation reads the protobuf message lazily (no JSON copy).

Values follow what Routr's JS sees (proto-loader ``keepCase:false, enums:String, longs:String,
defaults:true, oneofs:true``, reference/routr.md §2): camelCase names, enums as their names, unset message
fields are ``null``, an unset oneof member is ``undefined``, the oneof itself is a virtual string field
(``req.message.messageType`` is ``"requestUri"`` or ``"responseType"``).

The accepted language is documented in docs/matchfunc.md.
"""

from __future__ import annotations

import math
import re
import re._parser as sre_parse  # stdlib regex parser: used to reject catastrophic-backtracking patterns
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

# Bounds on what one matchFunc may cost (load time and run time).
MAX_SOURCE_CHARS = 2000
MAX_NODES = 200
MAX_DEPTH = 32
MAX_LAMBDA_NESTING = 2
MAX_REGEX_CHARS = 200
MAX_REGEX_INPUT_CHARS = 256
MAX_REGEX_COST = float(MAX_REGEX_INPUT_CHARS**2)
# Run-time work of one evaluation (issue 14): a message of up to 64 KiB can carry ~13,000 header lines, so an
# expression iterating a list inside an iteration (``extensions.some(a => extensions.some(b => ...))``) would run
# 10^8 steps. Every list walk is charged before it starts: its length times the AST nodes of the arrow function's
# body (or 1 per element for ``includes``), and every regex test is charged 1 + half its input length. Over the
# budget, the evaluation stops with MatchFuncRuntimeError (the processor does not match). 100,000 steps take
# about 20-50 ms on a 2-core box; an ordinary message (dozens of headers) spends a few hundred.
MAX_EVAL_STEPS = 100_000

Env = tuple[Any, ...]
Compiled = Callable[[Env], Any]


class MatchFuncError(ValueError):
    """A matchFunc that cannot be accepted: a configuration error raised at load time."""

    def __init__(self, ref: str, source: str, detail: str, position: int | None = None) -> None:
        self.ref = ref
        self.source = source
        self.detail = detail
        self.position = position
        where = f" at column {position + 1}" if position is not None else ""
        super().__init__(f"processor {ref!r}: invalid matchFunc{where}: {detail} (in {source!r})")


class MatchFuncRuntimeError(Exception):
    """What JavaScript would throw as a TypeError, e.g. reading a field of ``null``; also an evaluation that
    goes over its work budget (:data:`MAX_EVAL_STEPS`)."""


class _Budget(threading.local):
    """Steps left to the evaluation running on this thread (set by :meth:`MatchFunc.evaluate`)."""

    left: int = MAX_EVAL_STEPS


_budget = _Budget()


def _spend(steps: int) -> None:
    left = _budget.left - steps
    if left < 0:
        _budget.left = 0
        raise MatchFuncRuntimeError(f"too much work for one message (over {MAX_EVAL_STEPS} steps)")
    _budget.left = left


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


class _Shorted(Exception):
    """Raised by ``?.`` on a nullish receiver; caught where the optional chain ends."""


# --------------------------------------------------------------------------------------------------------
# JavaScript value semantics (the subset reachable from a MessageRequest and literals)


def js_type(v: Any) -> str:
    if v is None:
        return "null"
    if v is UNDEFINED:
        return "undefined"
    t = type(v)
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    return "object"


def js_truthy(v: Any) -> bool:
    if v is True:
        return True
    if v is False or v is None or v is UNDEFINED:
        return False
    t = type(v)
    if t is str:
        return v != ""
    if t is int:
        return v != 0
    if t is float:
        return v != 0 and not math.isnan(v)
    return True  # objects and arrays, even empty ones


_JS_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\Z")


def js_to_number(v: Any) -> float | int:
    t = js_type(v)
    if t == "number":
        return v
    if t == "boolean":
        return 1 if v else 0
    if t == "null":
        return 0
    if t == "string":
        s = v.strip()
        if s == "":
            return 0
        if _JS_NUMBER.match(s):
            return float(s)
        if s.lower().startswith("0x"):
            try:
                return int(s[2:], 16)
            except ValueError:
                return math.nan
        if s in ("Infinity", "+Infinity"):
            return math.inf
        if s == "-Infinity":
            return -math.inf
    return math.nan


def js_to_string(v: Any) -> str:
    t = js_type(v)
    if t == "string":
        return v
    if t == "boolean":
        return "true" if v else "false"
    if t in ("null", "undefined"):
        return t
    if t == "number":
        if isinstance(v, float):
            if math.isnan(v):
                return "NaN"
            if math.isinf(v):
                return "Infinity" if v > 0 else "-Infinity"
            if v.is_integer():
                return str(int(v))
        return str(v)
    if isinstance(v, (list, tuple)) or _is_repeated(v):
        return ",".join("" if x is None or x is UNDEFINED else js_to_string(x) for x in v)
    return "[object Object]"


def _is_repeated(v: Any) -> bool:
    return hasattr(v, "__len__") and hasattr(v, "__getitem__") and not hasattr(v, "DESCRIPTOR")


def js_strict_eq(a: Any, b: Any) -> bool:
    ta = js_type(a)
    if ta != js_type(b):
        return False
    if ta in ("number", "string", "boolean"):
        return bool(a == b)
    return a is b


def js_loose_eq(a: Any, b: Any) -> bool:
    ta, tb = js_type(a), js_type(b)
    if ta == tb:
        return js_strict_eq(a, b)
    nullish = ("null", "undefined")
    if ta in nullish or tb in nullish:
        return ta in nullish and tb in nullish
    if ta == "boolean" or tb == "boolean" or {ta, tb} == {"number", "string"}:
        if "object" in (ta, tb):
            return False
        return bool(js_to_number(a) == js_to_number(b))
    return False  # object vs primitive: ToPrimitive is not supported


def _js_compare(a: Any, b: Any, op: Callable[[Any, Any], bool]) -> bool:
    if type(a) is str and type(b) is str:
        return op(a, b)
    x, y = js_to_number(a), js_to_number(b)
    if math.isnan(x) or math.isnan(y):
        return False
    return op(x, y)


# --------------------------------------------------------------------------------------------------------
# Tokenizer


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # name | num | str | regex | op | eof
    value: Any
    pos: int
    flags: str = ""


_OPERATORS = ("===", "!==", "=>", "==", "!=", "<=", ">=", "&&", "||", "??", "?.",
              "<", ">", "!", "(", ")", "[", "]", "{", "}", ".", ",", ";", "?", ":", "-", "=")
_FORBIDDEN_CHARS = {"+": "arithmetic", "*": "arithmetic", "%": "arithmetic", "&": "bitwise operators",
                    "|": "bitwise operators", "^": "bitwise operators", "~": "bitwise operators",
                    "@": "decorators", "#": "private fields", "\\": "escapes outside strings"}
_NAME_START = re.compile(r"[A-Za-z_$]")
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


class _Fail(Exception):
    def __init__(self, detail: str, pos: int | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pos = pos


def tokenize(src: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        if src.startswith("//", i) or src.startswith("/*", i):
            raise _Fail("comments are not supported", i)
        if _NAME_START.match(c):
            m = _NAME.match(src, i)
            assert m
            tokens.append(Token("name", m.group(), i))
            i = m.end()
            continue
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = _NUMBER.match(src, i)
            assert m
            text = m.group()
            value: float | int = int(text, 16) if text[:2].lower() == "0x" else float(text)
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                value = int(value)
            tokens.append(Token("num", value, i))
            i = m.end()
            if i < n and _NAME_START.match(src[i]):
                raise _Fail("malformed number", i)
            continue
        if c in "'\"`":
            text, end = _scan_string(src, i)
            tokens.append(Token("str", text, i))
            i = end
            continue
        if c == "/" and _regex_allowed(tokens):
            pattern, flags, end = _scan_regex(src, i)
            tokens.append(Token("regex", pattern, i, flags))
            i = end
            continue
        for op in _OPERATORS:
            if src.startswith(op, i):
                tokens.append(Token("op", op, i))
                i += len(op)
                break
        else:
            what = _FORBIDDEN_CHARS.get(c)
            if c == "/":
                what = "division"
            raise _Fail(f"{what} ({c!r}) is not supported" if what else f"unexpected character {c!r}", i)
    tokens.append(Token("eof", None, n))
    return tokens


def _regex_allowed(tokens: list[Token]) -> bool:
    if not tokens:
        return True
    last = tokens[-1]
    if last.kind == "op":
        return last.value not in (")", "]", "}")
    return last.kind == "name" and last.value == "return"


def _scan_string(src: str, start: int) -> tuple[str, int]:
    quote = src[start]
    out: list[str] = []
    i = start + 1
    while i < len(src):
        c = src[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\n" and quote != "`":
            break
        if quote == "`" and src.startswith("${", i):
            raise _Fail("template literals with ${...} expressions are not supported", i)
        if c == "\\":
            if i + 1 >= len(src):
                break
            e = src[i + 1]
            if e in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[e])
                i += 2
            elif e in "xu":
                width = 2 if e == "x" else 4
                digits = src[i + 2:i + 2 + width]
                if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise _Fail("bad escape sequence in string", i)
                out.append(chr(int(digits, 16)))
                i += 2 + width
            else:
                out.append(e)
                i += 2
            continue
        out.append(c)
        i += 1
    raise _Fail("unterminated string", start)


def _scan_regex(src: str, start: int) -> tuple[str, str, int]:
    i = start + 1
    in_class = False
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "\n":
            break
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            pattern = src[start + 1:i]
            m = re.compile(r"[A-Za-z]*").match(src, i + 1)
            assert m
            return pattern, m.group(), m.end()
        i += 1
    raise _Fail("unterminated regular expression", start)


# --------------------------------------------------------------------------------------------------------
# AST


@dataclass(slots=True)
class Node:
    pos: int


@dataclass(slots=True)
class Lit(Node):
    value: Any


@dataclass(slots=True)
class RegexLit(Node):
    pattern: str
    flags: str


@dataclass(slots=True)
class Name(Node):
    name: str


@dataclass(slots=True)
class Member(Node):
    obj: Node
    name: str
    optional: bool


@dataclass(slots=True)
class Index(Node):
    obj: Node
    key: Node
    optional: bool


@dataclass(slots=True)
class Call(Node):
    obj: Node
    method: str
    args: list[Node]
    optional: bool


@dataclass(slots=True)
class Lambda(Node):
    param: str
    body: Node


@dataclass(slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(slots=True)
class Cond(Node):
    test: Node
    then: Node
    other: Node


@dataclass(slots=True)
class Chain(Node):
    """The end of a postfix chain containing ``?.``: a nullish short-circuit yields ``undefined`` here."""

    inner: Node


_JS_FORBIDDEN_WORDS = {
    "new": "'new' is not supported", "this": "'this' is not supported",
    "typeof": "'typeof' is not supported", "delete": "'delete' is not supported",
    "void": "'void' is not supported", "instanceof": "'instanceof' is not supported",
    "in": "the 'in' operator is not supported", "function": "nested functions are not supported",
    "while": "statements are not supported", "for": "statements are not supported",
    "if": "statements are not supported", "return": "'return' is only allowed as the whole function body",
    "var": "statements are not supported", "let": "statements are not supported",
    "const": "statements are not supported", "async": "async functions are not supported",
    "await": "'await' is not supported", "yield": "'yield' is not supported",
    "class": "classes are not supported", "import": "'import' is not supported",
}
_PY_OPERATORS = {"and": "&&", "or": "||"}
_PY_COMPARE = {"==": "===", "!=": "!==", "<": "<", ">": ">", "<=": "<=", ">=": ">="}


class _Parser:
    def __init__(self, tokens: list[Token], dialect: str) -> None:
        self.toks = tokens
        self.i = 0
        self.dialect = dialect
        self.depth = 0
        self.nodes = 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def at(self, kind: str, value: Any = None) -> bool:
        t = self.tok
        return t.kind == kind and (value is None or t.value == value)

    def at_op(self, value: str) -> bool:
        return self.at("op", value)

    def expect_op(self, value: str, what: str) -> Token:
        if not self.at_op(value):
            raise _Fail(f"expected {what}, found {_describe(self.tok)}", self.tok.pos)
        return self.advance()

    def node(self, n: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Fail(f"expression too large (more than {MAX_NODES} nodes)", n.pos)
        return n

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)", self.tok.pos)

    def leave(self) -> None:
        self.depth -= 1

    # -- top level
    def parse_js_function(self) -> tuple[str | None, Node]:
        """``p => body``, ``(p) => body``, ``() => body``, ``function [name](p) { return e; }``."""
        if self.at("name", "function"):
            self.advance()
            if self.at("name"):
                self.advance()
            self.expect_op("(", "'(' after 'function'")
            param = self.parse_params()
            self.expect_op("{", "'{' to open the function body")
            body = self.parse_return_block()
        else:
            if self.at("name"):
                param = self.advance().value
            else:
                self.expect_op("(", "a parameter list")
                param = self.parse_params()
            self.expect_op("=>", "'=>'")
            if self.at_op("{"):
                self.advance()
                body = self.parse_return_block()
            else:
                body = self.parse_expr()
        if self.at_op(";"):
            self.advance()
        self.expect_eof()
        return param, body

    def parse_params(self) -> str | None:
        param = None
        if self.at("name"):
            param = self.advance().value
        if self.at_op(","):
            raise _Fail("a matchFunc takes exactly one parameter (the request)", self.tok.pos)
        self.expect_op(")", "')' closing the parameter list")
        if param is not None:
            self.check_binding(param)
        return param

    def check_binding(self, name: str) -> None:
        if name in _JS_FORBIDDEN_WORDS or name in ("true", "false", "null", "undefined"):
            raise _Fail(f"{name!r} cannot be a parameter name", self.toks[self.i - 1].pos)

    def parse_return_block(self) -> Node:
        if not self.at("name", "return"):
            raise _Fail("a function body must be a single 'return <expression>' statement", self.tok.pos)
        self.advance()
        body = self.parse_expr()
        if self.at_op(";"):
            self.advance()
        self.expect_op("}", "'}' closing the function body (only a single return statement is allowed)")
        return body

    def expect_eof(self) -> None:
        if not self.at("eof"):
            raise _Fail(f"unexpected {_describe(self.tok)}", self.tok.pos)

    # -- expressions (JavaScript precedence)
    def parse_expr(self) -> Node:
        self.enter()
        try:
            if self.dialect == "python":
                return self.parse_py_or()
            return self.parse_conditional()
        finally:
            self.leave()

    def parse_conditional(self) -> Node:
        test = self.parse_or()
        if self.at_op("?"):
            pos = self.advance().pos
            then = self.parse_expr()
            self.expect_op(":", "':' in a conditional expression")
            other = self.parse_expr()
            return self.node(Cond(pos, test, then, other))
        if self.at_op("="):
            raise _Fail("assignment is not allowed", self.tok.pos)
        return test

    def parse_or(self) -> Node:
        left = self.parse_and()
        while self.at_op("||") or self.at_op("??"):
            t = self.advance()
            left = self.node(Binary(t.pos, t.value, left, self.parse_and()))
        return left

    def parse_and(self) -> Node:
        left = self.parse_equality()
        while self.at_op("&&"):
            t = self.advance()
            left = self.node(Binary(t.pos, "&&", left, self.parse_equality()))
        return left

    def parse_equality(self) -> Node:
        left = self.parse_relational()
        while self.tok.kind == "op" and self.tok.value in ("===", "!==", "==", "!="):
            t = self.advance()
            left = self.node(Binary(t.pos, t.value, left, self.parse_relational()))
        return left

    def parse_relational(self) -> Node:
        left = self.parse_unary()
        while self.tok.kind == "op" and self.tok.value in ("<", ">", "<=", ">="):
            t = self.advance()
            left = self.node(Binary(t.pos, t.value, left, self.parse_unary()))
        return left

    def parse_unary(self) -> Node:
        if self.at_op("!") or self.at_op("-"):
            t = self.advance()
            self.enter()
            try:
                return self.node(Unary(t.pos, t.value, self.parse_unary()))
            finally:
                self.leave()
        return self.parse_postfix()

    # -- Python-style expressions
    def parse_py_or(self) -> Node:
        left = self.parse_py_and()
        while self.at("name", "or"):
            t = self.advance()
            left = self.node(Binary(t.pos, "||", left, self.parse_py_and()))
        return left

    def parse_py_and(self) -> Node:
        left = self.parse_py_not()
        while self.at("name", "and"):
            t = self.advance()
            left = self.node(Binary(t.pos, "&&", left, self.parse_py_not()))
        return left

    def parse_py_not(self) -> Node:
        if self.at("name", "not"):
            t = self.advance()
            self.enter()
            try:
                return self.node(Unary(t.pos, "!", self.parse_py_not()))
            finally:
                self.leave()
        return self.parse_py_comparison()

    def parse_py_comparison(self) -> Node:
        left = self.parse_unary()
        op = self.py_compare_op()
        if op is None:
            if self.at_op("="):
                raise _Fail("assignment is not allowed", self.tok.pos)
            return left
        pos, name = op
        right = self.parse_unary()
        if self.py_compare_op(consume=False) is not None:
            raise _Fail("chained comparisons are not supported", self.tok.pos)
        if name in ("in", "not in"):
            node = self.node(Binary(pos, "in", left, right))
            return self.node(Unary(pos, "!", node)) if name == "not in" else node
        return self.node(Binary(pos, _PY_COMPARE[name], left, right))

    def py_compare_op(self, consume: bool = True) -> tuple[int, str] | None:
        t = self.tok
        if t.kind == "op" and t.value in _PY_COMPARE:
            if consume:
                self.advance()
            return t.pos, t.value
        if t.kind == "op" and t.value in ("===", "!=="):
            raise _Fail(f"{t.value!r} is JavaScript; use '==' / '!=' in a Python-style expression", t.pos)
        if t.kind == "name" and t.value == "in":
            if consume:
                self.advance()
            return t.pos, "in"
        if t.kind == "name" and t.value == "not" and self.peek().kind == "name" and self.peek().value == "in":
            if consume:
                self.advance()
                self.advance()
            return t.pos, "not in"
        return None

    # -- postfix chains and primaries
    def parse_postfix(self) -> Node:
        self.enter()
        try:
            expr = self.parse_primary()
            has_optional = False
            while True:
                t = self.tok
                if t.kind != "op":
                    break
                if t.value in (".", "?."):
                    optional = t.value == "?."
                    if optional and self.dialect == "python":
                        raise _Fail("'?.' is not supported in a Python-style expression", t.pos)
                    self.advance()
                    if optional and self.at_op("["):
                        self.advance()
                        key = self.parse_expr()
                        self.expect_op("]", "']'")
                        expr = self.node(Index(t.pos, expr, key, True))
                        has_optional = True
                        continue
                    if optional and self.at_op("("):
                        raise _Fail("optional calls '?.()' are not supported", self.tok.pos)
                    if not self.at("name"):
                        raise _Fail(f"expected a property name, found {_describe(self.tok)}", self.tok.pos)
                    name_tok = self.advance()
                    has_optional = has_optional or optional
                    if self.at_op("("):
                        self.advance()
                        args = self.parse_args()
                        expr = self.node(Call(name_tok.pos, expr, name_tok.value, args, optional))
                    else:
                        expr = self.node(Member(name_tok.pos, expr, name_tok.value, optional))
                elif t.value == "[":
                    self.advance()
                    key = self.parse_expr()
                    self.expect_op("]", "']'")
                    expr = self.node(Index(t.pos, expr, key, False))
                elif t.value == "(":
                    raise _Fail("only the whitelisted methods may be called", t.pos)
                else:
                    break
            return self.node(Chain(expr.pos, expr)) if has_optional else expr
        finally:
            self.leave()

    def parse_args(self) -> list[Node]:
        args: list[Node] = []
        while not self.at_op(")"):
            if args:
                self.expect_op(",", "',' between arguments")
            if self.is_lambda_start():
                args.append(self.parse_lambda())
            else:
                args.append(self.parse_expr())
        self.advance()
        return args

    def is_lambda_start(self) -> bool:
        if self.dialect == "python":
            return False
        t = self.tok
        if t.kind == "name" and self.peek().kind == "op" and self.peek().value == "=>":
            return True
        return (t.kind == "op" and t.value == "(" and self.peek().kind == "name"
                and self.peek(2).kind == "op" and self.peek(2).value == ")"
                and self.peek(3).kind == "op" and self.peek(3).value == "=>")

    def parse_lambda(self) -> Node:
        pos = self.tok.pos
        if self.at_op("("):
            self.advance()
            param = self.advance().value
            self.advance()
        else:
            param = self.advance().value
        self.check_binding(param)
        self.expect_op("=>", "'=>'")
        if self.at_op("{"):
            self.advance()
            body = self.parse_return_block()
        else:
            body = self.parse_expr()
        return self.node(Lambda(pos, param, body))

    def parse_primary(self) -> Node:
        t = self.tok
        if t.kind == "num":
            self.advance()
            return self.node(Lit(t.pos, t.value))
        if t.kind == "str":
            self.advance()
            return self.node(Lit(t.pos, t.value))
        if t.kind == "regex":
            if self.dialect == "python":
                raise _Fail("regular expression literals are JavaScript only", t.pos)
            self.advance()
            return self.node(RegexLit(t.pos, t.value, t.flags))
        if t.kind == "op" and t.value == "(":
            self.advance()
            inner = self.parse_expr()
            self.expect_op(")", "')'")
            return inner
        if t.kind == "name":
            return self.parse_name()
        if t.kind == "op" and t.value == "{":
            raise _Fail("object literals and blocks are not supported", t.pos)
        if t.kind == "op" and t.value == "[":
            raise _Fail("array literals are not supported", t.pos)
        raise _Fail(f"unexpected {_describe(t)}", t.pos)

    def parse_name(self) -> Node:
        t = self.advance()
        word = t.value
        if self.dialect == "python":
            consts = {"True": True, "False": False, "None": None}
            if word in consts:
                return self.node(Lit(t.pos, consts[word]))
            if word == "len" and self.at_op("("):
                self.advance()
                arg = self.parse_expr()
                self.expect_op(")", "')' closing len(...)")
                return self.node(Member(t.pos, arg, "length", False))
            if word in ("lambda", "import", "exec", "eval", "yield", "await", "is", "if", "else", "for"):
                raise _Fail(f"{word!r} is not supported", t.pos)
        else:
            consts = {"true": True, "false": False, "null": None, "undefined": UNDEFINED}
            if word in consts:
                return self.node(Lit(t.pos, consts[word]))
            if word in _JS_FORBIDDEN_WORDS:
                raise _Fail(_JS_FORBIDDEN_WORDS[word], t.pos)
        if self.at_op("("):
            raise _Fail(f"calling {word!r} is not allowed (only the whitelisted methods may be called)",
                        t.pos)
        if self.at_op("=>"):
            raise _Fail("a nested arrow function is only allowed as an argument of find/some/every/filter",
                        t.pos)
        return self.node(Name(t.pos, word))


def _describe(t: Token) -> str:
    if t.kind == "eof":
        return "end of input"
    if t.kind == "str":
        return f"string {t.value!r}"
    if t.kind == "regex":
        return "regular expression"
    return repr(str(t.value))


# --------------------------------------------------------------------------------------------------------
# Static types and field accessors


@dataclass(frozen=True, slots=True)
class Ty:
    kind: str  # string number boolean null undefined any regex message array map
    desc: Descriptor | None = field(default=None, compare=False)
    elem: Ty | None = None
    full_name: str = ""  # message type name, for equality and messages


STRING = Ty("string")
NUMBER = Ty("number")
BOOL = Ty("boolean")
NULL = Ty("null")
UNDEF = Ty("undefined")
ANY = Ty("any")
REGEX = Ty("regex")


def _msg_ty(desc: Descriptor) -> Ty:
    return Ty("message", desc, None, desc.full_name)


@dataclass(frozen=True, slots=True)
class _FieldAccess:
    getter: Callable[[Any], Any]
    ty: Ty


def camel_case(name: str) -> str:
    """protobufjs ``util.camelCase``: ``edge_port_ref`` -> ``edgePortRef``."""
    return name[:1] + re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name[1:])


_INT64_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}
_FIELD_CACHE: dict[tuple[str, str], dict[str, _FieldAccess]] = {}


def _scalar_ty(fd: FieldDescriptor) -> tuple[Ty, Callable[[Any], Any] | None]:
    """The JS type of one (non-repeated) value of this field and a converter (None = identity)."""
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return _msg_ty(fd.message_type), None
    if fd.type == FieldDescriptor.TYPE_ENUM:
        names = {v.number: v.name for v in fd.enum_type.values}
        return STRING, lambda v: names.get(v, v)
    if fd.type == FieldDescriptor.TYPE_STRING:
        return STRING, None
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return BOOL, None
    if fd.type in _INT64_TYPES:
        return STRING, str  # proto-loader longs:String
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return ANY, None
    return NUMBER, None


def _field_table(desc: Descriptor, dialect: str) -> dict[str, _FieldAccess]:
    key = (desc.full_name, dialect)
    table = _FIELD_CACHE.get(key)
    if table is not None:
        return table
    table = {}
    for fd in desc.fields:
        access = _field_access(fd)
        if access is None:
            continue
        table[camel_case(fd.name)] = access
        if dialect == "python":
            table[fd.name] = access
    for oneof in desc.oneofs:
        if len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name:
            continue  # synthetic oneof of a proto3 `optional` field
        members = {f.name: camel_case(f.name) for f in oneof.fields}
        oname = oneof.name

        def which(m: Any, _o: str = oname, _members: dict[str, str] = members) -> Any:
            return _members.get(m.WhichOneof(_o), UNDEFINED)  # type: ignore[arg-type]

        table.setdefault(camel_case(oname), _FieldAccess(which, STRING))
        if dialect == "python":
            table.setdefault(oname, _FieldAccess(which, STRING))
    _FIELD_CACHE[key] = table
    return table


def _field_access(fd: FieldDescriptor) -> _FieldAccess | None:
    name = fd.name
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return None  # not reachable from a matchFunc (proto-loader gives a Buffer)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        vty, vconv = _scalar_ty(value_fd)

        def get_map(m: Any) -> Any:
            return getattr(m, name)

        # Maps whose values need converting (enum, int64) do not occur in the Routr protos.
        return _FieldAccess(get_map, Ty("map", None, vty if vconv is None else Ty("unsupported"), ""))
    ty, conv = _scalar_ty(fd)
    if fd.is_repeated:
        if conv is None:
            def get_list(m: Any) -> Any:
                return getattr(m, name)
        else:
            def get_list(m: Any, _c: Callable[[Any], Any] = conv) -> Any:
                return [_c(v) for v in getattr(m, name)]
        return _FieldAccess(get_list, Ty("array", None, ty, ""))
    oneof = fd.containing_oneof
    if oneof is not None and len(oneof.fields) == 1 and oneof.name == "_" + name:
        # proto3 `optional`: protobufjs gives no default for it, so unset reads as undefined
        def get_optional(m: Any, _c: Callable[[Any], Any] | None = conv) -> Any:
            if not m.HasField(name):
                return UNDEFINED
            v = getattr(m, name)
            return v if _c is None else _c(v)
        return _FieldAccess(get_optional, ty)
    if oneof is not None:
        oname = oneof.name
        if conv is None:
            def get_member(m: Any) -> Any:
                return getattr(m, name) if m.WhichOneof(oname) == name else UNDEFINED
        else:
            def get_member(m: Any, _c: Callable[[Any], Any] = conv) -> Any:
                return _c(getattr(m, name)) if m.WhichOneof(oname) == name else UNDEFINED
        return _FieldAccess(get_member, ty)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        def get_message(m: Any) -> Any:
            return getattr(m, name) if m.HasField(name) else None  # defaults:true gives null
        return _FieldAccess(get_message, ty)
    if conv is None:
        def get_scalar(m: Any) -> Any:
            return getattr(m, name)
    else:
        def get_scalar(m: Any, _c: Callable[[Any], Any] = conv) -> Any:
            return _c(getattr(m, name))
    return _FieldAccess(get_scalar, ty)


# --------------------------------------------------------------------------------------------------------
# Regular expressions


_REPEAT_OPS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)}


def compile_regex(pattern: str, flags: str) -> re.Pattern[str]:
    """Compile a JS regex literal, rejecting what could backtrack badly.

    Python's ``re`` has no timeout, so the cost of ``search`` is bounded statically. Rejected:
    back-references; a variable-length repetition whose body contains a variable-length repetition or
    an alternation (``(a+)+``, ``(a|aa)*``: exponential); and patterns whose estimated worst case
    (product of the repetition ranges, times the input length when not anchored with ``^`` because
    ``search`` tries every start) exceeds MAX_REGEX_COST, with the input capped at MAX_REGEX_INPUT_CHARS.
    In practice: two unbounded repetitions when anchored, one when not.
    """
    if len(pattern) > MAX_REGEX_CHARS:
        raise _Fail(f"regular expression longer than {MAX_REGEX_CHARS} characters", None)
    py_flags = 0
    for f in flags:
        if f == "i":
            py_flags |= re.IGNORECASE
        elif f == "m":
            py_flags |= re.MULTILINE
        elif f == "s":
            py_flags |= re.DOTALL
        elif f in "gu":
            pass  # g: test() is stateless here; u: Python patterns are Unicode already
        else:
            raise _Fail(f"regular expression flag {f!r} is not supported", None)
    if "u" not in flags:
        py_flags |= re.ASCII  # JS \d, \w, \s without the u flag are ASCII classes
    try:
        parsed = list(sre_parse.parse(pattern, py_flags))
        compiled = re.compile(pattern, py_flags)
    except re.error as exc:
        raise _Fail(f"invalid regular expression: {exc}", None) from None
    cost = _cost(parsed, inside_repeat=False)
    anchored = bool(parsed) and parsed[0] == (sre_parse.AT, sre_parse.AT_BEGINNING) and "m" not in flags
    if not anchored:
        cost *= MAX_REGEX_INPUT_CHARS
    if cost > MAX_REGEX_COST:
        hint = "" if anchored else "; anchoring it with ^ divides the cost by the input length"
        raise _Fail(f"regular expression too costly to search: too many repetitions{hint}", None)
    return compiled


def _cost(items: Sequence[Any], inside_repeat: bool) -> float:
    """Worst-case backtracking steps of a pattern over an input of MAX_REGEX_INPUT_CHARS (an overestimate).

    Raises _Fail on the exponential constructs (see compile_regex).
    """
    total = 1.0
    for op, av in items:
        if op in (sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS):
            raise _Fail("back-references are not supported in regular expressions", None)
        if op in _REPEAT_OPS:
            lo, hi, body = av
            variable = hi != lo
            if variable and inside_repeat:
                raise _Fail("nested repetition in a regular expression (catastrophic backtracking)", None)
            inner = _cost(list(body), inside_repeat or (variable and hi > 1))
            span = min(hi, MAX_REGEX_INPUT_CHARS)
            total *= inner ** min(span, 64) * (max(span - lo, 1) if variable else 1)
        elif op == sre_parse.BRANCH:
            if inside_repeat:
                raise _Fail("alternation inside a repetition in a regular expression "
                            "(catastrophic backtracking)", None)
            total *= sum(_cost(list(branch), inside_repeat) for branch in av[1])
        elif op == sre_parse.SUBPATTERN:
            total *= _cost(list(av[-1]), inside_repeat)
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            total *= _cost(list(av[1]), inside_repeat)
        elif op == getattr(sre_parse, "ATOMIC_GROUP", None):
            total *= _cost(list(av), inside_repeat)
    return total


# --------------------------------------------------------------------------------------------------------
# Compiler: AST + static types -> closures


_STRING_METHODS = {"startsWith", "endsWith", "includes", "toLowerCase", "toUpperCase", "trim", "indexOf"}
_PY_METHOD_ALIASES = {"startswith": "startsWith", "endswith": "endsWith", "lower": "toLowerCase",
                      "upper": "toUpperCase", "strip": "trim"}
_ARRAY_LAMBDA_METHODS = {"find", "some", "every", "filter"}


def _const(v: Any) -> Compiled:
    return lambda env: v


class _Compiler:
    def __init__(self, root: Descriptor, dialect: str, param: str | None) -> None:
        self.root = root
        self.dialect = dialect
        self.scope: list[tuple[str, Ty]] = []
        if param is not None:
            self.scope.append((param, _msg_ty(root)))
        self.root_param = param
        self.nodes = 0  # nodes compiled so far: the cost of one evaluation of a subtree, for the run-time budget

    def compile(self, n: Node) -> tuple[Compiled, Ty]:
        self.nodes += 1
        method = getattr(self, "c_" + type(n).__name__)
        return method(n)

    # -- leaves
    def c_Lit(self, n: Lit) -> tuple[Compiled, Ty]:
        v = n.value
        return _const(v), Ty(js_type(v)) if js_type(v) != "object" else ANY

    def c_RegexLit(self, n: RegexLit) -> tuple[Compiled, Ty]:
        raise _Fail("a regular expression literal may only be used as /.../.test(value)", n.pos)

    def c_Name(self, n: Name) -> tuple[Compiled, Ty]:
        for idx in range(len(self.scope) - 1, -1, -1):
            name, ty = self.scope[idx]
            if name == n.name:
                return (lambda env, _i=idx: env[_i]), ty
        if self.dialect == "python":
            table = _field_table(self.root, "python")
            if n.name == "req":
                return (lambda env: env[0]), _msg_ty(self.root)
            if n.name in table:
                getter = table[n.name].getter
                return (lambda env: getter(env[0])), table[n.name].ty
            raise _Fail(f"unknown name {n.name!r} (use 'req' or a field of the request)", n.pos)
        hint = f" (the request parameter is {self.root_param!r})" if self.root_param else ""
        raise _Fail(f"unknown identifier {n.name!r}{hint}", n.pos)

    def c_Chain(self, n: Chain) -> tuple[Compiled, Ty]:
        inner, ty = self.compile(n.inner)

        def chain(env: Env) -> Any:
            try:
                return inner(env)
            except _Shorted:
                return UNDEFINED

        return chain, ty

    # -- member access
    def c_Member(self, n: Member) -> tuple[Compiled, Ty]:
        obj, oty = self.compile(n.obj)
        get, ty = self.member_getter(oty, n.name, n.pos)
        return self.guarded(obj, get, n.optional, n.name, is_root=self.is_root(n.obj)), ty

    def is_root(self, n: Node) -> bool:
        """True when ``n`` names the request parameter itself (never null, so no guard is needed)."""
        if not isinstance(n, Name) or not self.scope:
            return False
        names = [name for name, _ in self.scope]
        return n.name == names[0] and n.name not in names[1:]

    def member_getter(self, oty: Ty, name: str, pos: int) -> tuple[Callable[[Any], Any], Ty]:
        if name in ("constructor", "prototype", "__proto__") or name.startswith("__"):
            raise _Fail(f"access to {name!r} is forbidden", pos)
        if oty.kind == "message":
            assert oty.desc is not None
            table = _field_table(oty.desc, self.dialect)
            acc = table.get(name)
            if acc is None:
                raise _Fail(f"unknown field {name!r} of {oty.desc.name}{_suggest(name, table)}", pos)
            return acc.getter, acc.ty
        if name == "length" and oty.kind in ("string", "array"):
            return len, NUMBER
        if oty.kind == "map":
            assert oty.elem is not None
            return (lambda m: m[name] if name in m else UNDEFINED), _map_value_ty(oty)
        raise _Fail(f"property {name!r} is not available on a {_ty_name(oty)}", pos)

    def guarded(self, obj: Compiled, get: Callable[[Any], Any], optional: bool, what: str,
                is_root: bool = False) -> Compiled:
        if is_root:
            return lambda env: get(env[0])
        if optional:
            def opt(env: Env) -> Any:
                o = obj(env)
                if o is None or o is UNDEFINED:
                    raise _Shorted
                return get(o)
            return opt

        def strict(env: Env) -> Any:
            o = obj(env)
            if o is None or o is UNDEFINED:
                raise MatchFuncRuntimeError(f"cannot read {what!r} of {js_to_string(o)}")
            return get(o)
        return strict

    def c_Index(self, n: Index) -> tuple[Compiled, Ty]:
        obj, oty = self.compile(n.obj)
        if isinstance(n.key, Lit) and isinstance(n.key.value, str) and oty.kind in ("message", "map"):
            get, ty = self.member_getter(oty, n.key.value, n.key.pos)
            return self.guarded(obj, get, n.optional, n.key.value, self.is_root(n.obj)), ty
        key, kty = self.compile(n.key)
        if oty.kind in ("array", "string"):
            if kty.kind not in ("number", "any"):
                raise _Fail(f"index of a {_ty_name(oty)} must be a number", n.key.pos)
            elem_ty = oty.elem if oty.kind == "array" else STRING
            assert elem_ty is not None

            def index_seq(o: Any, env: Env) -> Any:
                k = key(env)
                if type(k) is float and k.is_integer():
                    k = int(k)
                if type(k) is not int or k < 0 or k >= len(o):
                    return UNDEFINED
                return o[k]

            return self.guarded_env(obj, index_seq, n.optional), elem_ty
        if oty.kind == "map":
            def index_map(o: Any, env: Env) -> Any:
                k = js_to_string(key(env))
                return o[k] if k in o else UNDEFINED
            return self.guarded_env(obj, index_map, n.optional), _map_value_ty(oty)
        raise _Fail(f"cannot index a {_ty_name(oty)} with a computed key", n.pos)

    def guarded_env(self, obj: Compiled, get: Callable[[Any, Env], Any], optional: bool) -> Compiled:
        def run(env: Env) -> Any:
            o = obj(env)
            if o is None or o is UNDEFINED:
                if optional:
                    raise _Shorted
                raise MatchFuncRuntimeError(f"cannot index {js_to_string(o)}")
            return get(o, env)
        return run

    # -- calls
    def c_Call(self, n: Call) -> tuple[Compiled, Ty]:
        method = n.method
        if self.dialect == "python":
            method = _PY_METHOD_ALIASES.get(method, method)
        if isinstance(n.obj, RegexLit):
            return self.regex_test(n)
        obj, oty = self.compile(n.obj)
        if oty.kind == "string" and method in _STRING_METHODS:
            return self.string_method(n, obj, method), (
                STRING if method in ("toLowerCase", "toUpperCase", "trim") else
                NUMBER if method == "indexOf" else BOOL)
        if oty.kind == "array" and method == "includes":
            if len(n.args) != 1:
                raise _Fail("includes() takes one argument", n.pos)
            arg, _ = self.compile(n.args[0])

            def includes(o: Any, env: Env) -> Any:
                _spend(len(o))
                x = arg(env)
                return any(js_strict_eq(v, x) for v in o)

            return self.guarded_env(obj, includes, n.optional), BOOL
        if oty.kind == "array" and method in _ARRAY_LAMBDA_METHODS:
            return self.array_lambda(n, obj, oty, method)
        raise _Fail(f"method {n.method!r} is not allowed on a {_ty_name(oty)}", n.pos)

    def regex_test(self, n: Call) -> tuple[Compiled, Ty]:
        assert isinstance(n.obj, RegexLit)
        if n.method != "test" or len(n.args) != 1:
            raise _Fail("a regular expression only supports .test(value)", n.pos)
        try:
            rx = compile_regex(n.obj.pattern, n.obj.flags)
        except _Fail as exc:
            raise _Fail(exc.detail, n.obj.pos) from None
        arg, aty = self.compile(n.args[0])
        search = rx.search

        if aty.kind == "string":
            def test(env: Env) -> bool:
                s = arg(env)
                if type(s) is not str:
                    s = js_to_string(s)
                if len(s) > MAX_REGEX_INPUT_CHARS:
                    return False
                _spend(1 + (len(s) >> 1))
                return search(s) is not None
        else:
            def test(env: Env) -> bool:
                s = js_to_string(arg(env))
                if len(s) > MAX_REGEX_INPUT_CHARS:
                    return False
                _spend(1 + (len(s) >> 1))
                return search(s) is not None
        return test, BOOL

    def string_method(self, n: Call, obj: Compiled, method: str) -> Compiled:
        nargs = 0 if method in ("toLowerCase", "toUpperCase", "trim") else 1
        if len(n.args) != nargs:
            raise _Fail(f"{n.method}() takes {nargs} argument{'s' if nargs != 1 else ''}", n.pos)
        if nargs == 0:
            fn = {"toLowerCase": str.lower, "toUpperCase": str.upper, "trim": str.strip}[method]
            return self.guarded(obj, fn, n.optional, n.method)
        arg, _ = self.compile(n.args[0])
        if isinstance(n.args[0], Lambda):
            raise _Fail(f"{n.method}() does not take a function", n.args[0].pos)
        op: Callable[[str, str], Any] = {
            "startsWith": str.startswith, "endsWith": str.endswith,
            "includes": lambda s, x: x in s, "indexOf": str.find}[method]

        def call(o: Any, env: Env) -> Any:
            if type(o) is not str:
                raise MatchFuncRuntimeError(f"{n.method} is not a function of {js_to_string(o)}")
            x = arg(env)
            return op(o, x if type(x) is str else js_to_string(x))

        return self.guarded_env(obj, call, n.optional)

    def array_lambda(self, n: Call, obj: Compiled, oty: Ty, method: str) -> tuple[Compiled, Ty]:
        if len(n.args) != 1 or not isinstance(n.args[0], Lambda):
            raise _Fail(f"{method}() takes one arrow function, e.g. {method}(e => e.name === 'X')", n.pos)
        lam = n.args[0]
        if len(self.scope) > MAX_LAMBDA_NESTING:
            raise _Fail("arrow functions nested too deeply", lam.pos)
        assert oty.elem is not None
        self.scope.append((lam.param, oty.elem))
        before = self.nodes
        try:
            body, _ = self.compile(lam.body)
        finally:
            self.scope.pop()
        cost = self.nodes - before  # charged per element, before the walk (MAX_EVAL_STEPS)

        if method == "find":
            def run(o: Any, env: Env) -> Any:
                _spend(len(o) * cost)
                for v in o:
                    if js_truthy(body(env + (v,))):
                        return v
                return UNDEFINED
            ty = oty.elem
        elif method == "some":
            def run(o: Any, env: Env) -> Any:
                _spend(len(o) * cost)
                return any(js_truthy(body(env + (v,))) for v in o)
            ty = BOOL
        elif method == "every":
            def run(o: Any, env: Env) -> Any:
                _spend(len(o) * cost)
                return all(js_truthy(body(env + (v,))) for v in o)
            ty = BOOL
        else:
            def run(o: Any, env: Env) -> Any:
                _spend(len(o) * cost)
                return [v for v in o if js_truthy(body(env + (v,)))]
            ty = oty
        return self.guarded_env(obj, run, n.optional), ty

    def c_Lambda(self, n: Lambda) -> tuple[Compiled, Ty]:
        raise _Fail("an arrow function is only allowed as the argument of find/some/every/filter", n.pos)

    # -- operators
    def c_Unary(self, n: Unary) -> tuple[Compiled, Ty]:
        operand, ty = self.compile(n.operand)
        if n.op == "-":
            if isinstance(n.operand, Lit) and ty.kind == "number":
                v = -n.operand.value
                return _const(v), NUMBER
            return (lambda env: -js_to_number(operand(env))), NUMBER
        if ty.kind == "boolean":
            return (lambda env: not operand(env)), BOOL
        return (lambda env: not js_truthy(operand(env))), BOOL

    def c_Binary(self, n: Binary) -> tuple[Compiled, Ty]:
        left, lty = self.compile(n.left)
        right, rty = self.compile(n.right)
        op = n.op
        if op in ("&&", "||", "??"):
            ty = lty if lty == rty else ANY
            if op == "??":
                def nullish_or(env: Env) -> Any:
                    a = left(env)
                    return right(env) if a is None or a is UNDEFINED else a
                return nullish_or, ty
            if lty.kind == "boolean":  # Python and/or match JS when the left side is a real boolean
                if op == "&&":
                    return (lambda env: left(env) and right(env)), ty
                return (lambda env: left(env) or right(env)), ty
            if op == "&&":
                def js_and(env: Env) -> Any:
                    a = left(env)
                    return right(env) if js_truthy(a) else a
                return js_and, ty

            def js_or(env: Env) -> Any:
                a = left(env)
                return a if js_truthy(a) else right(env)
            return js_or, ty
        if op in ("===", "!=="):
            fast = _fast_equality(n, left, lty, right, rty)
            eq = fast if fast is not None else (lambda env: js_strict_eq(left(env), right(env)))
            if op == "===":
                return eq, BOOL
            return (lambda env: not eq(env)), BOOL
        if op in ("==", "!="):
            if op == "==":
                return (lambda env: js_loose_eq(left(env), right(env))), BOOL
            return (lambda env: not js_loose_eq(left(env), right(env))), BOOL
        if op == "in":  # Python-style membership: x in y
            return self.membership(n, left, right, rty), BOOL
        cmp: Callable[[Any, Any], bool] = {
            "<": lambda a, b: a < b, ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}[op]
        return (lambda env: _js_compare(left(env), right(env), cmp)), BOOL

    def membership(self, n: Binary, left: Compiled, right: Compiled, rty: Ty) -> Compiled:
        if rty.kind == "string":
            def in_string(env: Env) -> bool:
                hay = right(env)
                if type(hay) is not str:
                    raise MatchFuncRuntimeError(f"'in' on {js_to_string(hay)}")
                return js_to_string(left(env)) in hay
            return in_string
        if rty.kind == "array":
            def in_array(env: Env) -> bool:
                x = left(env)
                return any(js_strict_eq(v, x) for v in right(env))
            return in_array
        if rty.kind == "map":
            return lambda env: js_to_string(left(env)) in right(env)
        raise _Fail(f"'in' needs a string, list or map on its right, not a {_ty_name(rty)}", n.pos)

    def c_Cond(self, n: Cond) -> tuple[Compiled, Ty]:
        test, _ = self.compile(n.test)
        then, tty = self.compile(n.then)
        other, oty = self.compile(n.other)
        return (lambda env: then(env) if js_truthy(test(env)) else other(env)), (tty if tty == oty else ANY)


def _fast_equality(n: Binary, left: Compiled, lty: Ty, right: Compiled, rty: Ty) -> Compiled | None:
    """``field === 'LITERAL'`` where the field is statically a string (or number): plain ``==``.

    Safe because such a field yields a str (or an int/float, never a bool) or undefined, and
    ``undefined == 'x'`` is False like in JS.
    """
    for lit_node, other, oty in ((n.right, left, lty), (n.left, right, rty)):
        if isinstance(lit_node, Lit) and type(lit_node.value) in (str, int, float) \
                and js_type(lit_node.value) == oty.kind and oty.kind in ("string", "number"):
            v = lit_node.value
            return lambda env: other(env) == v
    return None


def _map_value_ty(oty: Ty) -> Ty:
    assert oty.elem is not None
    if oty.elem.kind == "unsupported":
        raise _Fail("maps with enum or 64-bit values are not supported", None)
    return oty.elem


def _ty_name(t: Ty) -> str:
    if t.kind == "message" and t.desc is not None:
        return f"{t.desc.name} message"
    if t.kind == "array":
        return "list"
    if t.kind == "any":
        return "value of mixed type"
    return t.kind


def _suggest(name: str, table: dict[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(table), n=1)
    if not close:
        lowered = {k.lower().replace("_", ""): k for k in table}
        match = lowered.get(name.lower().replace("_", ""))
        close = [match] if match else []
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------------------------------------
# Public API


class MatchFunc:
    """A compiled matchFunc: call it with a ``MessageRequest`` protobuf.

    ``matches(req)`` is JS truthiness of the result; it raises :class:`MatchFuncRuntimeError` where JS
    would throw (e.g. ``req.message.requestUri.user`` on a response, whose requestUri is undefined).
    """

    __slots__ = ("ref", "source", "dialect", "_fn")

    def __init__(self, ref: str, source: str, dialect: str, fn: Compiled) -> None:
        self.ref = ref
        self.source = source
        self.dialect = dialect
        self._fn = fn

    def evaluate(self, req: Any) -> Any:
        """The raw JS-like value the expression yields."""
        _budget.left = MAX_EVAL_STEPS
        try:
            return self._fn((req,))
        except _Shorted:  # pragma: no cover - every optional chain is wrapped in a Chain node
            return UNDEFINED
        except RecursionError as exc:  # pragma: no cover - depth is bounded at load time
            raise MatchFuncRuntimeError("expression too deep") from exc

    def matches(self, req: Any) -> bool:
        return js_truthy(self.evaluate(req))

    __call__ = matches

    def __repr__(self) -> str:
        return f"MatchFunc(ref={self.ref!r}, source={self.source!r})"


def _default_root() -> Descriptor:
    from routr_ray.proto.gen import processor_pb2

    return processor_pb2.MessageRequest.DESCRIPTOR


def _detect_dialect(tokens: list[Token]) -> str:
    t0 = tokens[0]
    if t0.kind == "name" and t0.value == "function":
        return "js"
    if t0.kind == "name" and len(tokens) > 1 and tokens[1].kind == "op" and tokens[1].value == "=>":
        return "js"
    if t0.kind == "op" and t0.value == "(":
        # (req) => …   or   () => …
        j = 1
        if tokens[j].kind == "name":
            j += 1
        if tokens[j].kind == "op" and tokens[j].value == ")" and \
                tokens[j + 1].kind == "op" and tokens[j + 1].value == "=>":
            return "js"
        if j == 2 and tokens[j].kind == "op" and tokens[j].value == ",":
            return "js"  # (a, b) => …: rejected by the JS parser with a clear message
    return "python"


def compile_match_func(source: str, ref: str, *, root: Descriptor | None = None) -> MatchFunc:
    """Parse, check and compile one matchFunc. Raises :class:`MatchFuncError` naming ``ref``.

    ``root`` is the descriptor of the request type (default: ``MessageRequest``).
    """
    if not isinstance(source, str):
        raise MatchFuncError(ref, repr(source), "matchFunc must be a string")
    if len(source) > MAX_SOURCE_CHARS:
        raise MatchFuncError(ref, source[:60] + "...", f"longer than {MAX_SOURCE_CHARS} characters")
    if not source.strip():
        raise MatchFuncError(ref, source, "empty")
    root = root if root is not None else _default_root()
    try:
        tokens = tokenize(source)
        dialect = _detect_dialect(tokens)
        parser = _Parser(tokens, dialect)
        if dialect == "js":
            param, body = parser.parse_js_function()
        else:
            param, body = None, parser.parse_expr()
            parser.expect_eof()
        fn, _ = _Compiler(root, dialect, param).compile(body)
    except _Fail as exc:
        raise MatchFuncError(ref, source, exc.detail, exc.pos) from None
    except RecursionError:
        raise MatchFuncError(ref, source, "expression nested too deeply") from None
    return MatchFunc(ref, source, dialect, fn)
