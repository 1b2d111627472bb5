"""The LLM judge: an OpenAI-compatible chat-completions endpoint asked for an Arena-Hard-style verdict.

The judge reads the question (and a reference answer when the prompt row has one), answer A and answer B, reasons,
and ends with exactly one label ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]`` or ``[[B>>A]]``. Parsing is
strict (`parse_verdict`): no label, an unknown label or two different labels is a malformed verdict, recorded as a
failed judgement, never a tie.

Calls go through the `openai` client, one per judge (thread-safe, its connection pool sized to `concurrency`, the
arena's thread pool keeping at most that many calls in flight): `timeout_s` per call, and up to `retries` retries
on timeouts, connection errors, HTTP 408, 409, 429 and 5xx with the client's own backoff (about 0.5 s doubling up
to 8 s, with jitter; a server's ``Retry-After`` of up to two minutes is honoured instead). What still fails after
the retries, and any other HTTP error, is recorded as that judgement's failure. A rejected key (HTTP 401, 403) or
an unknown model or route (404) is the one-line `HarnessError` naming the endpoint and what to check: `check`
makes one tiny call before any model work so that it comes up front, and a call that meets it later ends the
arena the same way. Tokens and cost are recorded per judgement from the response's ``usage``.

The API key is read from the environment variable whose NAME the config gives and handed to the client only, which
sends it in the Authorization header; it is never stored on anything that is logged (the judge's identity is its
model name and prompt version), and neither openai's nor httpx2's loggers write it, even at DEBUG. A base URL with a
user:password is refused, since httpx2 logs every request's URL.
"""

from __future__ import annotations

import hashlib
import http
import os
import re
import threading
import time
import urllib.parse
import weakref
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


def _status(code: int) -> str:
    """``HTTP 500 Internal Server Error``: the code and its standard phrase (never the server's body)."""
    try:
        return f"HTTP {code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


