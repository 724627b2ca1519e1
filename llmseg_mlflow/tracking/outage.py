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


# MLflow's client after its retries when the server kept answering 500: up, but failing (a full or
# read-only artifact store, a broken database). Not an outage: waiting would not help.
_SERVER_ERROR = re.compile(r"API request to (\S+) failed with exception .*too many 500 error responses")
_ARTIFACT_PATH = re.compile(r"/mlflow-artifacts/artifacts/[^/]+/[^/]+/artifacts/(\S+)")


def server_error(failure: BaseException | str) -> str | None:
    """A clear line when the tracking server answered HTTP 500 to every try of a request, else None."""
    found = _SERVER_ERROR.search(str(failure))
    if found is None:
        return None
    artifact = _ARTIFACT_PATH.search(found.group(1))
    if artifact:
        return (
            f"the tracking server could not store the artifact {artifact.group(1)} (HTTP 500 on every try): "
            "its artifact store is likely full or read-only; the server's log has the cause"
        )
    return f"the tracking server failed on {found.group(1)} (HTTP 500 on every try); the server's log has the cause"


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
