"""Hypertable error codes as they travel in ``ClientException.code``.

Numbers and texts are Hypertable's (``src/cc/Common/Error.h`` and
``Error.cc``).  ``ClientException.message`` reads ``"<text> - <detail>"``;
``str()`` of a ``ClientException`` puts the symbolic name first
(:func:`describe`): ``NAMESPACE_DOES_NOT_EXIST (40): HYPERTABLE namespace
does not exist - logs``.
"""
from __future__ import annotations

__all__ = ["NAMES", "TEXTS", "describe", "is_comm", "name", "text"]

OK = 0
PROTOCOL_ERROR = 1
REQUEST_TRUNCATED = 2
REQUEST_TIMEOUT = 4
COMM_NOT_CONNECTED = 0x00010001
COMM_BROKEN_CONNECTION = 0x00010002
COMM_CONNECT_ERROR = 0x00010003
BAD_SCHEMA = 7
BAD_KEY = 9
HQL_PARSE_ERROR = 11
FILE_NOT_FOUND = 12
BAD_SCAN_SPEC = 30
NOT_IMPLEMENTED = 31
SYNTAX_ERROR = 35
TABLE_NOT_FOUND = 22
NAME_ALREADY_IN_USE = 39
NAMESPACE_DOES_NOT_EXIST = 40
BAD_NAMESPACE = 41
NAMESPACE_EXISTS = 42
ALREADY_EXISTS = 48
BAD_FORMAT = 55
INVALID_ARGUMENT = 56
INVALID_OPERATION = 57
FAILED_EXPECTATION = -1
HYPERSPACE_DIR_NOT_EMPTY = 0x00030013
MASTER_TABLE_EXISTS = 0x00040001
RANGESERVER_INVALID_COLUMNFAMILY = 0x0005000A
RANGESERVER_REVISION_ORDER_ERROR = 0x00050010
HQL_BAD_LOAD_FILE_FORMAT = 0x00060001
HQL_BAD_COMMAND = 0x00060002
SERIALIZATION_INPUT_OVERRUN = 0x00080001
SERIALIZATION_VERSION_MISMATCH = 0x00080004
THRIFTBROKER_BAD_SCANNER_ID = 0x00090001
THRIFTBROKER_BAD_MUTATOR_ID = 0x00090002
THRIFTBROKER_BAD_NAMESPACE_ID = 0x00090003
THRIFTBROKER_BAD_FUTURE_ID = 0x00090004

#: code -> the text ``error_get_text(code)`` returns.
TEXTS: dict[int, str] = {
    OK: "HYPERTABLE ok",
    PROTOCOL_ERROR: "HYPERTABLE protocol error",
    REQUEST_TRUNCATED: "HYPERTABLE request truncated",
    REQUEST_TIMEOUT: "HYPERTABLE request timeout",
    COMM_NOT_CONNECTED: "COMM not connected",
    COMM_BROKEN_CONNECTION: "COMM broken connection",
    COMM_CONNECT_ERROR: "COMM connect error",
    BAD_SCHEMA: "HYPERTABLE bad schema",
    BAD_KEY: "HYPERTABLE bad key",
    HQL_PARSE_ERROR: "HYPERTABLE HQL parse error",
    FILE_NOT_FOUND: "HYPERTABLE file not found",
    TABLE_NOT_FOUND: "HYPERTABLE table does not exist",
    BAD_SCAN_SPEC: "HYPERTABLE bad scan specification",
    NOT_IMPLEMENTED: "HYPERTABLE not implemented",
    SYNTAX_ERROR: "HYPERTABLE syntax error",
    NAME_ALREADY_IN_USE: "HYPERTABLE name already in use",
    NAMESPACE_DOES_NOT_EXIST: "HYPERTABLE namespace does not exist",
    BAD_NAMESPACE: "HYPERTABLE bad namespace",
    NAMESPACE_EXISTS: "HYPERTABLE namespace exists",
    ALREADY_EXISTS: "HYPERTABLE cell already exists",
    BAD_FORMAT: "HYPERTABLE bad format",
    INVALID_ARGUMENT: "HYPERTABLE invalid argument",
    INVALID_OPERATION: "HYPERTABLE invalid operation",
    FAILED_EXPECTATION: "HYPERTABLE failed expectation",
    HYPERSPACE_DIR_NOT_EMPTY: "HYPERSPACE directory not empty",
    MASTER_TABLE_EXISTS: "MASTER table exists",
    RANGESERVER_INVALID_COLUMNFAMILY: "RANGE SERVER invalid column family",
    RANGESERVER_REVISION_ORDER_ERROR: "RANGE SERVER supplied revision is not strictly increasing",
    HQL_BAD_LOAD_FILE_FORMAT: "HQL bad load file format",
    HQL_BAD_COMMAND: "HQL bad command",
    SERIALIZATION_INPUT_OVERRUN: "SERIALIZATION input buffer overrun",
    SERIALIZATION_VERSION_MISMATCH: "SERIALIZATION version mismatch",
    THRIFTBROKER_BAD_SCANNER_ID: "THRIFT BROKER bad scanner id",
    THRIFTBROKER_BAD_MUTATOR_ID: "THRIFT BROKER bad mutator id",
    THRIFTBROKER_BAD_NAMESPACE_ID: "THRIFT BROKER bad namespace id",
    THRIFTBROKER_BAD_FUTURE_ID: "THRIFT BROKER bad future id",
}


def text(code: int) -> str:
    """Return the error text of ``code``, or ``"ERROR NOT REGISTERED"`` as the broker does."""
    return TEXTS.get(code, "ERROR NOT REGISTERED")


#: code -> its symbolic name, e.g. ``40: 'NAMESPACE_DOES_NOT_EXIST'``.
NAMES: dict[int, str] = {value: key for key, value in list(globals().items())
                         if key.isupper() and isinstance(value, int) and not key.startswith("_")}


def is_comm(code: int) -> bool:
    """True when ``code`` is one of the ``COMM_*`` codes (``0x0001xxxx``: a connection problem
    between the broker and the cluster, :ref:`error-codes`)."""
    return code >> 16 == 0x0001


def name(code: int) -> str:
    """Return the symbolic name of ``code`` (``'TABLE_NOT_FOUND'``), or ``'UNREGISTERED_ERROR'``."""
    return NAMES.get(code, "UNREGISTERED_ERROR")


def describe(code: int | None, message: str | None) -> str:
    """Return ``'NAME (code): message'``, how ``str()`` of a ``ClientException`` reads.

    :param code: the numeric code, or ``None`` when the broker sent none.
    :param message: the broker's message, or ``None``.
    :returns: e.g. ``'NAMESPACE_DOES_NOT_EXIST (40): HYPERTABLE namespace does not exist - logs'``.
    """
    head = "ClientException" if code is None else f"{name(code)} ({code})"
    return head if message is None else f"{head}: {message}"