class LLMJudge:
    """Arena-Hard-style verdicts from an OpenAI-compatible chat-completions endpoint."""

    name = "llm"
    temperature = 0.0  # greedy verdicts; part of the judge's fingerprint
    prompt_version = PROMPT_VERSION  # a hash of the judge's instructions and template

    def __init__(
        self,
        base_url: str | None,
        model: str | None,
        api_key_env: str | None,
        *,
        max_tokens: int = 1024,
        timeout_s: float = 60.0,
        retries: int = 3,
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
        if urllib.parse.urlsplit(base_url).password is not None:  # the HTTP log lines name the full URL
            raise HarnessError(f"config key arena.llm.base_url: {safe_url(base_url)!r} carries a user:password, which "
                               "the request logs would show; remove it, the judge sends the key in $"
                               f"{api_key_env} (arena.llm.api_key_env)")
        if not api_key_env or not os.environ.get(api_key_env):
            raise HarnessError(
                f"the llm judge reads its API key from the environment variable {api_key_env!r} "
                "(arena.llm.api_key_env / --judge-api-key-env), which is not set; for a local server without "
                "keys set it to any value"
            )
        self.model, self.api_key_env = model, api_key_env
        self.max_tokens, self.timeout_s, self.retries = max_tokens, timeout_s, retries
        self.concurrency = max(1, concurrency)
        self.prices = (input_usd_per_mtok, output_usd_per_mtok)
        self.identity = f"llm:{model}"
        self.version = PROMPT_VERSION
        self.endpoint = safe_url(base_url)
        self._attempts = threading.local()  # HTTP requests sent by the current thread's judgement
        self._client = self._make_client(base_url, os.environ[api_key_env])

    def _make_client(self, base_url: str, api_key: str):
        import httpx2  # openai's own transport
        import openai

        attempts = self._attempts  # not self: the finalizer below must not keep the judge alive

        def count(request) -> None:  # every attempt, retries included, on the thread that makes the call
            attempts.n = getattr(attempts, "n", 0) + 1

        pool = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        http_client = openai.DefaultHttpxClient(limits=pool, event_hooks={"request": [count]})
        client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=self.timeout_s,
                               max_retries=self.retries, http_client=http_client)
        weakref.finalize(self, http_client.close)  # the pool's sockets go with the judge
        return client

    def __repr__(self) -> str:  # never the key
        return f"LLMJudge(model={self.model!r}, endpoint={self.endpoint!r})"

    def check(self, prompts: list[dict[str, Any]]) -> None:
        """One tiny call (one output token, no retries) before any model work, so that a rejected key or a wrong
        model or URL is one line now rather than a failure in every battle; any other failure is left to the
        judgements (their retries, their records). Any prompt set will do.

        Raises:
            HarnessError: HTTP 401, 403 or 404 from the endpoint.
        """
        import openai

        try:
            self._client.with_options(max_retries=0).chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "Reply with one word: ready"}],
                temperature=0.0, max_tokens=1)
        except openai.APIStatusError as err:
            if err.status_code in (401, 403, 404):
                raise self._refused(err.status_code) from None
        except openai.OpenAIError:
            pass

    def _refused(self, code: int) -> HarnessError:
        where = f"the llm judge's endpoint {self.endpoint}"
        key = f"the API key in ${self.api_key_env} (arena.llm.api_key_env / --judge-api-key-env)"
        if code == 401:
            return HarnessError(f"{where} rejected the API key ({_status(code)}): check {key}")
        if code == 403:
            return HarnessError(f"{where} refused the API key ({_status(code)}): check that {key} may use model "
                                f"{self.model!r}")
        return HarnessError(f"{where} has no model {self.model!r} or no chat-completions route ({_status(code)}): "
                            "check arena.llm.model (--judge-model) and arena.llm.base_url (--judge-base-url; "
                            "OpenAI-compatible servers usually end in /v1)")

    def messages(self, row: dict[str, Any], answer_a: str, answer_b: str) -> list[dict[str, str]]:
        """The chat sent to the judge."""
        from harness.arena.prompts import question

        ref = row.get("reference")
        reference = f"\n<|Reference Answer|>\n{ref}\n" if ref not in (None, "") else ""
        user = USER_TEMPLATE.format(question=question(row), reference=reference, answer_a=answer_a, answer_b=answer_b)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def __call__(self, row: dict[str, Any], answer_a: str, answer_b: str) -> Judgement:
        import openai

        messages = self.messages(row, answer_a, answer_b)
        start = time.perf_counter()
        out = Judgement(None)
        self._attempts.n = 0
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens)
        except openai.APITimeoutError:
            out.error = f"timed out after {self.timeout_s:g}s"
        except openai.APIConnectionError as err:
            out.error = f"connection failed: {err.__cause__ or err}"
        except openai.APIStatusError as err:
            if err.status_code in (401, 403, 404):
                raise self._refused(err.status_code) from None
            out.error = _status(err.status_code)  # 429 and 5xx after the retries; other codes at once
        except (openai.APIResponseValidationError, ValueError):  # a 200 whose body is not the JSON it claims
            out.error = "the response is not JSON"
        else:
            self._read(response, out)
        out.calls = self._attempts.n
        out.seconds = time.perf_counter() - start
        return out

    def _read(self, response: Any, out: Judgement) -> None:
        usage = getattr(response, "usage", None)
        out.input_tokens += int(getattr(usage, "prompt_tokens", None) or 0)
        out.output_tokens += int(getattr(usage, "completion_tokens", None) or 0)
        out.cost_usd = (out.input_tokens * self.prices[0] + out.output_tokens * self.prices[1]) / 1e6
        if isinstance(response, str):  # the client hands back the text of a reply that is not JSON
            out.error = "the response is not JSON"
            return
        try:
            text = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            out.error = "the response has no choices[0].message.content"
            return
        out.detail["reply"] = text
        try:
            out.verdict = parse_verdict(text)
        except MalformedVerdict as err:
            out.error = f"malformed verdict: {err}"
