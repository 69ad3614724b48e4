"""The management service's operations endpoints: health, readiness of database and Kafka,
Prometheus metrics."""

from __future__ import annotations

from tests.integration.management_support import People, Stack, make_team


async def test_health_readiness_and_metrics(stack: Stack) -> None:
    """/healthz and /readyz answer 200 with both dependencies up; /metrics counts our work."""
    http = stack.api.http
    async with http.get(f"{stack.url}/healthz") as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-ID"]
    async with http.get(f"{stack.url}/readyz") as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["data"] == {"status": "ready"}
    await make_team(stack, await People.register(stack))
    async with http.get(f"{stack.url}/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200
    assert 'management_team_changes_total{kind="create"} 1.0' in text
    assert 'management_membership_events_total{change="added",outcome="ok"} 5.0' in text
    assert (
        'http_requests_total{method="POST",route="/v1/teams/{team_id}/members",status="201"}'
        in (text)
    )
