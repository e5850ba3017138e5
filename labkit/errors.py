"""The exception tree: every failure labkit raises on purpose is a `LabkitError`."""

from __future__ import annotations

# A refused value is quoted in full on the error object, and shortened in its message.
SHOWN_LIMIT = 120


class LabkitError(Exception):
    """Root of every error labkit raises on purpose."""


class ConfigError(LabkitError, ValueError):
    """A setting was refused before anything reached a container.

    Attributes:
        subject: What the setting belongs to, e.g. ``pool 'www'`` or ``nginx``.
        field: The directive or option, e.g. ``listen.mode``.
        allowed: What would have been accepted.
        given: The refused value.
    """

    def __init__(self, subject: str, field: str, allowed: str, given: object) -> None:
        self.subject = subject
        self.field = field
        self.allowed = allowed
        self.given = given
        shown = repr(given)
        if len(shown) > SHOWN_LIMIT:
            shown = f"{shown[:SHOWN_LIMIT]}... ({len(shown)} characters)"
        super().__init__(f"{subject}: `{field}` must be {allowed}, got {shown}")


class ConfigRejected(LabkitError, ValueError):
    """`php-fpm -t` or `nginx -t` refused a rendered configuration; the lab was left as it was.

    Attributes:
        tool: ``php-fpm`` or ``nginx``.
        output: What the tool printed, trimmed to its meaningful lines.
    """

    def __init__(self, tool: str, output: str) -> None:
        self.tool = tool
        self.output = output
        super().__init__(
            f"{tool} rejected the configuration; the lab keeps its last good one:\n{output}"
        )


class BackendError(LabkitError):
    """The Docker engine could not be reached or refused an operation."""


class ImagesMissing(BackendError):
    """The lab images are not built on this engine."""


class ApplyFailed(LabkitError):
    """A configuration passed its test but a container did not come back with it.

    The lab was returned to its last good configuration before this was raised.

    Attributes:
        log_tail: The last lines the failing container printed.
    """

    def __init__(self, message: str, log_tail: str) -> None:
        self.log_tail = log_tail
        super().__init__(f"{message}\n--- last log lines ---\n{log_tail}")


class LabTimeout(LabkitError, TimeoutError):
    """Something the lab waited for did not happen in time.

    Attributes:
        awaited: What was awaited.
        limit: The limit in seconds.
        state: The container state when the wait gave up.
        log_tail: The last lines of the container's log.
    """

    def __init__(self, awaited: str, limit: float, state: str, log_tail: str) -> None:
        self.awaited = awaited
        self.limit = limit
        self.state = state
        self.log_tail = log_tail
        super().__init__(
            f"gave up waiting {limit:.1f}s for {awaited} (container {state})\n"
            f"--- last log lines ---\n{log_tail}"
        )


class ProbeError(LabkitError):
    """A request to the lab could not be sent at all (not an HTTP error status)."""


class LabNotFound(LabkitError, LookupError):
    """No lab of that name is running on this engine."""


class DoctorInputError(LabkitError, ValueError):
    """`labkit doctor` was given something it cannot read as Nginx or PHP-FPM configuration.

    Attributes:
        path: The file or directory, as given or as an include named it.
        reason: Why it was refused, e.g. ``binary file`` or ``include loop``.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class LabInUse(LabkitError):
    """Another running process owns a lab of that name; it was left alone."""


class ServerStopped(LabkitError):
    """A server's container stopped while the lab waited for it."""
