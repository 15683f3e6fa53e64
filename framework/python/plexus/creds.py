# SPDX-License-Identifier: Apache-2.0
"""Credentials files for a broker with --auth (plexus/creds.hpp).

`plexus keys user NAME --broker-key broker.pub` writes one (TOML, mode 0600):

    user = "alice"                 # the name the broker's auth file gives
    public_key = "<40 chars Z85>"  # this user's CURVE public key
    secret_key = "<40 chars Z85>"  # and its secret key
    broker_key = "<40 chars Z85>"  # the broker's (the cluster's) public key

Read with the same rules as the C++ reader: the four keys, nothing else,
each key 40 characters of Z85; an error names the file (and the field).
"""
from __future__ import annotations

import dataclasses
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

Z85_KEY_CHARS = 40
_Z85 = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        ".-:+=^!/*?&<>()[]{}@%$#")
_Z85_VALUE = {c: i for i, c in enumerate(_Z85)}
_FIELDS = ("user", "public_key", "secret_key", "broker_key")


class CredsError(ValueError):
    """A credentials file that is missing or wrong: names the file and, when
    it is about one, the field."""


def is_z85_key(text: str) -> bool:
    """40 characters of the Z85 alphabet whose groups of five each decode
    within 32 bits."""
    if not isinstance(text, str) or len(text) != Z85_KEY_CHARS:
        return False
    for i in range(0, Z85_KEY_CHARS, 5):
        v = 0
        for ch in text[i:i + 5]:
            d = _Z85_VALUE.get(ch)
            if d is None:
                return False
            v = v * 85 + d
        if v >= 1 << 32:
            return False
    return True


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A user's CURVE key pair and the broker's public key (Z85 text each)."""

    user: str
    public_key: str
    secret_key: str = dataclasses.field(repr=False)
    broker_key: str


def _parse_simple(text: str, name: str) -> dict:
    # The subset `plexus keys` writes (key = "string", comments), for a
    # Python without tomllib.
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        value = value.strip()
        if not eq or len(value) < 2 or value[0] != '"' or value.find('"', 1) < 0:
            raise CredsError(f"{name}:{n}: expected key = \"string\"")
        out[key.strip()] = value[1:value.index('"', 1)]
    return out


def parse_credentials(text: str, name: str = "credentials") -> Credentials:
    """A credentials file's text; `name` (its path) starts every error."""
    if tomllib is not None:
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise CredsError(f"{name}: {e}") from None
    else:
        table = _parse_simple(text, name)
    for key in table:
        if key not in _FIELDS:
            raise CredsError(f"{name}: unknown key '{key}'")
    values = {}
    for key in _FIELDS:
        if key not in table:
            raise CredsError(f"{name}: no '{key}' (a credentials file has user, public_key, "
                             "secret_key and broker_key; `plexus keys user` writes one)")
        if not isinstance(table[key], str):
            raise CredsError(f"{name}: {key} must be a string")
        values[key] = table[key]
    if not values["user"]:
        raise CredsError(f"{name}: user must not be empty")
    for key in ("public_key", "secret_key", "broker_key"):
        v = values[key]
        if not is_z85_key(v):
            raise CredsError(f"{name}: {key} must be a CURVE key: 40 characters of Z85, got "
                             f"{len(v)} characters"
                             + (" that are not Z85" if len(v) == Z85_KEY_CHARS else ""))
    return Credentials(**values)


def read_credentials(path) -> Credentials:
    """Reads and parses the file at `path` (CredsError when it cannot)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        raise CredsError(f"{path}: cannot read the credentials file") from None
    return parse_credentials(text, path)


def resolve(creds) -> Credentials | None:
    """None, a Credentials, or a path to a credentials file -> Credentials or None."""
    if creds is None or creds == "":
        return None
    if isinstance(creds, Credentials):
        return creds
    return read_credentials(creds)
