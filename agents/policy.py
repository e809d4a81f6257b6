"""``aiops.anomalies`` → action requests on ``aiops.actions.requests`` (held-back ones as rejected results)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.policy import PolicyState, decide
from schemas import ActionRequest
from schemas.topics import ACTION_REQUESTS, ACTION_RESULTS

if TYPE_CHECKING:
    from agents.runtime.app import Runtime
    from agents.topology import Stage

STATE_KEY = "policy"
"""One key: the anomalies topic has one partition, so incidents and the breaker are global."""


def attach(rt: Runtime, stage: Stage) -> None:
    [states] = (rt.table(spec) for spec in stage.state)

    @rt.app.agent(rt.source(*stage.reads), name=stage.name)
    async def plan_actions(stream):
        async for event in stream.events():
            anomaly = await rt.emit.decode(event.message)
            if anomaly is None:
                continue
            state = states.get(STATE_KEY) or PolicyState()
            for decision in decide(rt.policy, state, anomaly, offset=event.message.offset):
                topic = ACTION_REQUESTS if isinstance(decision, ActionRequest) else ACTION_RESULTS
                await rt.emit.send_delivered(topic, [decision])
            await states.write({STATE_KEY: state})
