"""labkit: learn how PHP-FPM's `listen` and Nginx's `fastcgi_pass` fit together, live."""

from __future__ import annotations

from labkit.config import LabConfig, NginxConfig, PoolConfig, TcpAddress, UnixSocket
from labkit.diagnose import Cause
from labkit.errors import (
    ApplyFailed,
    BackendError,
    ConfigError,
    ConfigRejected,
    ImagesMissing,
    LabInUse,
    LabkitError,
    LabNotFound,
    LabTimeout,
    ProbeError,
)
from labkit.lab import ApplyResult, Lab, LabInfo, list_labs, remove_all_labs, unique_name
from labkit.probe import Outcome, SocketFile

__all__ = [
    "ApplyFailed",
    "ApplyResult",
    "BackendError",
    "Cause",
    "ConfigError",
    "ConfigRejected",
    "ImagesMissing",
    "Lab",
    "LabConfig",
    "LabInUse",
    "LabInfo",
    "LabNotFound",
    "LabTimeout",
    "LabkitError",
    "NginxConfig",
    "Outcome",
    "PoolConfig",
    "ProbeError",
    "SocketFile",
    "TcpAddress",
    "UnixSocket",
    "list_labs",
    "remove_all_labs",
    "unique_name",
]
