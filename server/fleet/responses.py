"""OpenAI-shaped response bodies and server-sent-event chunks for simulated generations.

The simulator models time, not content: every generated token is the placeholder text
``TOKEN_TEXT``, so a response carries exactly as many tokens as the engine generated.
Chunks are built once per choice and repeated per token, so streaming costs one write
of prepared bytes per release; `direct_sink` writes them straight to the socket, framed for
HTTP/1.1 chunked transfer, without waking the request's handler.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

TOKEN_TEXT = " tok"
SSE_DONE = b"data: [DONE]\n\n"
STATUS_TYPES = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError",
                429: "RateLimitError", 503: "ServiceUnavailableError", 500: "InternalServerError"}


SINK_BUFFER_LIMIT = 1 << 16  # bytes queued on a socket before tokens wait for the handler (which drains)


def direct_sink(transport: asyncio.BaseTransport, chunks: list[bytes]) -> Callable[[Any], bool]:
    """A call's sink: writes job `j`'s newly released tokens (`chunks[j.index]` each) as chunked-transfer
    frames. Returns False, writing nothing, when the socket is closing or its buffer is full: the
    handler then writes them and waits for the socket to drain, so memory per stream stays bounded."""
    framed = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks]

    def sink(job: Any) -> bool:
        if transport.is_closing() or transport.get_write_buffer_size() > SINK_BUFFER_LIMIT:  # type: ignore[attr-defined]
            return False
        transport.write(framed[job.index] * (job.released - job.sent))  # type: ignore[attr-defined]
        job.sent = job.released
        return True

    return sink


def error_response(status: int, message: str, param: str | None = None) -> web.Response:
    """The OpenAI error body (`{"error": {message, type, param, code}}`)."""
    body = {"error": {"message": message, "type": STATUS_TYPES.get(status, "APIError"), "param": param,
                      "code": status}}
    return web.json_response(body, status=status)


def sse_error(status: int, message: str) -> bytes:
    return _sse({"error": {"message": message, "type": STATUS_TYPES.get(status, "APIError"), "param": None,
                           "code": status}})


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class Shaper:
    """Builds the bodies of one call (completion or chat) with one id and creation time."""

    def __init__(self, chat: bool, model: str):
        self.chat, self.model = chat, model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"
        self.chunk_object = "chat.completion.chunk" if chat else "text_completion"

    def usage(self, prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> dict:
        """OpenAI's usage; reasoning tokens are part of ``completion_tokens`` and, in a chat, also
        reported as ``completion_tokens_details.reasoning_tokens``."""
        out: dict[str, Any] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
                               "completion_tokens": completion_tokens}
        if reasoning_tokens and self.chat:
            out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return out

    def full(self, choices: list[tuple[int, int, str, int]], prompt_tokens: int) -> dict:
        """A non-streaming body; choices are (index, answer tokens, finish_reason, reasoning tokens).

        A chat puts the reasoning in ``message.reasoning_content`` (vLLM's reasoning parsers); a
        completion has no parser, so its text is the raw output, reasoning first."""
        out = []
        for index, tokens, finish, thinking in choices:
            if self.chat:
                message = {"role": "assistant", "content": TOKEN_TEXT * tokens}
                if thinking:
                    message["reasoning_content"] = TOKEN_TEXT * thinking
                out.append({"index": index, "message": message,
                            "logprobs": None, "finish_reason": finish, "stop_reason": None})
            else:
                out.append({"index": index, "text": TOKEN_TEXT * (thinking + tokens), "logprobs": None,
                            "finish_reason": finish, "stop_reason": None})
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
                "choices": out, "usage": self.usage(prompt_tokens, sum(c[1] + c[3] for c in choices),
                                                    sum(c[3] for c in choices))}

    def _chunk(self, choice: dict, usage: dict | None = None) -> bytes:
        obj: dict[str, Any] = {"id": self.id, "object": self.chunk_object, "created": self.created,
                               "model": self.model, "choices": [choice] if choice else []}
        if usage is not None:
            obj["usage"] = usage
        return _sse(obj)

    def role_chunk(self, index: int) -> bytes:
        """A chat stream opens each choice with the assistant role (as vLLM does)."""
        return self._chunk({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                            "finish_reason": None})

    def token_chunk(self, index: int, finish: str | None = None) -> bytes:
        if self.chat:
            choice = {"index": index, "delta": {"content": TOKEN_TEXT}, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": index, "text": TOKEN_TEXT, "logprobs": None, "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = None
        return self._chunk(choice)

    def reasoning_chunk(self, index: int) -> bytes:
        """One reasoning token: ``delta.reasoning_content`` in a chat; plain text in a completion."""
        if not self.chat:
            return self.token_chunk(index)
        return self._chunk({"index": index, "delta": {"reasoning_content": TOKEN_TEXT}, "logprobs": None,
                            "finish_reason": None})

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> bytes:
        return self._chunk({}, self.usage(prompt_tokens, completion_tokens, reasoning_tokens))
