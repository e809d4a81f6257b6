"""``aiops.anomalies`` → action requests on ``aiops.actions.requests`` (held-back ones as rejected results);
``aiops.incidents`` → the verdicts on those actions (``verified``, ``not_effective``) on ``aiops.actions.results``;
each action taken or judged → its incident, with its actions, on ``aiops.incidents``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.policy import PolicyState, decide, follow_incident
from schemas import ActionRequest, ActionResult, IncidentEvent
from schemas.topics import ACTION_REQUESTS, ACTION_RESULTS, INCIDENTS

if TYPE_CHECKING:
    from agents.runtime.app import Runtime
    from agents.topology import Stage

STATE_KEY = "policy"
"""One key: the anomalies topic has one partition, so incidents and the breaker are global."""


TOPIC_OF = {ActionRequest: ACTION_REQUESTS, ActionResult: ACTION_RESULTS, IncidentEvent: INCIDENTS}


def attach(rt: Runtime, stage: Stage) -> None:
    [states] = (rt.table(spec) for spec in stage.state)

    @rt.app.agent(rt.source(*stage.reads), name=stage.name)
    async def plan_actions(stream):
        async for event in stream.events():
            message = await rt.emit.decode(event.message)
            if message is None:
                continue
            state = states.get(STATE_KEY) or PolicyState()
            if isinstance(message, IncidentEvent):
                decisions = follow_incident(rt.policy, state, message)
            else:
                decisions = decide(rt.policy, state, message, offset=event.message.offset)
            for decision in decisions:
                await rt.emit.send_delivered(TOPIC_OF[type(decision)], [decision])
            await states.write({STATE_KEY: state})
