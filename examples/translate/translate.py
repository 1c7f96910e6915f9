"""Translate a text into Spanish, French and German at once, through a chat model.

    python examples/translate/translate.py ["text"] [--llm-base-url URL --model M]

Without --llm-base-url a local OpenAI-compatible stand-in is started (offline); with it,
any OpenAI-compatible endpoint is called through httpx (key from $OPENAI_API_KEY).
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
import translation

DEFAULT = "Hello my friend, the weather is very good today and your order has shipped."


async def translate_all(text: str, base_url: str, model: str) -> fj.Results:
    headers = {"authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', 'none')}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def translate(language: str) -> str:
            response = await client.post(
                "/chat/completions",
                json={
                    "model": model,
                    "temperature": 0,
                    "messages": [
                        {"role": "system", "content": translation.prompt(language)},
                        {"role": "user", "content": text},
                    ],
                },
            )
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"]).strip()

        return await fj.gather(
            {key: (translate, lang) for key, lang in translation.LANGUAGES.items()},
            limit=3,
            timeout=20,
            retry=fj.Retry(attempts=3, backoff=0.5),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", default=DEFAULT)
    parser.add_argument("--llm-base-url", default="")
    parser.add_argument("--model", default="gpt-4o-mini")
    args = parser.parse_args()
    with translation.endpoint(args.llm_base_url) as provided:
        results = asyncio.run(translate_all(args.text, provided["llm_base_url"], args.model))
    print(json.dumps(results.ok_values(), indent=2, ensure_ascii=False))
    print(results.report, file=sys.stderr)
    sys.exit(0 if results.all_ok else 1)


if __name__ == "__main__":
    main()
