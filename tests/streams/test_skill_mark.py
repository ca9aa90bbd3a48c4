"""The skill SDK's verdict: ``SkillContext.mark`` travels with the skill's answer."""

from __future__ import annotations

import pytest

from streams import topics
from streams.directive import Directive, ResponseStatus, SkillResponse, directive_id
from streams.rewrite import Outcome
from streams.schema import Message
from streams.skill import Skill, SkillContext


class Recording(Skill):
    """A skill whose answers are kept in a list instead of sent to a broker."""

    def __init__(self) -> None:
        super().__init__("media", "kafka://127.0.0.1:9")
        self.sent: list[SkillResponse] = []

    async def publish(self, spec: topics.TopicSpec, key: str, message: Message) -> None:
        assert spec is topics.RESPONSES and isinstance(message, SkillResponse)
        self.sent.append(message)


DIRECTIVE = Directive(directive_id=directive_id("u1", 0), device_id="d1", utterance_id="u1",
                      revision=0, skill="media", intent="play_music")


@pytest.mark.parametrize(("mark", "fail", "status", "outcome"), [
    (None, False, ResponseStatus.DONE, None),
    ("defect", False, ResponseStatus.DONE, Outcome.DEFECT),
    (Outcome.SUCCESS, False, ResponseStatus.DONE, Outcome.SUCCESS),
    ("defect", True, ResponseStatus.FAILED, Outcome.DEFECT),  # marked, then it raised
])
async def test_the_mark_goes_with_the_final_answer(mark: str | None, fail: bool,
                                                   status: ResponseStatus,
                                                   outcome: Outcome | None) -> None:
    skill = Recording()

    @skill.handler
    async def handle(d: Directive, ctx: SkillContext) -> str:
        if mark is not None:
            ctx.mark(mark)
        if fail:
            raise LookupError("no such song")
        return "Playing."

    await skill._handle(DIRECTIVE)
    accepted, final = skill.sent
    assert (accepted.status, accepted.outcome) == (ResponseStatus.ACCEPTED, None)
    assert (final.status, final.outcome) == (status, outcome)


def test_mark_refuses_another_verdict() -> None:
    with pytest.raises(ValueError, match="maybe"):
        SkillContext(Recording(), DIRECTIVE).mark("maybe")
