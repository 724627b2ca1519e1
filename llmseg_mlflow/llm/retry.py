"""Bounded retries with exponential backoff for LLM API calls, shared by every SDK-backed provider.

The SDKs' own retries are switched off (max_retries=0) so that retries are counted and logged here.
call_with_retries knows no SDK: a classify function tells it what a failure means; sdk_classifier builds
one for the openai and anthropic SDKs, which share one exception hierarchy.
Environment:
  LLMSEG_LLM_MAX_RETRIES   retries after the first attempt (default 5; 0 = one attempt only)
  LLMSEG_LLM_RETRY_BASE_S  first backoff delay in seconds, doubled per retry, with jitter (default 1.0)
  LLMSEG_LLM_TIMEOUT_S     per-request timeout in seconds (default 600)
A server's Retry-After header (seconds, or retry-after-ms) replaces the backoff delay, capped at 60 s.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Generic, TypeVar

from llmseg_mlflow.llm.base import LLMError

T = TypeVar("T")

MAX_RETRIES_ENV = "LLMSEG_LLM_MAX_RETRIES"
RETRY_BASE_ENV = "LLMSEG_LLM_RETRY_BASE_S"
TIMEOUT_ENV = "LLMSEG_LLM_TIMEOUT_S"
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_DELAY_S = 60.0


@dataclass(frozen=True)
class Failure:
    """What a failed attempt means: whether to try again, why, and how long the server asked us to wait."""

    retryable: bool
    reason: str  # short and stable, for logs: "HTTP 429", "timeout", "connection error"
    message: str  # the provider's own words
    retry_after_s: float | None = None
    hint: str = ""  # what the user can do, for failures that will not go away by waiting


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries, and how long to wait before each."""

    max_retries: int = 5
    base_s: float = 1.0
    max_delay_s: float = MAX_DELAY_S

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The policy set by LLMSEG_LLM_MAX_RETRIES and LLMSEG_LLM_RETRY_BASE_S."""
        return cls(
            max_retries=int(_env_number(MAX_RETRIES_ENV, 5, integer=True)), base_s=_env_number(RETRY_BASE_ENV, 1.0)
        )

    def delay_s(self, retry: int, retry_after_s: float | None) -> float:
        """Seconds to wait before retry number `retry` (1-based): the server's wish, else backoff with jitter."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_delay_s)
        backoff = min(self.base_s * 2 ** (retry - 1), self.max_delay_s)
        return backoff * (1 - 0.25 * random.random())  # jitter keeps parallel runs from retrying in step


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A call that succeeded, possibly after retries."""

    result: T
    retries: int
    retry_reasons: list[str] = field(default_factory=list)
    latency_s: float = 0.0  # of the successful attempt
    waited_s: float = 0.0  # total backoff sleep before it


Classify = Callable[[BaseException], Failure | None]  # None: not an API failure, let it propagate


def call_with_retries(
    fn: Callable[[], T],
    classify: Classify,
    *,
    what: str,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[T]:
    """Call fn until it succeeds; retry what classify calls retryable, raise LLMError for the rest.

    classify returns None for exceptions that are not API failures (programming errors): they propagate as is.
    """
    policy = policy or RetryPolicy.from_env()
    reasons: list[str] = []
    waited = 0.0
    while True:
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 (classify decides; unknown ones are re-raised)
            failure = classify(exc)
            if failure is None:
                raise
            attempts = len(reasons) + 1
            if not failure.retryable:
                hint = f"; {failure.hint}" if failure.hint else ""
                raise LLMError(f"{what} was refused ({failure.reason}): {failure.message}{hint}") from exc
            if len(reasons) >= policy.max_retries:
                raise LLMError(
                    f"{what} failed after {attempts} attempt{'s' if attempts > 1 else ''} "
                    f"({', '.join(reasons + [failure.reason])}); last error: {failure.message}. "
                    f"Try again later, or allow more retries with {MAX_RETRIES_ENV} (now {policy.max_retries})"
                    + (f" or a longer {TIMEOUT_ENV}" if failure.reason == "timeout" else "")
                ) from exc
            reasons.append(failure.reason)
            delay = policy.delay_s(len(reasons), failure.retry_after_s)
            waited += delay
            sleep(delay)
            continue
        return Outcome(result, len(reasons), reasons, time.perf_counter() - start, waited)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a response's retry-after-ms or Retry-After header (seconds or HTTP date) asks to wait."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)


def status_failure(status: int, message: str, headers: Mapping[str, str] | None, *, key_env: str | None) -> Failure:
    """Classify an HTTP error status: 408/409/429/5xx/529 retryable, other 4xx final with a hint."""
    retryable = status in RETRYABLE_STATUS or status >= 500
    hints = {
        401: f"check that {key_env} holds a valid API key" if key_env else "check the API key",
        403: "the key may lack access to this model",
        404: "check the model's api_model and base_url in the catalog (or your models file)",
        400: "the request was rejected as sent; check the model's settings in the catalog",
    }
    return Failure(
        retryable, f"HTTP {status}", message, retry_after_seconds(headers) if retryable else None, hints.get(status, "")
    )


def sdk_classifier(sdk: ModuleType, *, key_env: str | None, timeout_s: float) -> Classify:
    """A classify function for the openai or anthropic SDK (both share one exception hierarchy)."""

    def classify(exc: BaseException) -> Failure | None:
        if isinstance(exc, sdk.APITimeoutError):
            return Failure(True, "timeout", f"no answer within {timeout_s:g} s")
        if isinstance(exc, sdk.APIConnectionError):
            cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            return Failure(True, "connection error", f"{exc}{cause}")
        if isinstance(exc, sdk.APIStatusError):
            return status_failure(exc.status_code, _provider_message(exc), exc.response.headers, key_env=key_env)
        return None

    return classify


def _provider_message(exc: Any) -> str:
    """The error message from the provider's JSON body ({"error": {"message": ...}} or flat), else the text."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(exc.message)


def request_timeout_s() -> float:
    """Per-request timeout in seconds from LLMSEG_LLM_TIMEOUT_S (default 600)."""
    value = _env_number(TIMEOUT_ENV, 600.0)
    if value == 0:
        raise LLMError(f"{TIMEOUT_ENV}=0 would time out every request; set it to seconds > 0, e.g. 600")
    return value


def _env_number(name: str, default: float, *, integer: bool = False) -> float:
    """A non-negative number from the environment; LLMError naming the variable when it is not one."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = -1
    if not value >= 0:  # also rejects nan
        kind = "a whole number" if integer else "a number"
        raise LLMError(f"{name}={text!r} is not {kind} >= 0; set e.g. {name}={default:g}")
    return value
