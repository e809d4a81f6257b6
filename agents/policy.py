"""``aiops.anomalies`` → action requests on ``aiops.actions.requests`` (held-back ones as rejected results)."""

from __future__ import annotations

from agents._emit import decode_or_dead_letter, send_delivered
from pipeline.app import action_requests_topic, action_results_topic, anomalies_topic, app, policy_config, policy_states
from pipeline.policy import PolicyState, decide
from schemas import ActionRequest, Anomaly

STATE_KEY = "policy"
"""One key: the anomalies topic has one partition, so incidents and the breaker are global."""


@app.agent(anomalies_topic)
async def plan_actions(stream):
    async for event in stream.events():
        anomaly = await decode_or_dead_letter(event, Anomaly)
        if anomaly is None:
            continue
        state = policy_states.get(STATE_KEY) or PolicyState()
        for decision in decide(policy_config, state, anomaly, offset=event.message.offset):
            topic = action_requests_topic if isinstance(decision, ActionRequest) else action_results_topic
            await send_delivered(topic, [decision])
        await policy_states.write({STATE_KEY: state})
