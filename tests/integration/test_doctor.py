"""`event-bridge doctor`: the seed FAQ's troubleshooting answered by a tool (B8)."""

from __future__ import annotations

import pytest

from bridge.settings import Settings
from tests.fixtures.cli import run_cli
from tests.fixtures.partner import FakePartner, closed_port
from tests.fixtures.stack import ADMIN, running_stack, stack_settings

pytestmark = pytest.mark.integration


def test_doctor_names_each_faq_cause(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=1)
    with running_stack(settings) as stack:
        broken = stack.partner(f"http://127.0.0.1:{closed_port()}/cb", types=[131588], subType=1,
                               eventLvl=[3])
        healthy = stack.partner(fake_partner.url("/ok/doc"), types=[196883])
        stack.worker()
        stack.push("doc-1")
        fake_partner.wait_ok("/ok/doc", 1)

        checks = {c["question"]: c for c in stack.http.get(f"/admin/v1/partners/{broken}/doctor",
                                                           headers=ADMIN).json()["checks"]}
        by_word = {word: next(c for q, c in checks.items() if word in q)
                   for word in ("subType", "eventLvl", "statuses", "reach", "receive")}
        assert by_word["subType"]["verdict"] == "warn" and "subType 2" in by_word["subType"]["detail"]
        assert by_word["eventLvl"]["verdict"] == "warn" and "[3]" in by_word["eventLvl"]["detail"]
        assert by_word["statuses"]["verdict"] == "warn" and "4 linkage update" in by_word["statuses"]["detail"]
        assert by_word["reach"]["verdict"] == "fail" and "TCP connect" in by_word["reach"]["detail"]
        assert by_word["receive"]["verdict"] == "warn" and "131588: 0" in by_word["receive"]["detail"]

        good = {c["question"]: c for c in stack.http.get(f"/admin/v1/partners/{healthy}/doctor",
                                                         headers=ADMIN).json()["checks"]}
        assert all(c["verdict"] != "fail" for c in good.values())
        answered = next(c for q, c in good.items() if "answer" in q)
        assert "delivered" in answered["detail"]

        cli = run_cli(settings, "doctor", broken)
        assert cli.returncode == 1 and "FAIL" in cli.stdout and "subType" in cli.stdout
