"""The bridge over a SASL_SSL listener (SCRAM-SHA-512, a CA made for the test) of a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bridge.errors import KafkaUnavailable
from bridge.kafka.admin import ensure_topics
from bridge.kafka.config import check_connection
from bridge.ops.localkafka import LocalKafka
from bridge.settings import Settings, child_env
from tests.fixtures.partner import FakePartner
from tests.fixtures.stack import running_stack, stack_settings

pytestmark = pytest.mark.integration
# Its own broker (PLAINTEXT port, controller port + 1, SASL_SSL port + 2), next to the suite's one.
PORT = int(os.environ.get("BRIDGE_TEST_SECURE_PORT", "29400"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def secure_broker(broker: object) -> Iterator[LocalKafka]:
    # Depends on the session broker so that the classpath is already fetched into the cache.
    import shutil

    local = LocalKafka(Settings().cache_dir, PORT, sasl_ssl_port=PORT + 2)
    local.stop()
    shutil.rmtree(local.home, ignore_errors=True)
    local.start()
    yield local
    local.stop()
    shutil.rmtree(local.home, ignore_errors=True)


@pytest.fixture
def secure_settings(secure_broker: LocalKafka, unique: object) -> Settings:
    token = os.urandom(5).hex()
    return secure_broker.client_settings(topic_prefix=f"sec-{token}.", app_id=f"sec-{token}",
                                         partitions=2, mode="dev")


def test_pipeline_end_to_end_over_sasl_ssl(secure_settings: Settings, fake_partner: FakePartner) -> None:
    assert secure_settings.kafka_security_protocol == "SASL_SSL"
    with running_stack(stack_settings(secure_settings)) as stack:
        stack.partner(fake_partner.url("/ok/secure"))
        stack.worker()
        for i in range(3):
            stack.push(f"sec-{i}")
        got = fake_partner.wait_ok("/ok/secure", 3)
        assert sorted(r.json()["params"]["events"][0]["eventId"] for r in got) == ["sec-0", "sec-1", "sec-2"]


def test_wrong_password_is_a_clear_error_at_start_up(secure_settings: Settings) -> None:
    wrong = secure_settings.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
    with pytest.raises(KafkaUnavailable, match="refused user 'bridge' \\(SCRAM-SHA-512\\)"):
        check_connection(wrong)
    with pytest.raises(KafkaUnavailable, match="invalid credentials"):
        ensure_topics(wrong)
    env = child_env(wrong.model_copy(update={
        "mode": "prod", "admin_token": SecretStr("t"),
        "secret_key": SecretStr("x" * 43 + "=")}))
    api = subprocess.run([sys.executable, "-m", "bridge", "api", "--port", "0"], env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert api.returncode == 1
    assert "refused user 'bridge'" in api.stderr and "BRIDGE_KAFKA_SASL_PASSWORD" in api.stderr
    assert "not-the-password" not in api.stderr + api.stdout


def test_plaintext_client_against_the_tls_listener_is_refused(secure_settings: Settings) -> None:
    # The broker's certificate is signed by the test CA, which the system store does not hold.
    untrusted = secure_settings.model_copy(update={"kafka_ssl_ca_file": None})
    with pytest.raises(KafkaUnavailable, match="refused"):
        check_connection(untrusted)


def test_credentials_never_printed(secure_settings: Settings) -> None:
    password = secure_settings.kafka_sasl_password
    assert password is not None
    secret = password.get_secret_value()
    extra = secure_settings.model_copy(update={"kafka_extra": {"sasl.oauthbearer.client.secret": "s3cret"}})
    for text in (repr(secure_settings), str(secure_settings), repr(extra), str(extra)):
        assert secret not in text and "s3cret" not in text
