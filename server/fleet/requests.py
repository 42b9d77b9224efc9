"""Parse and bound an OpenAI-style completion or chat request before anything is allocated for it.

The body is network input: every size is checked against a limit first, every error
names the field (as vLLM's OpenAI server does, HTTP 400 with an OpenAI error body), and
nothing here touches the simulation. The simulator needs only token counts, so text is
never tokenised: a prompt given as text is estimated at one token per
``CHARS_PER_TOKEN`` characters (OpenAI's rule of thumb for English), and a chat adds
``CHAT_TOKENS_PER_MESSAGE`` per message plus ``CHAT_TOKENS_REPLY`` for the reply primer
(the overhead of a typical chat template).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
CHAT_TOKENS_PER_MESSAGE = 4
CHAT_TOKENS_REPLY = 3


class BadRequest(Exception):
    """Bad input: HTTP 400 with an OpenAI error body naming ``param``."""

    def __init__(self, param: str | None, message: str, status: int = 400, kind: str = "BadRequestError"):
        super().__init__(message)
        self.param, self.message, self.status, self.kind = param, message, status, kind


@dataclass(frozen=True)
class Limits:
    """What one listener accepts from one request."""

    max_body_bytes: int = 8 << 20
    max_n: int = 16  # choices per prompt
    max_prompts: int = 16  # prompts in one /v1/completions batch
    max_choices: int = 64  # prompts x n
    max_tokens: int = 1 << 20  # output tokens per choice (the client's max_model_len applies too)


@dataclass(frozen=True)
class GenRequest:
    """What a request asks the simulated instance for."""

    chat: bool
    model: str | None
    prompt_tokens: tuple[int, ...]  # per prompt
    max_tokens: int | None  # None: the length comes from the spec's distribution
    n: int
    stream: bool
    include_usage: bool
    ignore_eos: bool


def parse_json(body: bytes, limits: Limits) -> dict:
    if len(body) > limits.max_body_bytes:
        raise BadRequest(None, f"request body of {len(body)} bytes exceeds {limits.max_body_bytes} bytes", 413)
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser's stack
        raise BadRequest(None, f"body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise BadRequest(None, "body must be a JSON object")
    return doc


def _int(doc: dict, key: str, lo: int, hi: int) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(key, f"{key} must be an integer, got {type(v).__name__}")
    if v < lo or v > hi:
        raise BadRequest(key, f"{key} must be between {lo} and {hi}, got {v}")
    return v


def _bool(doc: dict, key: str, default: bool = False) -> bool:
    v = doc.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BadRequest(key, f"{key} must be a boolean, got {type(v).__name__}")
    return v


def text_tokens(text: str) -> int:
    """The documented estimate: one token per CHARS_PER_TOKEN characters, at least one."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def _all_ints(v: list) -> bool:
    """Every item is an int (not a bool); checked at C speed, as prompts run to many thousand ids."""
    return set(map(type, v)) == {int}


def _token_ids(v: list, param: str) -> int:
    if not v:
        raise BadRequest(param, f"{param} must not be empty")
    if not _all_ints(v) or min(v) < 0:
        raise BadRequest(param, f"{param} must hold non-negative integer token ids")
    return len(v)


def _completion_prompts(doc: dict, limits: Limits) -> tuple[int, ...]:
    if "prompt_token_ids" in doc and doc["prompt_token_ids"] is not None:
        ids = doc["prompt_token_ids"]
        if not isinstance(ids, list):
            raise BadRequest("prompt_token_ids", "prompt_token_ids must be a list of token ids")
        return (_token_ids(ids, "prompt_token_ids"),)
    p = doc.get("prompt")
    if p is None:
        raise BadRequest("prompt", "prompt is required")
    if isinstance(p, str):
        return (text_tokens(p),)
    if not isinstance(p, list) or not p:
        raise BadRequest("prompt", "prompt must be a string, a list of strings, or token ids")
    if _all_ints(p):
        return (_token_ids(p, "prompt"),)
    if len(p) > limits.max_prompts:
        raise BadRequest("prompt", f"at most {limits.max_prompts} prompts per request, got {len(p)}")
    out = []
    for x in p:
        if isinstance(x, str):
            out.append(text_tokens(x))
        elif isinstance(x, list):
            out.append(_token_ids(x, "prompt"))
        else:
            raise BadRequest("prompt", "prompt must be a string, a list of strings, or token ids")
    return tuple(out)


def _chat_prompt(doc: dict) -> int:
    msgs = doc.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages", "messages must be a non-empty list")
    total = CHAT_TOKENS_REPLY
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}]", f"messages[{i}] must be an object with a string role")
        content = m.get("content")
        chars = 0
        if isinstance(content, str):
            chars = len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise BadRequest(f"messages[{i}].content", f"messages[{i}].content parts must be objects")
                text = part.get("text")
                chars += len(text) if isinstance(text, str) else 0
        elif content is not None:
            raise BadRequest(f"messages[{i}].content", f"messages[{i}].content must be a string or a list of parts")
        total += CHAT_TOKENS_PER_MESSAGE + -(-chars // CHARS_PER_TOKEN)
    return total


def parse_request(doc: dict, chat: bool, limits: Limits) -> GenRequest:
    """Validate a parsed body; raises BadRequest naming the first bad field."""
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest("model", "model must be a string")
    prompts = (_chat_prompt(doc),) if chat else _completion_prompts(doc, limits)
    max_tokens = _int(doc, "max_completion_tokens", 1, limits.max_tokens) if chat else None
    if max_tokens is None:
        max_tokens = _int(doc, "max_tokens", 1, limits.max_tokens)
    n = _int(doc, "n", 1, limits.max_n) or 1
    if n * len(prompts) > limits.max_choices:
        raise BadRequest("n", f"n x prompts = {n * len(prompts)} exceeds {limits.max_choices} choices")
    opts = doc.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise BadRequest("stream_options", "stream_options must be an object")
    include_usage = _bool(opts or {}, "include_usage")
    return GenRequest(chat, model, prompts, max_tokens, n, _bool(doc, "stream"), include_usage,
                      _bool(doc, "ignore_eos"))
