"""The LLM judge: an OpenAI-compatible chat-completions endpoint asked for an Arena-Hard-style verdict.

The judge reads the question (and a reference answer when the prompt row has one), answer A and answer B, reasons,
and ends with exactly one label ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]`` or ``[[B>>A]]``. Parsing is
strict (`parse_verdict`): no label, an unknown label or two different labels is a malformed verdict, recorded as a
failed judgement, never a tie.

Calls go through the standard library (no client package): a timeout per call, retries with exponential backoff on
timeouts, connection errors, HTTP 429 and 5xx (other HTTP errors fail at once), and at most `concurrency` calls in
flight (the arena's thread pool). Tokens and cost are recorded per call from the response's ``usage``.

The API key is read from the environment variable whose NAME the config gives, sent only in the Authorization
header, and never stored on anything that is logged (the judge's identity is its model name and prompt version).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from harness.arena.verdicts import VERDICTS, Judgement
from harness.errors import HarnessError

SYSTEM_PROMPT = """\
Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the \
user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job is to \
evaluate which assistant's answer is better.

Begin your evaluation by generating your own answer to the prompt (or by reading the reference answer when one is \
given). You must provide your answers before judging any answers. When evaluating the assistants' answers, compare \
both assistants' answers with yours. You must identify and correct any mistakes or inaccurate information.

Then consider if the assistant's answers are helpful, relevant, and concise. Avoid any position biases and ensure \
that the order in which the responses were presented does not influence your decision. Do not allow the length of \
the responses to influence your evaluation.

After providing your explanation, you must output only one of the following choices as your final verdict with a \
label:

1. Assistant A is significantly better: [[A>>B]]
2. Assistant A is slightly better: [[A>B]]
3. Tie, relatively the same: [[A=B]]
4. Assistant B is slightly better: [[B>A]]
5. Assistant B is significantly better: [[B>>A]]

Example output: "My final verdict is tie: [[A=B]]"."""

USER_TEMPLATE = """\
<|User Prompt|>
{question}
{reference}
<|The Start of Assistant A's Answer|>
{answer_a}
<|The End of Assistant A's Answer|>

<|The Start of Assistant B's Answer|>
{answer_b}
<|The End of Assistant B's Answer|>"""

PROMPT_VERSION = hashlib.sha256((SYSTEM_PROMPT + USER_TEMPLATE).encode()).hexdigest()[:12]
_LABEL = re.compile(r"\[\[([^\[\]]{1,12})\]\]")


class MalformedVerdict(ValueError):
    """The judge's reply holds no single valid verdict label."""


def parse_verdict(text: str) -> str:
    """The one verdict label in a judge's reply.

    Args:
        text: the reply.

    Returns:
        One of ``A>>B, A>B, A=B, B>A, B>>A``.

    Raises:
        MalformedVerdict: no ``[[label]]``, a label off the scale, or two different labels.
    """
    labels = {m.strip() for m in _LABEL.findall(text or "")}
    if not labels:
        raise MalformedVerdict("no [[verdict]] label in the reply")
    bad = sorted(labels - set(VERDICTS))
    if bad:
        raise MalformedVerdict(f"label(s) off the scale: {', '.join(bad)}")
    if len(labels) > 1:
        raise MalformedVerdict(f"conflicting labels: {', '.join(sorted(labels))}")
    return labels.pop()


def safe_url(url: str) -> str:
    """`url` without any user:password part, for records."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class LLMJudge:
    """Arena-Hard-style verdicts from an OpenAI-compatible chat-completions endpoint."""

    name = "llm"

    def __init__(
        self,
        base_url: str | None,
        model: str | None,
        api_key_env: str | None,
        *,
        max_tokens: int = 1024,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        concurrency: int = 4,
        input_usd_per_mtok: float = 0.0,
        output_usd_per_mtok: float = 0.0,
    ) -> None:
        if not base_url or not model:
            raise HarnessError(
                "the llm judge needs an endpoint: set arena.llm.base_url and arena.llm.model "
                "(or --judge-base-url URL --judge-model NAME)"
            )
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise HarnessError(f"config key arena.llm.base_url: {safe_url(base_url)!r} is not an http(s):// URL")
        if not api_key_env or not os.environ.get(api_key_env):
            raise HarnessError(
                f"the llm judge reads its API key from the environment variable {api_key_env!r} "
                "(arena.llm.api_key_env / --judge-api-key-env), which is not set; for a local server without "
                "keys set it to any value"
            )
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env = model, api_key_env
        self.max_tokens, self.timeout_s = max_tokens, timeout_s
        self.retries, self.backoff_s, self.concurrency = retries, backoff_s, max(1, concurrency)
        self.prices = (input_usd_per_mtok, output_usd_per_mtok)
        self.identity = f"llm:{model}"
        self.version = PROMPT_VERSION
        self.endpoint = safe_url(base_url)

    def __repr__(self) -> str:  # never the key
        return f"LLMJudge(model={self.model!r}, endpoint={self.endpoint!r})"

    def check(self, prompts: list[dict[str, Any]]) -> None:
        """Any prompt set will do."""

    def messages(self, row: dict[str, Any], answer_a: str, answer_b: str) -> list[dict[str, str]]:
        """The chat sent to the judge."""
        from harness.arena.prompts import question

        ref = row.get("reference")
        reference = f"\n<|Reference Answer|>\n{ref}\n" if ref not in (None, "") else ""
        user = USER_TEMPLATE.format(question=question(row), reference=reference, answer_a=answer_a, answer_b=answer_b)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def _post(self, body: bytes) -> dict:
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}",
        })
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def __call__(self, row: dict[str, Any], answer_a: str, answer_b: str) -> Judgement:
        body = json.dumps({
            "model": self.model, "messages": self.messages(row, answer_a, answer_b),
            "temperature": 0.0, "max_tokens": self.max_tokens,
        }).encode()
        start = time.perf_counter()
        out = Judgement(None)
        for attempt in range(self.retries + 1):
            out.calls += 1
            retry = False
            try:
                response = self._post(body)
            except urllib.error.HTTPError as err:
                out.error = f"HTTP {err.code} {err.reason}"
                retry = err.code == 429 or err.code >= 500
            except (TimeoutError, socket.timeout):
                out.error = f"timed out after {self.timeout_s:g}s"
                retry = True
            except (urllib.error.URLError, ConnectionError) as err:
                reason = getattr(err, "reason", err)
                timed_out = isinstance(reason, (TimeoutError, socket.timeout))
                out.error = f"timed out after {self.timeout_s:g}s" if timed_out else f"connection failed: {reason}"
                retry = True
            except (json.JSONDecodeError, UnicodeDecodeError):
                out.error = "the response is not JSON"
            else:
                out.error = None
                self._read(response, out)
                break
            if not retry or attempt == self.retries:
                break
            time.sleep(self.backoff_s * 2**attempt)
        out.seconds = time.perf_counter() - start
        return out

    def _read(self, response: dict, out: Judgement) -> None:
        usage = (response.get("usage") if isinstance(response, dict) else None) or {}
        out.input_tokens += int(usage.get("prompt_tokens") or 0)
        out.output_tokens += int(usage.get("completion_tokens") or 0)
        out.cost_usd = (out.input_tokens * self.prices[0] + out.output_tokens * self.prices[1]) / 1e6
        try:
            text = response["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            out.error = "the response has no choices[0].message.content"
            return
        out.detail["reply"] = text
        try:
            out.verdict = parse_verdict(text)
        except MalformedVerdict as err:
            out.error = f"malformed verdict: {err}"
