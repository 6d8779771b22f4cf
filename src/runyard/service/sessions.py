"""API keys as a signed-in dashboard session sees them: by id, with the digest its
session is signed with (the digest never leaves the server)."""

from __future__ import annotations

from ..models import ApiKey
from .core import Core


class SessionsMixin:
    """Keys by id, for sessions."""

    core: Core

    async def api_key_by_id(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The live (not revoked) key with id ``key_id`` and its digest; None when it
        does not exist or was revoked."""
        return await self.core.read(self.core.store.find_api_key_by_id, key_id, inline=True)
