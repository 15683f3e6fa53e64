# SPDX-License-Identifier: Apache-2.0
"""plexus for Python: a peer of plexus services (brokers/PROTOCOL.md).

    client = await plexus.Client("tcp://127.0.0.1:7400").connect()
    node = plexus.Node()
    @node.function("send-confirmation", on="label.created", service="shipping", instances=4)
    async def confirm(label: dict, ctx): ...
    node.run()
"""
from .client import Client, Msg, Subscription, decode, encode
from .creds import Credentials, CredsError, read_credentials
from .errors import (DeadLettered, Disconnected, Expired, Forbidden, HandshakeFailed, NoInterest,
                     NoResponders, Overloaded, PeerLost, PermissionDenied, PlexusError, Reject,
                     RequestFailed, RequestTimeout, Retry, status_text)
from .node import Context, Node

__version__ = "0.1.0"

__all__ = ["Client", "Msg", "Subscription", "Node", "Context", "encode", "decode",
           "PlexusError", "NoResponders", "NoInterest", "DeadLettered", "Overloaded", "Expired",
           "Forbidden", "PeerLost", "PermissionDenied", "RequestTimeout", "RequestFailed",
           "Disconnected", "HandshakeFailed", "Reject", "Retry", "status_text", "Credentials",
           "CredsError", "read_credentials"]
