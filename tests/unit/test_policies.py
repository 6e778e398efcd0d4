"""Retry delays and attempt limits."""

from __future__ import annotations

from domain.policies import Backoff, RetryPolicy


def test_a_fixed_backoff_waits_the_same_before_every_retry() -> None:
    policy = RetryPolicy(max_retries=3, retry_delay_seconds=10)

    assert [policy.delay_before(a) for a in (2, 3, 4)] == [10, 10, 10]


def test_an_exponential_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(
        max_retries=9, retry_delay_seconds=5, backoff=Backoff.EXPONENTIAL, max_delay_seconds=30
    )

    assert [policy.delay_before(a) for a in (2, 3, 4, 5, 6)] == [5, 10, 20, 30, 30]


def test_attempts_stop_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)

    assert [policy.allows(a) for a in (1, 2, 3)] == [True, True, False]


def test_the_stored_form_round_trips() -> None:
    policy = RetryPolicy(max_retries=2, backoff=Backoff.EXPONENTIAL)

    assert RetryPolicy.from_dict(policy.to_dict()) == policy
