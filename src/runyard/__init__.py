"""Runyard: durable workflow runs on SQLite or PostgreSQL.

The public API is re-exported here; ``tests/test_exported_members.py`` pins it.
"""

from .app import RunHandle, Runyard, SyncRunHandle, SyncRunyard
from .config import Settings
from .engine.context import Context, EventResult, SyncContext
from .engine.executor import FailureInfo
from .engine.registry import FlowControl, RetryPolicy
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
