"""A skill process for the restart test: logs every act to a file; can die inside the handler.

Usage: python -m tests.e2e.skill_proc BOOTSTRAP ACTS_FILE MODE, MODE ``die`` (SIGKILL itself
right after acting, before answering or committing) or ``live``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from streams.directive import Directive
from streams.skill import Skill, SkillContext


async def main(bootstrap: str, acts: str, mode: str) -> None:
    skill = Skill("restart-probe", bootstrap, heartbeat_s=0.5)

    @skill.handler
    async def handle(d: Directive, ctx: SkillContext) -> str:
        with open(acts, "a") as fh:  # noqa: ASYNC230 -- the act must be on disk before dying
            fh.write(d.directive_id + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if mode == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        return "done"

    task = asyncio.create_task(skill.run())
    await skill.ready.wait()
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
