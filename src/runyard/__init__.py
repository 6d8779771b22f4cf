"""Runyard: durable workflow runs on SQLite or PostgreSQL.

The public API is re-exported here; ``tests/test_exported_members.py`` pins it.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    CapacityExceeded,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NonDeterminismError,
    NonRetryableError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RunFailed,
    RunNotFound,
    RunTimeout,
    RunyardError,
    ServerUnreachable,
    StepFailed,
    StepTimeout,
    StoreUnavailable,
    Timeout,
    Unauthorized,
    WorkflowError,
    WorkflowNotFound,
)
from .models import ItemState, Run, RunStatus

if TYPE_CHECKING:
    from .app import Runyard
    from .config import Settings
    from .engine.context import Context, EventResult, SyncContext
    from .engine.executor import FailureInfo
    from .engine.registry import FlowControl, RetryPolicy
    from .service import RunHandle
    from .sync_api import SyncRunHandle, SyncRunyard

#: Names loaded on first use, so that ``import runyard.client`` (which imports this
#: package first) loads no engine, store or server module.
_LAZY = {
    "Runyard": "app",
    "Settings": "config",
    "Context": "engine.context",
    "EventResult": "engine.context",
    "SyncContext": "engine.context",
    "FailureInfo": "engine.executor",
    "FlowControl": "engine.registry",
    "RetryPolicy": "engine.registry",
    "RunHandle": "service",
    "SyncRunHandle": "sync_api",
    "SyncRunyard": "sync_api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runyard' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "CapacityExceeded",
    "Context",
    "EventResult",
    "FailureInfo",
    "FlowControl",
    "Forbidden",
    "IllegalTransition",
    "InvalidInput",
    "ItemState",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RetryPolicy",
    "Run",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunStatus",
    "RunTimeout",
    "Runyard",
    "RunyardError",
    "ServerUnreachable",
    "Settings",
    "StepFailed",
    "StepTimeout",
    "StoreUnavailable",
    "SyncContext",
    "SyncRunHandle",
    "SyncRunyard",
    "Timeout",
    "Unauthorized",
    "WorkflowError",
    "WorkflowNotFound",
    "__version__",
]
