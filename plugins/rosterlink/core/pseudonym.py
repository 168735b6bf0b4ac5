"""Keyed pseudonyms of ID numbers: the secret key and the HMAC token of an ID under it.

``token(key, id)`` is the HMAC-SHA256 (hex, 64 characters) of the normalised 18-character ID: the
same ID gives the same token under the same key, and nobody without the key can turn a token back
into an ID (a plain hash could be reversed by trying every possible ID). Used by the load stage
(a child's ID is kept only as its token) and by the analytics copy
(:mod:`rosterlink.privacy.pseudonymise`).

The key comes from the Airflow connection ``rosterlink_pseudonym`` (its password) when running
inside an Airflow task, else from the environment variable ``ROSTERLINK_PSEUDONYM_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from typing import Literal, overload

from rosterlink.core import idnumber, settings

KEY_ENV = "ROSTERLINK_PSEUDONYM_KEY"
KEY_CONN_ID = "rosterlink_pseudonym"
MIN_KEY_CHARS = 16


class NoSecret(Exception):
    """No (usable) pseudonymisation key is configured."""


@overload
def secret(required: Literal[True] = ...) -> bytes: ...
@overload
def secret(required: bool) -> bytes | None: ...


def secret(required: bool = True) -> bytes | None:
    """The pseudonymisation key: Airflow connection ``rosterlink_pseudonym`` (password) inside an
    Airflow task, else ``$ROSTERLINK_PSEUDONYM_KEY``. None (``required=False``) or :class:`NoSecret`
    when neither is set; a key shorter than 16 characters is always refused."""
    conn = settings.airflow_connection(KEY_CONN_ID)
    value, origin = (conn.password if conn is not None else None), f"Airflow connection {KEY_CONN_ID!r}"
    if not value:
        value, origin = os.environ.get(KEY_ENV), f"${KEY_ENV}"
    if not value:
        if not required:
            return None
        raise NoSecret(
            f"no pseudonymisation key: set the environment variable {KEY_ENV} (or, inside Airflow, "
            f"the password of the connection {KEY_CONN_ID!r}) to a secret of at least {MIN_KEY_CHARS} "
            "characters, e.g. from: python -c 'import secrets; print(secrets.token_hex(32))'. Keep it: "
            "the same key gives the same tokens in every copy."
        )
    if len(value) < MIN_KEY_CHARS:
        raise NoSecret(f"the pseudonymisation key from {origin} is shorter than {MIN_KEY_CHARS} characters")
    return value.encode("utf-8")


def canonical_id(value: object) -> str | None:
    """An ID number as the warehouse keeps it: NFKC, no spaces, upper-case X, 15 digits upgraded."""
    if value is None:
        return None
    s = re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(value))).upper()
    if not s:
        return None
    if len(s) == 15 and s.isdigit():
        s = idnumber.upgrade_15(s)
    return s


def token(key: bytes, id_number: object) -> str | None:
    """HMAC-SHA256 (hex) of the normalised ID number under ``key``; None for an empty value."""
    s = canonical_id(id_number)
    if s is None:
        return None
    return hmac.new(key, s.encode("utf-8"), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A short public fingerprint of the key: two copies with the same key id have joinable tokens."""
    return hmac.new(key, b"rosterlink pseudonym key id", hashlib.sha256).hexdigest()[:12]
