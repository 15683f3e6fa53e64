# SPDX-License-Identifier: Apache-2.0
"""Status codes (brokers/PROTOCOL.md "Status codes", plexus/wire.hpp `status`)
as Python exceptions: every one carries its `code`."""
from __future__ import annotations

OK = 0
NO_RESPONDERS = 100
NO_INTEREST = 101
DEAD_LETTERED = 102
OVERLOADED = 103
EXPIRED = 104
FORBIDDEN = 105
UNKNOWN_SUBSCRIPTION = 106
TOO_MANY_SUBSCRIPTIONS = 107
PROTOCOL_VIOLATION = 108
DUPLICATE_SID = 109
PEER_LOST = 110
RETURNED = 111
SLOW_CONSUMER = 112
NOT_AUTHORIZED = 113
PERMISSION_DENIED = 114
FULL = 115
UNAVAILABLE = 116
TIMEOUT = 900
DISCONNECTED = 901
OUTBOX_FULL = 902
FAILED = 903
SESSION_LOST = 904
HANDLER_STALL = 905

STATUS_TEXT = {
    OK: "ok", NO_RESPONDERS: "no responders", NO_INTEREST: "no interest",
    DEAD_LETTERED: "dead-lettered", OVERLOADED: "overloaded", EXPIRED: "expired",
    FORBIDDEN: "forbidden topic", UNKNOWN_SUBSCRIPTION: "unknown subscription",
    TOO_MANY_SUBSCRIPTIONS: "too many subscriptions",
    PROTOCOL_VIOLATION: "protocol violation", DUPLICATE_SID: "duplicate subscription id",
    PEER_LOST: "peer lost", RETURNED: "returned", SLOW_CONSUMER: "slow consumer",
    NOT_AUTHORIZED: "not authorized", PERMISSION_DENIED: "permission denied",
    FULL: "full", UNAVAILABLE: "unavailable", TIMEOUT: "timeout",
    DISCONNECTED: "disconnected", OUTBOX_FULL: "outbox full", FAILED: "failed",
    SESSION_LOST: "session lost", HANDLER_STALL: "handler stall",
}


def status_text(code: int) -> str:
    if 0 < code < 100:
        return f"wire decode error {code}"
    return STATUS_TEXT.get(code, "unknown status")


class PlexusError(Exception):
    """An outcome other than ok: `code` is the status, `text` what was said."""

    code = -1

    def __init__(self, code: int | None = None, text: str = ""):
        if code is not None:
            self.code = code
        self.text = text
        msg = status_text(self.code)
        super().__init__(f"{msg} ({self.code})" + (f": {text}" if text else ""))


class NoResponders(PlexusError):
    code = NO_RESPONDERS


class NoInterest(PlexusError):
    code = NO_INTEREST


class DeadLettered(PlexusError):
    code = DEAD_LETTERED


class Overloaded(PlexusError):
    code = OVERLOADED


class Expired(PlexusError):
    code = EXPIRED


class Forbidden(PlexusError):
    code = FORBIDDEN


class PeerLost(PlexusError):
    code = PEER_LOST


class PermissionDenied(PlexusError):
    code = PERMISSION_DENIED


class RequestTimeout(PlexusError, TimeoutError):
    code = TIMEOUT


class Disconnected(PlexusError):
    code = DISCONNECTED


class RequestFailed(PlexusError):
    """The responder failed and said so (code 903): `how` (crash, error,
    timeout, ...), `source` ("service.function") and the cause in `text`."""

    code = FAILED

    def __init__(self, code=None, text="", how="", source=""):
        self.how = how
        self.source = source
        super().__init__(code, f"{source}: {how}: {text}" if source or how else text)
        self.text = text


_BY_CODE = {c.code: c for c in (NoResponders, NoInterest, DeadLettered, Overloaded, Expired,
                                Forbidden, PeerLost, PermissionDenied, RequestTimeout,
                                Disconnected, RequestFailed)}


def error_for(code: int, text: str = "") -> PlexusError:
    """The exception for a status code (PlexusError for one without a class)."""
    cls = _BY_CODE.get(code)
    return cls(code, text) if cls else PlexusError(code, text)


class HandshakeFailed(ConnectionError):
    """connect() found no broker that would admit this client: the broker
    refused its CURVE key, its key is not the one in the credentials, or it
    wants CURVE (--auth) and the client has no credentials. `reason` says
    which."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class Reject(Exception):
    """Raised by a handler: the message is dead-lettered now (NACK action 2),
    no retry; a request gets a failure answer saying `rejected`."""


class Retry(Exception):
    """Raised by a handler: the message is requeued after `delay` seconds
    (NACK action 1), not counted as a crash."""

    def __init__(self, reason: str = "retry", delay: float = 0.0):
        super().__init__(reason)
        self.delay = delay
