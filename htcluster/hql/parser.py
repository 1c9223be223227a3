"""The HQL parser: ``hql.lark`` built once per process, syntax errors that say where and what.

:func:`parse` turns one statement into a typed value of :mod:`.statements`;
:func:`is_read` classifies a statement with the same grammar (for routing).
"""
from __future__ import annotations

import functools
import os
import re
import stat
import sys
import tempfile
import threading
from importlib import resources
from typing import Optional

from lark import Lark, Token, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from .._thrift.ttypes import ClientException
from . import statements as ast
from ._errors import parse_error
from .build import StatementBuilder

__all__ = ["READ_RULES", "is_read", "parse", "warm_up"]

#: Grammar rules (statement kinds) that only read (:ref:`hql`).
READ_RULES = frozenset({"select", "show_tables", "describe_table", "show_create_table",
                        "exists_table", "get_listing"})
#: Distinct statement texts whose classification :func:`is_read` remembers.
IS_READ_CACHE_SIZE = 4096
#: First words of the read statements; a text starting otherwise is a write without parsing.
_READ_WORDS = frozenset({"select", "show", "describe", "exists", "get"})
_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")

#: How some terminals read in "expected ..." messages.
_TERMINAL_WORDS = {
    "IDENT": "a name", "STR": "a quoted string", "INT": "a number", "DECIMAL": "a number",
    "REGEX": "a /regex/", "$END": "end of statement",
}

_lock = threading.Lock()
_built: Optional[Lark] = None


def _new_lock_in_child() -> None:
    """A forked child gets a new build lock: a parent thread may have held it at the fork."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _cache_file() -> "str | bool":
    """Where lark may cache the built parser: a directory only this user can write, else nowhere.

    The cache turns the build (about 0.3 s) into a load (about 0.05 s) in every
    process after the first.  lark loads it with ``pickle``, so a directory
    others could write is never used.
    """
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # no POSIX ownership to check
        return False
    folder = os.path.join(tempfile.gettempdir(), f"htcluster-{getuid()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return False
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == getuid() and not info.st_mode & 0o077
    name = "hql-parser-py{}{}.lark-cache".format(*sys.version_info[:2])  # lark checks grammar and versions too
    return os.path.join(folder, name) if private else False


def _parser() -> Lark:
    """Return the LALR parser of ``hql.lark``, building it on first use (once per process)."""
    global _built
    if _built is None:
        with _lock:
            if _built is None:
                grammar = resources.files(__package__).joinpath("hql.lark").read_text(encoding="utf-8")
                _built = Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=True,
                              cache=_cache_file())
    return _built


def warm_up() -> None:
    """Build the parser now (a fraction of a second), so that the first statement does not pay."""
    _parser()


def _describe(name: str) -> str:
    """Say how a terminal is written, for "expected ..." lists."""
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pattern.value.upper()}'" if pattern.type == "str" else name


def _syntax_error(command: str, exc: UnexpectedInput) -> ClientException:
    """Say where the text went wrong (line, column) and what could have come there."""
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        found = repr(str(exc.token))
    elif isinstance(exc, UnexpectedCharacters) and exc.pos_in_stream is not None:
        found = repr(command[exc.pos_in_stream])
    else:
        found = "end of statement"
        lines = command.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    # the interactive parser tries each terminal, so LALR's merged look-ahead does not leak in
    parser = getattr(exc, "interactive_parser", None)
    expected = sorted({_describe(name) for name in (parser.accepts() if parser else ())})
    detail = f"syntax error at line {line}, column {column}: unexpected {found}"
    if expected:
        detail += f"; expected {expected[0] if len(expected) == 1 else 'one of ' + ', '.join(expected)}"
    if found == "';'":
        detail += " (send one statement per call, without a trailing ';')"
    return parse_error(detail)


def _tree(command: str) -> Tree[Token]:
    if not isinstance(command, str):
        raise parse_error(f"an HQL statement is text (str), not {type(command).__name__}")
    try:
        return _parser().parse(command)
    except UnexpectedInput as exc:
        raise _syntax_error(command, exc) from None


def parse(command: str) -> ast.Statement:
    """Parse one HQL statement (:ref:`hql`) into a typed statement.

    Values are evaluated once, here: timestamps become nanoseconds, ``GUID()``
    becomes one fixed UUID, so converting the same ``Insert`` twice sends the
    same cells.

    :param command: the HQL text; keywords in any case, no trailing ``;``.
    :returns: one of the dataclasses of :mod:`htcluster.hql.statements`.
    :raises ClientException: HQL_PARSE_ERROR (syntax, with line and column,
        or a bad value such as a malformed timestamp); HQL_BAD_COMMAND for an
        inconsistent CREATE TABLE; BAD_SCAN_SPEC for ROW with CELL predicates.
    """
    tree = _tree(command)
    try:
        statement: ast.Statement = StatementBuilder().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, ClientException):
            raise exc.orig_exc from None
        raise
    return statement


def _kind(tree: Tree[Token]) -> str:
    """The rule name of the statement in a ``start`` tree."""
    statement = tree.children[0] if tree.data == "start" else tree
    return str(getattr(statement, "data", statement))  # a statement is a Tree; a Token would be its own text


def _writes_file(tree: Tree[Token]) -> bool:
    """True for ``SELECT ... INTO FILE``: it creates a file on the broker's host."""
    return any(getattr(node, "data", None) == "opt_into_file" for node in tree.iter_subtrees())


@functools.lru_cache(maxsize=IS_READ_CACHE_SIZE)
def is_read(command: str) -> bool:
    """True when the HQL ``command`` only reads, classified with the real grammar.

    Reads are SELECT, SHOW TABLES, SHOW CREATE TABLE, DESCRIBE TABLE, EXISTS
    TABLE and GET LISTING (:ref:`hql`).  Everything else is a write,
    including text that does not parse and ``SELECT ... INTO FILE`` (it writes
    a file on the broker).  Only syntax is checked: a SELECT whose values are
    bad (a malformed timestamp) still counts as a read; the broker refuses it.
    Results are memoised per text (at most :data:`IS_READ_CACHE_SIZE` texts);
    a text whose first word starts no read statement (INSERT, DELETE, ...) is
    a write at once, without parsing, since no read rule begins that way.

    :param command: one HQL statement.
    :returns: ``True`` for a read, ``False`` otherwise; never raises.
    """
    first = _FIRST_WORD.match(command) if isinstance(command, str) else None
    if first is None or first.group(1).lower() not in _READ_WORDS:
        return False
    try:
        tree = _tree(command)
    except ClientException:
        return False
    kind = _kind(tree)
    return kind in READ_RULES and not (kind == "select" and _writes_file(tree))
