"""One router per resource, each mounted under ``/v1`` (``ops`` at the root)."""
