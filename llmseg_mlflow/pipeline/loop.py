"""The attempt loop: prompt -> code -> run; while it fails, feed the error back verbatim and run the fix."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.llm.base import Message, Provider, RecordingEnded, Reply
from llmseg_mlflow.llm.tracing import traced_complete
from llmseg_mlflow.pipeline import prompt as prompt_registry
from llmseg_mlflow.pipeline.errors import ExecError, error_text, recorded_error, same_error
from llmseg_mlflow.pipeline.execute import Attempt, Budget, execute
from llmseg_mlflow.pipeline.extract import NoCodeError, extract_files, merge_reply
from llmseg_mlflow.pipeline.sandbox import Limits
from llmseg_mlflow.pipeline.stuck import LoopWatch
from llmseg_mlflow.pipeline.workspace import Workspace
from llmseg_mlflow.tracking.runs import RunLogger, RunTree
from llmseg_mlflow.tracking.schema import DISK_QUOTA, NO_CODE, Kind, Status

PREFLIGHT_EPOCHS, PREFLIGHT_BATCHES = 1, 2
# The preflight again, 1 epoch with the full run's batch cap (none unless --max-batches), after it failed
# under its own 2-batch cap.
PREFLIGHT_RECHECK = "preflight-recheck"


@dataclass(frozen=True)
class LoopConfig:
    """How hard the loop tries and what each execution may use."""

    limits: Limits
    max_fix_rounds: int = 10
    epochs: int | None = None  # None: the LLM's choice
    max_batches: int | None = None  # None: no cap
    preflight: bool = True
    preflight_timeout_s: float = 900.0
    unsafe_no_sandbox: bool = False
    stuck_after: int = 3  # the same error this many times in a row is a loop (0: never)
    loop_hint: str | None = None  # None: a loop ends the pipeline; else one supplementary message ("default")
    llm_name: str = "llm"  # span name of each call's trace, e.g. "anthropic:claude-sonnet-4-20250514"


@dataclass
class LoopOutcome:
    """Where the loop ended: the working attempt (if any), the code, the conversation and its cost."""

    status: Status
    files: dict[str, str]
    messages: list[Message]
    errors: Counter = field(default_factory=Counter)
    fix_rounds: int = 0
    success: Attempt | None = None
    preflight: Attempt | None = None
    usage: Counter = field(default_factory=Counter)  # tokens_in, tokens_out, tokens_reasoning, calls
    cost_usd: float = 0.0
    interventions: int = 0  # supplementary messages sent after a repeated error (the paper's additional interactions)
    replay_compared: int = 0  # fix replies replayed from an imported chat whose user turn was compared
    replay_divergences: int = 0  # ... of which the person had pasted another error than the harness sent
    preflight_cap_errors: int = 0  # preflight failures the batch cap alone caused (not counted, not sent)


def _log_call(run: RunLogger, reply: Reply) -> None:
    """Tokens, latency and cost of one LLM call; the reply and its reasoning as artifacts."""
    run.metrics(
        {
            "tokens_in": reply.tokens_in,
            "tokens_out": reply.tokens_out,
            "tokens_reasoning": reply.tokens_reasoning,
            "latency_s": reply.latency_s,
            "cost_usd": reply.cost_usd,
        }
    )
    run.tags({"cache_hit": str(reply.cached).lower()})
    if "retries" in reply.raw:
        run.metrics({"llm_retries": reply.raw["retries"]})
    if reply.raw:
        run.json(reply.raw, "llm_response.json")
        run.params({f"request.{k}": v for k, v in reply.raw.get("request", {}).items()})
    run.text(reply.text, "reply.md")
    if reply.reasoning:
        run.text(reply.reasoning, "reasoning.md")


def _compare_recorded(run: RunLogger, reply: Reply, error: ExecError) -> bool | None:
    """Replaying an imported chat: tag whether the person had pasted another error than the harness just sent."""
    path = reply.raw.get("recorded_user_turn")
    if not path or not Path(path).is_file():
        return None
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    run.text(text, "recorded_user_turn.md")
    recorded = recorded_error(text)
    diverged = recorded is None or not same_error(recorded, (error.error_type, error.message))
    run.tags({"replay_divergence": str(diverged).lower()})
    run.params({"recorded_error": error_text(recorded)[:500] if recorded else "(no error in the recorded turn)"})
    return diverged


def _no_code(exc: NoCodeError) -> ExecError:
    text = str(exc)
    feedback = text if text.startswith(NO_CODE) else f"{NO_CODE}: {text}"
    return ExecError(NO_CODE, text, feedback)


class AttemptLoop:
    """Runs one conversation with one LLM until its pipeline trains or the fix rounds run out."""

    def __init__(
        self,
        tree: RunTree,
        provider: Provider,
        data: PreparedDataset,
        ws: Workspace,
        config: LoopConfig,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.tree, self.provider, self.data, self.ws, self.cfg = tree, provider, data, ws, config
        self.say = progress
        self.out = LoopOutcome(Status.RUNNING, {}, [])
        self.watch = LoopWatch(config.stuck_after, config.loop_hint)

    def _ask(self, content: str, run: RunLogger) -> Reply:
        self.out.messages.append(Message("user", content))
        reply = traced_complete(
            self.provider,
            list(self.out.messages),
            name=self.cfg.llm_name,
            run_id=run.run_id,
            experiment_id=self.tree.experiment_id,
        )
        self.out.messages.append(Message("assistant", reply.text))
        for key, value in (
            ("tokens_in", reply.tokens_in),
            ("tokens_out", reply.tokens_out),
            ("tokens_reasoning", reply.tokens_reasoning),
            ("calls", 1),
        ):
            self.out.usage[key] += value
        self.out.cost_usd += reply.cost_usd
        return reply

    def _adopt(self, files: dict[str, str], message: str, run: RunLogger) -> None:
        """Commit new code to the history and record it on the run that produced it."""
        _, diff = self.ws.commit(files, message)
        changed = {n: t for n, t in files.items() if self.out.files.get(n) != t}
        self.out.files = files
        run.files(changed, "code")
        if diff:
            run.text(diff, "fix.diff")

    def resume(self, messages: list[Message], files: dict[str, str]) -> None:
        """Continue an earlier conversation (refine): its messages so far and the code it is at."""
        self.out.messages, self.out.files = list(messages), dict(files)

    def generate(self, prompt: str, prompt_uri: str) -> ExecError | None:
        """The first call: the prompt in, four files out (or a NoCodeError to feed back).

        In a resumed conversation the reply may hold only the files it changes: they replace those files."""
        with self.tree.child(Kind.GENERATION, "generation", {"prompt_uri": prompt_uri}) as run:
            prompt_registry.link(self.tree.client, prompt_uri, run.run_id)
            self.say("asking the LLM for the pipeline" if not self.out.files else "asking the LLM to refine")
            run.text(prompt, "prompt.md")
            reply = self._ask(prompt, run)
            _log_call(run, reply)
            try:
                files = merge_reply(self.out.files, reply.text) if self.out.files else extract_files(reply.text)
                self._adopt(files, "generation: first reply", run)
            except NoCodeError as exc:
                run.tags({"no_code": "true"})
                return _no_code(exc)
        return None

    def _run_once(self, number: int) -> Attempt:
        """Preflight (1 epoch, 2 batches) then the full run; the first failure ends the attempt."""
        limits = self.cfg.limits
        if self.cfg.preflight:
            quick = replace(limits, timeout_s=min(limits.timeout_s, self.cfg.preflight_timeout_s))
            self.say(f"attempt {number}: preflight")
            pre = self._execute(number, "preflight", Budget(quick, PREFLIGHT_EPOCHS, PREFLIGHT_BATCHES))
            full_cap = self.cfg.max_batches
            if not pre.ok and pre.cap_cut and (full_cap is None or full_cap > PREFLIGHT_BATCHES):
                # The failure may be the cap's own (code that shows 5 test batches gets 2): only an error the
                # code also raises with the batches the full run will give it is the code's, counted and sent.
                self.say(f"attempt {number}: preflight failed after its batch cap cut a loader short; rechecking")
                pre = self._execute(number, PREFLIGHT_RECHECK, Budget(quick, PREFLIGHT_EPOCHS, full_cap))
                self.out.preflight_cap_errors += int(pre.ok)
            if not pre.ok:
                return pre
            self.out.preflight = pre
        self.say(f"attempt {number}: training")
        return self._execute(number, "full", Budget(limits, self.cfg.epochs, self.cfg.max_batches))

    def _execute(self, number: int, phase: str, budget: Budget) -> Attempt:
        """Run the current code once in the sandbox."""
        return execute(self.ws, self.out.files, self.data, number, phase, budget, self.cfg.unsafe_no_sandbox, self.say)

    def _debug(self, iteration: int, error: ExecError, attempt: Attempt | None) -> ExecError | None:
        """Record one failure; if rounds remain, send its text verbatim and adopt the fix."""
        self.out.errors[error.error_type] += 1
        verdict = self.watch.see(error)
        answer = iteration <= self.cfg.max_fix_rounds and verdict != "stop"
        tags = {
            "iteration": iteration,
            "error_type": error.error_type,
            "phase": attempt.phase if attempt else "extraction",
            "answered": str(answer).lower(),
        }
        if attempt is not None and attempt.cap_cut:  # --max-batches stopped a loader short before this error
            tags["batch_cap_cut"] = "true"
        if verdict == "stop":
            tags["stuck_loop"] = "true"
            self.out.status = Status.STUCK_LOOP
        feedback = error.feedback
        if verdict == "intervene" and answer:
            tags["intervention"] = "true"
            self.out.interventions += 1
            feedback = f"{error.feedback}\n\n{self.watch.hint_text()}"
        with self.tree.child(Kind.DEBUG, f"debug-{iteration}", tags) as run:
            run.text(error.feedback, "traceback.txt")
            if feedback != error.feedback:
                run.text(self.watch.hint_text(), "loop_hint.md")
            run.params({"error_message": error.message[:500]})
            if attempt is not None:
                run.metrics(
                    {
                        "duration_s": attempt.result.duration_s,
                        "peak_rss_gb": attempt.result.peak_rss_gb,
                        "peak_memory_gb": attempt.result.peak_memory_gb,
                    }
                )
                run.artifact(attempt.result.stdout_path, "logs")
                run.artifact(attempt.result.stderr_path, "logs")
            if not answer:
                return None
            self.say(
                f"fix round {iteration}: {error.error_type}: {error.message[:80]}"
                + (" (repeated: supplementary message sent)" if feedback != error.feedback else "")
            )
            try:
                reply = self._ask(feedback, run)
            except RecordingEnded as exc:  # a replayed chat ends here, as it did for its author: a result
                self.out.messages.pop()  # the fix request no reply answered
                run.tags({"answered": "false", "recording_ended": "true"})
                self.out.status = Status.GAVE_UP
                self.say(f"the recording ends here: {exc}")
                return None
            self.out.fix_rounds = iteration
            _log_call(run, reply)
            diverged = _compare_recorded(run, reply, error)
            if diverged is not None:
                self.out.replay_compared += 1
                self.out.replay_divergences += int(diverged)
            try:
                merged = (
                    merge_reply(self.out.files, reply.text, error.feedback)
                    if self.out.files
                    else extract_files(reply.text)
                )
            except NoCodeError as exc:
                run.tags({"no_code": "true"})
                return _no_code(exc)
            self._adopt(merged, f"fix {iteration}: {error.error_type}", run)
        return None

    def run(self, prompt: str, prompt_uri: str) -> LoopOutcome:
        """Drive the conversation to a working pipeline or give up."""
        pending = self.generate(prompt, prompt_uri)
        iteration, number = 0, 0
        while True:
            attempt = None
            if pending is None:
                number += 1
                attempt = self._run_once(number)
                if attempt.ok:
                    self.out.success, self.out.status = attempt, Status.SUCCEEDED
                    return self.out
                pending = attempt.error
            assert pending is not None  # generate() returned an error, or the attempt failed (not ok) with one
            iteration += 1
            last = pending
            pending = self._debug(iteration, pending, attempt)
            if self.out.status == Status.GAVE_UP:  # the replayed recording ended
                return self.out
            if self.out.status == Status.STUCK_LOOP:
                self.say(f"the same {last.error_type} {self.cfg.stuck_after} times in a row: stuck in a loop")
                return self.out
            if iteration > self.cfg.max_fix_rounds:
                self.out.status = (
                    Status.NO_CODE
                    if last.error_type == NO_CODE and not self.out.files
                    else Status.DISK_QUOTA
                    if last.error_type == DISK_QUOTA
                    else Status.GAVE_UP
                )
                return self.out


def chat_markdown(messages: list[Message]) -> str:
    """The conversation as readable Markdown."""
    parts = []
    for i, m in enumerate(messages, 1):
        parts.append(f"## {i}. {m.role}\n\n{m.content}\n")
    return "\n".join(parts)


def chat_json(messages: list[Message]) -> str:
    """The conversation as JSON (role, content)."""
    return json.dumps([{"role": m.role, "content": m.content} for m in messages], indent=2)
