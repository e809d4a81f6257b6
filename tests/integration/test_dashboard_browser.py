"""The dashboard in a real headless Chromium, on a real worker, gateway and broker: an on-call engineer's loop.

A simulated fleet with a latency incident flows through the worker; the page must show the services, the
anomaly and the open incident, and a restart clicked and confirmed on the page must wait in the approval queue,
and once approved there come back in the action log as a dry run. Once the fleet's latency is back to normal the
incident shows as resolved, with the policy's automatic restart on it verified.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from gateway.server import BackgroundGateway
from pipeline.config import Settings
from tests.support import FleetRun

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
OPERATOR = "browser-operator-token-0123"
PIPELINE_MS = 180_000
"""How long the worker may take from the published history to health, anomalies and action results."""


def test_operator_sees_the_incident_and_restarts_a_service(kafka_bootstrap, workers, tmp_path, playwright_chromium):
    run = FleetRun(tmp_path, cluster="prod")
    policy = yaml.safe_load(run.policy_file.read_text())
    # Workers of earlier tests left requests on the shared topic; a fresh actuator replays them, so the
    # breaker must not trip on those.
    # Restarts wait for an operator's approval, so the approval queue is exercised too.
    # The one operator on the page approves their own request.
    policy["guardrails"] = {
        "breaker_max_actions": 1000,
        "approval_required": ["restart_deployment"],
        "approver_must_differ": False,
    }
    run.policy_file.write_text(yaml.safe_dump(policy))
    run.latency_incident(at_seconds=300, seconds=90)  # until +390 s: the incident resolves within 50 s of that
    worker = workers.start(**run.env)
    target = run.services[1]  # user-auth: healthy, so the manual restart is the only action on it

    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_partitions=3,
        api_tokens=f"{OPERATOR}:operator:browser",
        policy_file=run.policy_file,
    )
    with BackgroundGateway(settings) as gateway:
        page = playwright_chromium.new_page(viewport={"width": 1600, "height": 1050})
        try:
            errors = watch_for_errors(page)
            answer = page.goto(gateway.url)
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]  # the page runs under it
            page.fill("#token-input", OPERATOR)
            page.click("#token-form button[type=submit]")
            page.fill("#service-filter", run.payment.rsplit("-", 1)[1])  # only this run's fleet
            page.wait_for_selector('#conn-live[data-state="up"]', timeout=30_000)

            # The page is open and following the stream before the fleet publishes: it sees every change.
            # Playwright's sync API runs an event loop in this thread, so publish from another one.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, run.publish(kafka_bootstrap, 0, 360)).result(timeout=120)
                see_the_open_incident(page, run, worker)
                pool.submit(asyncio.run, run.publish(kafka_bootstrap, 360, 480)).result(timeout=120)
            operate(page, run, worker, target)
            see_it_resolved_and_the_restart_verified(page, run, worker)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True, animations="disabled")
            assert not errors, errors  # a CSP violation is a console error too
            assert page.evaluate("window.__cspViolations") == []
            assert_the_browser_enforces_the_csp(page)
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-failure.png"), full_page=True)
            print("gateway's action log:", [e.model_dump(mode="json") for e in gateway.app.state.live.action_log(10)])
            print("worker log:", worker.output())
            raise
        finally:
            page.close()  # ends the page's event stream before the gateway stops


def watch_for_errors(page) -> list[str]:
    """Script errors and console errors, except the browser's note on the 401s answered before the token is set;
    the page also records every Content-Security-Policy violation in ``window.__cspViolations``."""
    errors: list[str] = []
    page.add_init_script(
        "window.__cspViolations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )

    def on_console(message) -> None:
        if message.type == "error" and "status of 401" not in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def assert_the_browser_enforces_the_csp(page) -> None:
    """The control: an injected inline script does not run, and the browser reports why."""
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__injected = true';"
        " document.body.appendChild(s); }"
    )
    page.wait_for_function("window.__cspViolations.length > 0", timeout=5_000)
    assert page.evaluate("window.__injected === undefined")
    assert page.evaluate("window.__cspViolations")[0].startswith("script-src")


def incident_item(run: FleetRun, status: str) -> str:
    return f'#incident-list li.incident[data-service="{run.payment}"][data-status="{status}"]'


def see_the_open_incident(page, run: FleetRun, worker) -> None:
    """Mid-spike: payment's incident is open, first in the list, with its duration, severity, metric and anomalies."""
    try:
        page.wait_for_selector(incident_item(run, "open"), timeout=PIPELINE_MS)
    except Exception:
        raise AssertionError(f"no open incident on the page; worker log:\n{worker.output()}") from None
    text = page.inner_text(incident_item(run, "open"))
    assert "open " in text and "latency_p95" in text and "anomal" in text, text
    severity = page.get_attribute(f"{incident_item(run, 'open')} .sev", "data-severity")
    assert severity in ("low", "medium", "high", "critical"), severity
    first = page.get_attribute("#incident-list li.incident", "data-status")
    assert first == "open", "open incidents come first"


def see_it_resolved_and_the_restart_verified(page, run: FleetRun, worker) -> None:
    """After the spike: the incident is resolved and greyed, its automatic restart judged verified there and in
    the action log."""
    resolved = incident_item(run, "resolved")
    try:
        page.wait_for_selector(f'{resolved} li.incident-action[data-verification="verified"]', timeout=PIPELINE_MS)
    except Exception:
        raise AssertionError(f"no resolved incident with a verified action; worker log:\n{worker.output()}") from None
    assert page.query_selector(incident_item(run, "open")) is None, "the incident is shown once"
    assert float(page.eval_on_selector(resolved, "el => getComputedStyle(el).opacity")) < 1, "resolved ones are greyed"
    assert page.inner_text(f"{resolved} .chip.verdict.verified").lower() == "verified"
    row = f'#action-log tr.verified[data-service="{run.payment}"][data-verification="verified"]'
    page.wait_for_selector(f"{row} .chip.verdict.verified", timeout=30_000)


def operate(page, run: FleetRun, worker, target: str) -> None:
    try:
        for service in run.services:
            page.wait_for_selector(f'article.service[data-service="{service}"]', timeout=PIPELINE_MS)
        page.wait_for_selector(f'#anomaly-feed li.anomaly[data-service="{run.payment}"]', timeout=PIPELINE_MS)
    except Exception:
        raise AssertionError(f"the pipeline's events did not show; worker log:\n{worker.output()}") from None

    page.click(f'article.service[data-service="{target}"] button[data-action="restart_deployment"]')
    page.wait_for_selector("#action-dialog[open]")
    assert target in page.inner_text("#dialog-lead")
    page.select_option("#f-target", "gke")
    page.fill("#f-cluster", "prod")
    page.fill("#f-reason", "clearing a stuck connection pool")
    page.click("#dialog-confirm")
    page.wait_for_selector("#action-dialog[open]", state="detached", timeout=15_000)

    row = f'#action-log tr[data-service="{target}"]'
    page.wait_for_selector(f'{row}[data-status="pending"]', timeout=PIPELINE_MS)
    approval = f'#approval-queue li.approval:has-text("{target}")'
    page.wait_for_selector(approval)
    page.once("dialog", lambda dialog: dialog.accept())  # the "Approve ...?" confirmation
    page.click(f"{approval} >> text=Approve")
    page.wait_for_selector(f'{row}[data-status="dry_run"]', timeout=PIPELINE_MS)
    page.wait_for_selector(approval, state="detached", timeout=30_000)
    text = page.inner_text(row)
    assert "restart_deployment" in text and "dry run" in text and "manual:browser" in text, text
