"""Replay job records: the ownership rule of the views, and a job's round trip through its record."""

from __future__ import annotations

from bridge.feeds import replay as rp
from bridge.feeds.replay_jobs import _progress_of, _request_dict, _request_of
from bridge.registry.view import job_record_applies


def job(owner: str, epoch: int, state: str = "running", **more: object) -> dict[str, object]:
    return {"owner": owner, "epoch": epoch, "state": state, **more}


def test_the_owner_updates_its_job() -> None:
    assert job_record_applies(None, job("a", 0))
    assert job_record_applies(job("a", 0), job("a", 0, scanned=5))
    assert job_record_applies(job("a", 0), job("a", 0, "done"))


def test_the_first_claim_of_an_epoch_wins_and_the_old_owner_is_ignored() -> None:
    current = job("a", 0)
    assert job_record_applies(current, job("b", 1))
    current = job("b", 1)
    assert not job_record_applies(current, job("c", 1))  # a later claim of the same epoch
    assert not job_record_applies(current, job("a", 0, "done"))  # the owner that was taken over
    assert not job_record_applies(current, job("c", 3))  # epochs are claimed one at a time


def test_a_finished_job_is_never_claimed() -> None:
    for state in ("done", "cancelled", "failed"):
        assert not job_record_applies(job("a", 0, state), job("b", 1))


def test_request_and_progress_survive_the_record() -> None:
    request = rp.ReplayRequest("p-1", 100.5, {0: 3, 2: 9}, 200.0, frozenset({196883, 131330}), True, 4.0)
    assert _request_of({"partnerId": "p-1", "dryRun": True, "request": _request_dict(request)}) == request
    progress = rp.ReplayProgress("j1", "p-1", False, 40, scanned=7, enqueued=5)
    progress.by_event_type[196883] = 5
    assert _progress_of(progress.as_dict()) == progress
