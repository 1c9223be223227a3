"""Release basics (issue 16, items 7/8): what a user meets first besides the code.

``ClientException`` names its code symbolically and lives, as tracebacks say,
at its public path; the package declares the Python versions and the platform
it supports; the pytest plugin's options are prefixed and loading it imports
nothing optional; the changelog has an "Unreleased" section and a version policy.
"""
from __future__ import annotations

import configparser
import pickle
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from htcluster import Replicas, Resource, codes
from htcluster.errors import ClientException

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ ClientException


def _raised(call) -> ClientException:
    with pytest.raises(ClientException) as info:
        call()
    return info.value


def test_client_exception_names_the_code(local_broker):
    with Resource(local_broker.address) as r:
        exc = _raised(lambda: r.namespace_open("no_such_namespace"))
    assert exc.code == codes.NAMESPACE_DOES_NOT_EXIST
    assert str(exc).startswith("NAMESPACE_DOES_NOT_EXIST (40): ")
    assert "no_such_namespace" in str(exc)
    assert repr(exc).startswith("ClientException(code=40, ")  # the generated repr is kept


def test_routed_client_exception_shows_a_public_path_in_tracebacks(local_broker):
    replicas = Replicas([local_broker.address])
    try:
        exc = _raised(lambda: replicas.call("get_row", "t", "r", namespace="no_such_namespace"))
    finally:
        replicas.close()
    text = "".join(traceback.format_exception(exc))
    assert "htcluster.errors.ClientException: NAMESPACE_DOES_NOT_EXIST (40): " in text
    assert "_thrift" not in text.splitlines()[-1] and "code=40" not in text


def test_client_exception_unknown_code_pickle_and_equality():
    exc = ClientException(code=123456789, message="odd")
    assert str(exc) == "UNREGISTERED_ERROR (123456789): odd"
    assert str(ClientException(message="no code")) == "ClientException: no code"
    assert pickle.loads(pickle.dumps(exc)) == exc
    assert codes.name(codes.TABLE_NOT_FOUND) == "TABLE_NOT_FOUND"
    assert all(getattr(codes, name) == code for code, name in codes.NAMES.items())
