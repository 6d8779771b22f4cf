"""The default database's folder keeps its files out of git whatever opens it first: a
``Runyard()`` in user code as much as ``runyard dev`` or ``runyard db upgrade``."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from runyard import Context, Runyard
from runyard.config import DEFAULT_URL, Settings


def test_the_default_folder_gets_a_gitignore_from_whatever_opens_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    # The default URL is relative to the working directory: a user's app run there.
    url = DEFAULT_URL.replace("sqlite:///", f"sqlite:///{project}/")
    yard = Runyard(settings=Settings.from_env(url))

    @yard.workflow
    async def one(ctx: Context) -> int:
        return 1

    async def main() -> None:
        await yard.start("one")

    asyncio.run(main())
    folder = project / ".runyard"
    assert (folder / "runyard.db").exists()
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(
        ["git", "-C", str(project), "status", "--porcelain", "--untracked-files=all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert status == "", status
