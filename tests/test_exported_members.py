"""The public API is what ``runyard/__init__.py`` exports: pinned here."""

import runyard


def test_public_api_is_pinned() -> None:
    assert runyard.__all__ == [
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
    assert runyard.__all__ == sorted(runyard.__all__, key=lambda n: (n.startswith("_"), n))
    for name in runyard.__all__:
        assert getattr(runyard, name) is not None
