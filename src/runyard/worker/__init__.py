"""Workers: claim, execute, heartbeat, recover."""

from .worker import Worker, new_worker_id

__all__ = ["Worker", "new_worker_id"]
