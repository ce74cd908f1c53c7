"""`openai:` models against a scripted local server (127.0.0.1): retries with backoff on 429 / 5xx / timeouts /
garbage, failures counted per sample and never scored, bounded concurrency, images as PNG data URLs, and an
API key that reaches the server but never the run directory or the logs."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from vittle_bench.adapters import TASK_ADAPTERS
from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.cli import main
from vittle_bench.config import ConfigError, resolve_tasks
from vittle_bench.data.sources import load_samples
from vittle_bench.models import load_model
from vittle_bench.models.openai import OpenAIModel
from vittle_bench.openai_client import ChatClient, RequestFailed, redact_model_args, redact_text
from vittle_bench.schema import Request

from fake_openai_server import FakeServer, garbage, messages_key, ok, stall, status

KEY = "sk-planted-0123456789abcdefSECRET"
PAYLOAD = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
FAST = {"timeout": 0.5, "max_retries": 2, "backoff": 0.01}


def _client(server: FakeServer, **kwargs) -> ChatClient:
    return ChatClient(server.url, KEY, **{**FAST, **kwargs})


@pytest.mark.parametrize("first", [status(500), status(503), status(429, retry_after="0"), stall(1.5), garbage(),
                                   garbage(b'{"choices": []}')])
def test_transient_failures_are_retried(first):
    key = messages_key(PAYLOAD["messages"])
    with FakeServer(scripts={key: [first, ok("fine")]}) as server:
        client = _client(server)
        assert client.complete(PAYLOAD) == "fine"
    assert server.attempts(key) == 2
    assert client.stats == {"requests": 2, "retries": 1, "failed": 0}


def test_retry_after_is_honoured():
    key = messages_key(PAYLOAD["messages"])
    with FakeServer(scripts={key: [status(429, retry_after="0.4"), ok("fine")]}) as server:
        start = time.monotonic()
        assert _client(server, backoff=0.0).complete(PAYLOAD) == "fine"
    assert time.monotonic() - start >= 0.4


def test_persistent_failure_gives_up_after_the_retries():
    key = messages_key(PAYLOAD["messages"])
    with FakeServer(scripts={key: [status(500)]}) as server:
        client = _client(server)
        with pytest.raises(RequestFailed, match="gave up after 3 attempts: HTTP 500"):
            client.complete(PAYLOAD)
    assert server.attempts(key) == 3 and client.stats["failed"] == 1


def test_client_errors_are_not_retried_and_never_echo_the_key():
    key = messages_key(PAYLOAD["messages"])
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}})
    with FakeServer(scripts={key: [status(401, body=echo)]}) as server:
        with pytest.raises(RequestFailed) as failure:
            _client(server).complete(PAYLOAD)
    assert server.attempts(key) == 1
    assert "HTTP 401" in str(failure.value) and KEY not in str(failure.value)
    assert server.log[0]["auth"] == f"Bearer {KEY}"


def test_generate_keeps_order_bounds_concurrency_and_returns_failures_in_their_slots():
    requests = [Request(f"question {i}", (), 8) for i in range(8)]
    model = OpenAIModel("vlm", **FAST, concurrency=3, api_key=KEY, base_url="http://unused")
    keys = [messages_key(model.payload(r)["messages"]) for r in requests]
    with FakeServer(scripts={keys[5]: [status(500)]}, delay=0.1,
                    default=lambda payload: ok(f"answer to {payload['messages'][0]['content'][-1]['text']}")) as server:
        # a generous timeout: this test failed once while two training jobs loaded both cores, likely 0.5 s running out
        model = OpenAIModel("vlm", base_url=server.url, api_key=KEY, concurrency=3, **{**FAST, "timeout": 5})
        outputs = model.generate(requests)
    assert [o for i, o in enumerate(outputs) if i != 5] == [f"answer to question {i}" for i in range(8) if i != 5]
    assert isinstance(outputs[5], RequestFailed)
    assert 2 <= server.peak_in_flight <= 3


def test_images_travel_as_png_data_urls_and_settings_from_environment(monkeypatch):
    image = draw_scene(scene_rng(0, 3)).image
    with FakeServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        model = load_model("openai:vlm", timeout=5)
        assert model.generate([Request("Is there a red circle?", (image, image), 5)]) == ["Yes"]
    payload = server.log[0]["payload"]
    assert server.log[0]["auth"] == f"Bearer {KEY}" and server.log[0]["path"] == "/v1/chat/completions"
    assert payload["model"] == "vlm" and payload["max_tokens"] == 5 and payload["temperature"] == 0.0
    parts = payload["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.tobytes() == image.convert("RGB").tobytes()


def test_fingerprint_and_repr_never_hold_the_key():
    a = OpenAIModel("vlm", base_url="http://user:pw@127.0.0.1:9/v1", api_key=KEY)
    b = OpenAIModel("vlm", base_url="http://127.0.0.1:9/v1", api_key="another")
    assert a.fingerprint == b.fingerprint
    assert KEY not in json.dumps(a.fingerprint_info) + repr(a.client) and "pw" not in json.dumps(a.fingerprint_info)
    assert OpenAIModel("other", base_url="http://127.0.0.1:9/v1").fingerprint != a.fingerprint
    assert redact_model_args({"api_key": KEY, "timeout": 3}) == {"api_key": "<redacted>", "timeout": 3}
    assert KEY not in redact_text(f"vittle-bench run --model-args api_key={KEY}", {"api_key": KEY})


def test_bad_arguments_are_user_errors():
    with pytest.raises(ConfigError, match="unknown --model-args"):
        OpenAIModel("vlm", base_url="http://127.0.0.1:9/v1", dtype="bfloat16")
    with pytest.raises(ConfigError, match="concurrency"):
        OpenAIModel("vlm", base_url="http://127.0.0.1:9/v1", concurrency=0)
    with pytest.raises(ConfigError, match="http"):
        OpenAIModel("vlm", base_url="127.0.0.1:9")


# ----------------------------------------------------------------------------- end to end through `run`
OPEN_TASK = """task: open_judged
source: builtin:shapes
subset: open
adapter: open_ended
adapter_args:
  judge: openai:judge-model
  max_new_tokens: 48
  judge_cache: {cache}
  judge_args: {{base_url: "{url}", max_retries: 2, parse_retries: 1, backoff: 0.01, timeout: 0.5}}
