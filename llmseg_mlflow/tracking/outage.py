"""One answer to "is the tracking server away?", for an exception here or a failure reason from another process.

The sweep retries reads while the server is briefly away (sweep/jobs.py) and runs a job again when its
worker failed for that reason (sweep/worker.py, sweep/run.py); check_tracking_server (tracking/runs.py)
words its error so the reason string still says so after crossing a process boundary.
"""

from __future__ import annotations

import re

# check_tracking_server's wording: a reason string carries no exception type to test.
OUTAGE_MARKER = "does not answer"

# What requests/urllib3/MLflow put in the message when the server cannot be reached or is restarting
# ("Connection refused", "ConnectionError", "Max retries exceeded", "Read timed out", a gateway's 502/503).
# The status codes need a word of their own: a run id or a shape may contain "503" by chance.
_SIGNS = re.compile(
    "|".join(["Connection", "connection", "Max retries", "timed out", re.escape(OUTAGE_MARKER), r"\b50[23]\b"])
)


# MLflow's client after its retries, when the server is up but fails the request: it answered 500 to every
# try, or it aborted an upload it could not store (the client then only sees the connection reset). A full
# or read-only artifact store, a broken database: waiting would not help, so this is not an outage.
_REQUEST = re.compile(r"API request to (\S+) failed with exception")
_ALL_500 = "too many 500 error responses"
_ARTIFACT_PATH = re.compile(r"/mlflow-artifacts/artifacts/[^/]+/[^/]+/artifacts/(\S+)")


def server_error(failure: BaseException | str, server_answers: bool = False) -> str | None:
    """A clear line when the tracking server is up but failed a request, else None: it answered HTTP 500 to
    every try, or (server_answers: its /health answers now) it aborted an artifact upload."""
    text = str(failure)
    found = _REQUEST.search(text)
    if found is None:
        return None
    artifact = _ARTIFACT_PATH.search(found.group(1))
    how = "HTTP 500 on every try" if _ALL_500 in text else "the server aborted the upload" if server_answers else None
    if how is None or (artifact is None and _ALL_500 not in text):
        return None
    if artifact:
        return (
            f"the tracking server could not store the artifact {artifact.group(1)} ({how}): "
            "its artifact store is likely full or read-only; the server's log has the cause"
        )
    return f"the tracking server failed on {found.group(1)} ({how}); the server's log has the cause"


def is_tracking_outage(failure: BaseException | str | None) -> bool:
    """True when an exception (or any exception in its chain) or a reason string means the server is away."""
    if failure is None:
        return False
    if isinstance(failure, str):
        return _SIGNS.search(failure) is not None and server_error(failure) is None
    if server_error(failure):
        return False
    seen: set[int] = set()
    exc: BaseException | None = failure
    # MlflowException wraps requests' error, which wraps urllib3's, which wraps the socket's: look at each.
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (ConnectionError, TimeoutError)) or is_tracking_outage(f"{type(exc).__name__}: {exc}"):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
