"""Why the Kafka client cannot connect, from what it logs.

kafka-python reports a refused SASL mechanism, wrong credentials or a TLS failure only
in its own log lines ("Connection lost: [Error 58] SaslAuthenticationFailedError");
the exception that reaches the caller says no more than "Unable to bootstrap". Such a
failure will not heal by retrying, so the operator must be told which one it is, once,
and see it in ``/readyz`` and a metric, instead of a retry loop that only says timeout.
"""

from __future__ import annotations

import logging
import re

__all__ = ["AuthFailureWatch"]

#: Errors that mean the security settings, not the network: they fail every retry the same way.
_AUTH_ERRORS = re.compile(
    r"(SaslAuthenticationFailedError|UnsupportedSaslMechanismError|IllegalSaslStateError"
    r"|\w*AuthorizationFailedError|SSLCertVerificationError|CERTIFICATE_VERIFY_FAILED|SSLError"
    r"|WRONG_VERSION_NUMBER|wrong version number)"
)


class AuthFailureWatch(logging.Handler):
    """Attached to the ``kafka`` logger; remembers the last authentication or TLS error it logged."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = _AUTH_ERRORS.search(record.getMessage())
        if found is not None:
            self.last = found.group(1)

    def take(self) -> str | None:
        """The error seen since the last call (and forget it), or None."""
        seen, self.last = self.last, None
        return seen

    def install(self) -> AuthFailureWatch:
        logging.getLogger("kafka").addHandler(self)
        return self

    def remove(self) -> None:
        logging.getLogger("kafka").removeHandler(self)
