#!/usr/bin/env python3
"""Call a model you subscribed to on liutong with the official `openai` Python package.

liutong's OpenAI-compatible front (`/openai/v1`) takes a liutong API key (or token) as the
OpenAI key, lists your subscribed models (`id` = the publication's publishId) and answers chat
completions from the model's upstream, metered and paid from your balance exactly like
`POST /v1/model/delivery`. Set up a subscription first (README, "Subscriptions with curl"),
then:

    pip install openai
    LIUTONG_URL=http://127.0.0.1:8080 LIUTONG_API_KEY=ltk_... python3 examples/openai_chat.py "Say hello"

Environment: LIUTONG_URL (the server), LIUTONG_API_KEY (from POST /v1/account/apiKeys),
LIUTONG_MODEL (a publishId; default: your first subscribed model), LIUTONG_IDEMPOTENCY_KEY
(optional: a retried key is answered once and charged once). Prints one JSON line: the models,
the reply and its usage, or the error's HTTP status and liutong code.
"""

import json
import os
import sys

import openai


def main() -> int:
    client = openai.OpenAI(
        base_url=os.environ.get("LIUTONG_URL", "http://127.0.0.1:8080").rstrip("/") + "/openai/v1",
        api_key=os.environ["LIUTONG_API_KEY"],
        # liutong's answers are final: a retry of a refused call would be refused again, and a
        # retry of a call that reached the upstream needs an Idempotency-Key to be charged once.
        max_retries=0,
    )
    prompt = sys.argv[1] if len(sys.argv) > 1 else "Say hello"
    try:
        models = [m.id for m in client.models.list().data]
        model = os.environ.get("LIUTONG_MODEL") or (models[0] if models else "none")
        headers = {}
        if os.environ.get("LIUTONG_IDEMPOTENCY_KEY"):
            headers["Idempotency-Key"] = os.environ["LIUTONG_IDEMPOTENCY_KEY"]
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            extra_headers=headers,
        )
    except openai.APIStatusError as e:
        # The package hands over the `error` object of liutong's answer.
        error = e.body if isinstance(e.body, dict) else {}
        error = error.get("error", error)
        print(json.dumps({"status": e.status_code, "code": error.get("code"),
                          "message": error.get("message")}))
        return 1
    print(json.dumps({
        "models": models,
        "model": model,
        "content": reply.choices[0].message.content,
        "usage": {"prompt_tokens": reply.usage.prompt_tokens,
                  "completion_tokens": reply.usage.completion_tokens},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
