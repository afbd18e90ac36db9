"""The official OpenAI and Anthropic Python SDKs, unchanged, against aimesh and its fake provider.

usage: official_sdks.py <aimesh /v1 base URL> <fake provider URL>
Exits non-zero (with the failing assertion) if anything is off.
"""
import sys

import anthropic
import openai

aimesh_v1, fake = sys.argv[1], sys.argv[2]

# OpenAI SDK → aimesh's OpenAI-compatible endpoint.
client = openai.OpenAI(base_url=aimesh_v1, api_key="not-needed", max_retries=0)
models = [m.id for m in client.models.list()]
assert "gpt-4o" in models, models
answer = client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello SDK"}],
    max_tokens=100,
)
assert answer.choices[0].message.role == "assistant"
assert "Hello SDK" in answer.choices[0].message.content, answer
assert answer.choices[0].finish_reason in ("stop", "length"), answer
assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0, answer.usage

pieces, usage, finish = [], None, None
stream = client.chat.completions.create(
    model="claude-3-7-sonnet",
    messages=[{"role": "user", "content": "Stream through the SDK"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
text = "".join(pieces)
assert "Stream through the SDK" in text, text
assert finish in ("stop", "length"), finish
assert usage is not None and usage.completion_tokens > 0, usage

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as e:
    assert e.status_code == 404

# The official SDKs against the fake provider itself: it speaks the real wire formats.
fake_openai = openai.OpenAI(base_url=fake + "/v1", api_key="k", max_retries=0)
r = fake_openai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "fake hi"}])
assert "fake hi" in r.choices[0].message.content, r

claude = anthropic.Anthropic(base_url=fake, api_key="k", max_retries=0)
m = claude.messages.create(
    model="claude-3-7-sonnet-20250219",
    max_tokens=100,
    system="Be brief.",
    messages=[{"role": "user", "content": "fake claude"}],
)
assert m.content[0].type == "text" and "fake claude" in m.content[0].text, m
assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
with claude.messages.stream(
    model="claude-3-7-sonnet-20250219",
    max_tokens=100,
    messages=[{"role": "user", "content": "fake claude stream"}],
) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
assert "fake claude stream" in streamed, streamed
assert final.stop_reason in ("end_turn", "max_tokens"), final.stop_reason

print("official SDKs: ok")
