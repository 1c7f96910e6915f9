"""Shared by the examples: run a local HTTP server, and a local OpenAI-compatible stand-in.

The stand-in answers ``POST /v1/chat/completions`` like a chat model would, but computes the
answer offline with small real libraries (vaderSentiment, yake) and a phrase table, so the
examples' LLM path runs with no network and no key. Point ``--llm-base-url`` (or
``--var llm_base_url=...``) at a real OpenAI-compatible endpoint to use a real model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[str, str, dict[str, Any] | None], tuple[int, Any]]


@contextmanager
def serve(route: Route) -> Iterator[str]:
    """Serve ``route(method, path, json_body) -> (status, json)`` on 127.0.0.1 (an
    ephemeral port) while the block runs; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            status, doc = route(self.command, self.path, body)
            data = json.dumps(doc).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        do_GET = do_POST = _handle

        def log_message(self, *args: object) -> None:  # keep the examples' output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- offline analysis (real libraries, no downloads) -------------------------------------------


def sentiment(text: str) -> dict[str, Any]:
    """VADER sentiment: label and scores."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    scores = SentimentIntensityAnalyzer().polarity_scores(text)
    c = scores["compound"]
    label = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
    return {"label": label, **scores}


def key_phrases(text: str, top: int = 5) -> list[str]:
    """YAKE key phrases, best first."""
    import yake

    extractor = yake.KeywordExtractor(lan="en", n=2, top=top, dedupLim=0.7)
    return [phrase for phrase, _score in extractor.extract_keywords(text)]


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_PROPER = re.compile(r"\b(?:[A-Z][a-zA-Z0-9&-]+)(?:\s+(?:of\s+)?[A-Z][a-zA-Z0-9&-]+)*")
_STOP = {
    "The",
    "A",
    "An",
    "This",
    "That",
    "These",
    "In",
    "On",
    "At",
    "It",
    "Its",
    "But",
    "And",
    "We",
    "Our",
    "They",
    "He",
    "She",
    "For",
    "With",
    "As",
    "By",
    "After",
    "Before",
}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def entities(text: str) -> list[str]:
    """Named things: runs of capitalised words (a small rule-based recogniser)."""
    found: dict[str, None] = {}
    for m in _PROPER.finditer(text):
        words = m.group(0).split()
        while words and words[0] in _STOP:
            words = words[1:]
        before = text[: m.start()].rstrip()
        if len(words) == 1 and (not before or before[-1] in ".!?"):
            continue  # one capitalised word opening a sentence is no name by itself
        if words and (len(words) > 1 or len(words[0]) > 2):
            found.setdefault(" ".join(words), None)
    return list(found)


def summary(text: str, n: int = 2) -> str:
    """Extractive summary: the ``n`` sentences that carry the most key phrases."""
    phrases = [p.lower() for p in key_phrases(text, top=10)]
    ranked = sorted(
        enumerate(sentences(text)),
        key=lambda ix: -sum(p in ix[1].lower() for p in phrases),
    )
    keep = sorted(ranked[:n])
    return " ".join(s for _, s in keep)


# -- the OpenAI-compatible stand-in --------------------------------------------------------------

PHRASES = {
    "es": {"hello": "hola", "world": "mundo", "the": "el", "weather": "tiempo", "is": "es",
           "good": "bueno", "today": "hoy", "thank you": "gracias", "friend": "amigo",
           "my": "mi", "very": "muy", "and": "y", "we": "nosotros", "ship": "enviamos",
           "fast": "rápido", "order": "pedido", "your": "su", "has": "ha",
           "shipped": "sido enviado"},
    "fr": {"hello": "bonjour", "world": "monde", "the": "le", "weather": "temps", "is": "est",
           "good": "bon", "today": "aujourd'hui", "thank you": "merci", "friend": "ami",
           "my": "mon", "very": "très", "and": "et", "we": "nous", "ship": "expédions",
           "fast": "vite", "order": "commande", "your": "votre", "has": "a",
           "shipped": "été expédiée"},
    "de": {"hello": "hallo", "world": "Welt", "the": "das", "weather": "Wetter", "is": "ist",
           "good": "gut", "today": "heute", "thank you": "danke", "friend": "Freund",
           "my": "mein", "very": "sehr", "and": "und", "we": "wir", "ship": "versenden",
           "fast": "schnell", "order": "Bestellung", "your": "Ihre", "has": "wurde",
           "shipped": "versandt"},
}  # fmt: skip
LANGUAGES = {"spanish": "es", "french": "fr", "german": "de"}


def translate(text: str, lang: str) -> str:
    """Phrase-table translation (word by word; longest phrase first)."""
    table = PHRASES[lang]
    words = re.findall(r"[\w']+|[^\w\s]", text)
    out: list[str] = []
    i = 0
    while i < len(words):
        two = f"{words[i]} {words[i + 1]}".lower() if i + 1 < len(words) else ""
        if two in table:
            t = table[two]
            out.append(t.capitalize() if words[i][:1].isupper() and t[:1].islower() else t)
            i += 2
            continue
        w = words[i]
        t = table.get(w.lower(), w)
        out.append(t.capitalize() if w[:1].isupper() and t[:1].islower() else t)
        i += 1
    return re.sub(r"\s+([.,!?;:])", r"\1", " ".join(out))


def answer(system: str, user: str) -> str:
    """What the stand-in model says to a (system, user) prompt."""
    s = system.lower()
    for name, code in LANGUAGES.items():
        if "translate" in s and name in s:
            return translate(user, code)
    if "sentiment" in s:
        return str(sentiment(user)["label"])
    if "entities" in s:
        return ", ".join(entities(user))
    if "key phrases" in s:
        return ", ".join(key_phrases(user))
    if "summar" in s:
        return summary(user)
    return user


def chat_route(latency: float = 0.05) -> Route:
    calls = {"n": 0}

    def route(method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {method} {path}"}}
        if not body or not isinstance(body.get("messages"), list):
            return 400, {"error": {"message": "expected {model, messages: [...]}"}}
        msgs = body["messages"]
        system = " ".join(m.get("content", "") for m in msgs if m.get("role") == "system")
        user = " ".join(m.get("content", "") for m in msgs if m.get("role") == "user")
        time.sleep(latency)  # a model takes a moment
        calls["n"] += 1
        content = answer(system, user)
        return 200, {
            "id": f"chatcmpl-standin-{calls['n']}",
            "object": "chat.completion",
            "model": body.get("model", "standin"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": len((system + user).split()),
                "completion_tokens": len(content.split()),
                "total_tokens": len((system + user).split()) + len(content.split()),
            },
        }

    return route


@contextmanager
def llm_standin(latency: float = 0.05) -> Iterator[dict[str, str]]:
    """Start the stand-in; yields ``{"llm_base_url": "http://127.0.0.1:PORT/v1"}``."""
    with serve(chat_route(latency)) as url:
        yield {"llm_base_url": f"{url}/v1"}


def chat_content(value: dict[str, Any]) -> str:
    """The assistant's text from an ``http`` task's value (a chat completion response)."""
    return str(value["json"]["choices"][0]["message"]["content"]).strip()
