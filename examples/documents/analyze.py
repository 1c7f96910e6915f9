"""Document analysis in Python: sentiment, entities, key phrases and a summary, at once.

    python examples/documents/analyze.py [FILE] [--llm-base-url URL --model M]

Offline by default (vaderSentiment, yake). With --llm-base-url the four tasks call an
OpenAI-compatible chat endpoint through httpx (the key comes from $OPENAI_API_KEY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import httpx

import forkjoin as fj

sys.path.insert(0, str(Path(__file__).resolve().parent))
import analysis

PROMPTS = {
    "sentiment": "Classify the sentiment of the text as positive, negative or neutral. "
    "Answer with one word.",
    "entities": "List the named entities (people, organisations, places) in the text, "
    "comma-separated.",
    "key_phrases": "List the five most important key phrases of the text, comma-separated.",
    "summary": "Summarize the text in two sentences.",
}


def offline(path: str) -> fj.Results:
    return fj.run(
        {
            "sentiment": (analysis.sentiment, path),
            "entities": (analysis.entities, path),
            "key_phrases": (analysis.key_phrases, path),
            "summary": (analysis.summary, path),
        },
        timeout=10,
    )


async def with_llm(text: str, base_url: str, model: str) -> fj.Results:
    headers = {"authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', 'none')}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def ask(system: str) -> str:
            response = await client.post(
                "/chat/completions",
                json={
                    "model": model,
                    "temperature": 0,
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": text},
                    ],
                },
            )
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"]).strip()

        return await fj.gather(
            {name: fj.task(ask, prompt, group="llm") for name, prompt in PROMPTS.items()},
            limit=4,
            timeout=20,
            retry=fj.Retry(attempts=3, backoff=0.5),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=str(analysis.HERE / "article.txt"))
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible endpoint, e.g. .../v1")
    parser.add_argument("--model", default="gpt-4o-mini")
    args = parser.parse_args()
    if args.llm_base_url:
        results = asyncio.run(with_llm(analysis.read(args.file), args.llm_base_url, args.model))
    else:
        results = offline(args.file)
    # keyed: a failed analysis is an Outcome beside the others, never a shifted value
    print(json.dumps({n: o.value if o.ok else repr(o.error) for n, o in results.items()},
                     indent=2))  # fmt: skip
    print(results.report, file=sys.stderr)
    sys.exit(0 if results.all_ok else 1)


if __name__ == "__main__":
    main()