"""


def _request_keys(task: str, cache: Path, limit: int, include: Path) -> list[str]:
    spec = resolve_tasks(task, [include])[0]
    adapter = TASK_ADAPTERS.get(spec.adapter)(**spec.adapter_args)
    model = OpenAIModel("test-vlm", base_url="http://unused")
    return [messages_key(model.payload(adapter.build_request(s))["messages"]) for s in load_samples(spec, cache, limit)]


def test_run_end_to_end_retries_counts_failures_and_leaks_no_key(world_cache, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    include = tmp_path / "tasks"
    include.mkdir()
    with FakeServer() as server:
        (include / "open_judged.yaml").write_text(OPEN_TASK.format(cache=tmp_path / "judgments.sqlite", url=server.url))
        pope = _request_keys("shapes_pope_random", world_cache, 6, include)
        opened = _request_keys("open_judged", world_cache, 6, include)
        server.scripts.update({
            pope[0]: [status(500), ok("Yes")], pope[1]: [status(429, retry_after="0"), ok("No")],
            pope[2]: [stall(1.5), ok("No")], pope[3]: [garbage(), ok("Yes")],
            pope[4]: [status(500)], pope[5]: [garbage()],  # fail for good: recorded errors, not scored
            **{k: [ok(f"model answer {i}")] for i, k in enumerate(opened)}})
        reviews = {"model answer 0": [ok("8 6\nAssistant 2 misses an object.")],
                   "model answer 1": [ok("Assistant 1: 9\nAssistant 2: 3")],  # LLaVA's rule cannot read it
                   "model answer 2": [ok("I cannot rate these answers.")],  # unparseable, even when asked again
                   "model answer 3": [status(500)],  # the judge endpoint keeps failing
                   "model answer 4": [ok("Let me think."), ok("7 7")],  # readable when asked again
                   "model answer 5": [ok("**10/10** 5/10")]}  # nor this

        def judge_or_model(payload):
            if payload["model"] != "judge-model":
                return messages_key(payload["messages"])
            return next(a for a in reviews if a in payload["messages"][1]["content"])

        server.key_of = judge_or_model
        server.scripts.update(reviews)
        run_dir = tmp_path / "run"
        args = ["run", "--model", "openai:test-vlm",
                "--model-args", f"base_url={server.url},max_retries=2,backoff=0.01,timeout=0.5",
                "--tasks", "shapes_pope_random,open_judged", "--include-path", str(include),
                "--shifts", "clean", "--limit", "6", "--output", str(run_dir), "--cache-dir", str(world_cache)]
        assert main(args) == 0
        attempts = [server.attempts(k) for k in pope]
        records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
        first_judge_calls = sum(1 for e in server.log if e["payload"]["model"] == "judge-model")
        # Re-scoring: a second run (answers now cached) asks the judge only about what failed before.
        assert main([*args[:-4], "--output", str(tmp_path / "again"), "--cache-dir", str(world_cache)]) == 0
        second_judge_calls = sum(1 for e in server.log if e["payload"]["model"] == "judge-model") - first_judge_calls

    ordered = [r for r in records if r["task"] == "shapes_pope_random"]  # sample order, as `pope`
    assert attempts == [2, 2, 2, 2, 3, 3]
    assert all(r["error"] is None and r["raw_output"] in ("Yes", "No") for r in ordered[:4])
    assert all(r["error"].startswith("generate: RequestFailed: gave up after 3 attempts") and r["score"] is None
               for r in ordered[4:])
    results = pd.read_csv(run_dir / "results.csv")
    pope_cell = results[results.task == "shapes_pope_random"].set_index("metric")
    assert pope_cell.loc["n_errors", "value"] == 2 and pope_cell.loc["accuracy", "n"] == 4

    open_records = [r for r in records if r["task"] == "open_judged"]
    assert [(r["score"], r["reference_score"]) for r in open_records] == [
        (6.0, 8.0), (None, None), (None, None), (None, None), (7.0, 7.0), (None, None)]  # failures: no score at all
    assert all(r["error"] is None and r["scorer"] == "openai:judge-model" for r in open_records)
    cell = results[results.task == "open_judged"].set_index("metric")
    assert cell.loc["judge_failed", "value"] == 4
    assert cell.loc["relative_score", "value"] == pytest.approx(100 * (6 + 7) / (8 + 7), rel=1e-5)
    assert cell.loc["relative_score", "n"] == 2
    assert cell.loc["relative_score/detail", "value"] == pytest.approx(cell.loc["relative_score", "value"])
    assert first_judge_calls == 1 + 2 + 2 + 3 + 2 + 2  # parse retries for answers 1, 2, 4, 5; request retries for 3
    assert second_judge_calls == 2 + 2 + 3 + 2  # answers 0 and 4 came from the judgment cache

    assert all(e["auth"] == f"Bearer {KEY}" for e in server.log)  # the key was used ...
    leaked = [p for d in (run_dir, tmp_path / "again") for p in d.rglob("*")
              if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []  # ... and written nowhere
    out = capsys.readouterr()
    assert KEY not in out.out + out.err + caplog.text
    assert "retry" in caplog.text  # the retries were logged (without the key)


def test_key_passed_as_model_arg_stays_out_of_the_manifest(world_cache, tmp_path):
    with FakeServer() as server:
        run_dir = tmp_path / "run"
        assert main(["run", "--model", "openai:test-vlm", "--model-args", f"base_url={server.url},api_key={KEY}",
                     "--tasks", "shapes_pope_random", "--shifts", "clean", "--limit", "2", "--output", str(run_dir),
                     "--cache-dir", str(world_cache)]) == 0
    assert server.log[0]["auth"] == f"Bearer {KEY}"
    assert not [p for p in run_dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
