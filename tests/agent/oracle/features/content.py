"""Content features (NSL-KDD 10–22) as a plugin. The rules are production's
(capture_agent.content: the native engine calls them too); the plugin is what the reference
engine adds, when a connection ends: inspected connections get the rules' values, others
LOGGED_IN_ONLY when established with payload both ways, else NO_CONTENT."""

from __future__ import annotations

from capture_agent.content import CONTENT_FEATURES, LOGGED_IN_ONLY, NO_CONTENT, content_values
from tests.agent.oracle.connection import Finished
from tests.agent.oracle.decode import TCP


class ContentFeatures:
    """Content features of inspected connections. Services without a login dialogue are not
    inspected: their logged_in is 1 when the TCP connection was established and both sides sent
    payload, the rest 0."""

    names = CONTENT_FEATURES

    def on_expire(self, conn: Finished) -> tuple:
        if conn.dialect is not None:
            return content_values(
                conn.dialect, conn.orig_payload, conn.resp_payload, conn.established
            )
        if conn.proto == TCP and conn.orig_bytes and conn.resp_bytes and conn.established:
            return LOGGED_IN_ONLY
        return NO_CONTENT
