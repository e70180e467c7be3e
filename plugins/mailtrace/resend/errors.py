"""The resend's exceptions: which failures stop the run at once and which are retried."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class ResendError(RuntimeError):
    """The run cannot go on; the message says why and what to do."""


class SystemicRefusal(AirflowFailException, ResendError):
    """The provider refused the resend as a whole (key revoked, template unknown, sender not verified,
    sandbox): every other email would be refused the same way, and so would a retry.

    The chunk stops at the first such answer and fails without retries; its rows stay claimed, so once
    the cause is fixed, clearing the failed tasks (or triggering again) sends them.
    """


class ResendRefused(AirflowFailException, ResendError):
    """Every email of the run was refused one by one: nothing was sent, and a retry would change nothing."""


class ResendInputError(AirflowFailException, ResendError, ValueError):
    """A parameter, the uploaded list or a setting is wrong: the task fails at once, without retries.

    A retry would read the same input and fail the same way, only later, while (one run at a time) the
    corrected run waits behind it. The message says what to fix.
    """
