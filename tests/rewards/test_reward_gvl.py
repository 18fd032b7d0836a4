"""GVL progress values and the VLM success detector against a real HTTP server on loopback
speaking the chat-completions protocol, with deterministic "VLMs": an oracle that reads the
true progress encoded in each frame's brightness, a lazy one that ignores the images, and
misbehaving ones (malformed answers, timeouts, HTTP errors)."""
from __future__ import annotations

import argparse
import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from robot_rl.rewards.base import RewardModelError, RewardWrapper
from robot_rl.rewards.gvl import (GVL, ChatClient, GVLParseError, VLMConnectionError, VLMHTTPError,
                                  VLMResponseError, VLMSuccessDetector, VLMTimeoutError,
                                  encode_png, parse_gvl_response, parse_yes_no,
                                  value_order_correlation)


# ---------------------------------------------------------------------------- the server
def decode_images(parts):
    out = []
    for p in parts:
        if p.get("type") == "image_url":
            url = p["image_url"]["url"]
            assert url.startswith("data:image/png;base64,")
            out.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))))
    return out


def query_images(request):
    """Images after the GVL query text (the shuffled frames), in presentation order."""
    parts = request["messages"][-1]["content"]
    start = next(i for i, p in enumerate(parts)
                 if p.get("type") == "text" and p["text"].startswith("Now, for the task"))
    return decode_images(parts[start:])


def brightness_progress(img):
    return float(np.clip((img.astype(np.float64).mean() - 20.0) / 200.0, 0, 1) * 100.0)


def completion(text, finish="stop"):
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}]}


def oracle(request):
    lines = [f"Frame {i}: Frame Description: a robot. Task Completion Percentages: "
             f"{brightness_progress(img):.2f}%" for i, img in enumerate(query_images(request), 1)]
    return 200, completion("\n".join(lines))


def lazy(request):
    n = len(query_images(request))
    return 200, completion("\n".join(f"Frame {i}: Frame Description: looks busy. Task Completion "
                                     f"Percentages: {100.0 * i / n:.1f}%" for i in range(1, n + 1)))


class FakeVLM:
    """ThreadingHTTPServer on 127.0.0.1; `behaviour(request_json) -> (status, body[, headers,
    delay])`; a list of behaviours is used one per request (the last one repeats)."""

    def __init__(self, behaviour):
        self.behaviour, self.requests, self.auth = behaviour, [], []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.auth.append(self.headers.get("Authorization"))
                assert self.path == "/v1/chat/completions"
                b = fake.behaviour
                if isinstance(b, list):
                    b = b[min(len(fake.requests), len(b)) - 1]
                status, payload, *rest = b(body)
                headers = rest[0] if rest else {}
                if len(rest) > 1:
                    time.sleep(rest[1])
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def client(self, **kw):
        kw = {"timeout": 5.0, "max_retries": 0, "backoff": 0.01, **kw}
        return ChatClient(base_url=self.base_url, model="fake-vlm", **kw)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vlm():
    servers = []

    def start(behaviour):
        s = FakeVLM(behaviour)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def progress_frames(progress, size=8):
    """Uniform grey frames whose brightness encodes progress (20 .. 220)."""
    v = np.round(20 + 200 * np.asarray(progress, np.float64)).astype(np.uint8)
    return np.broadcast_to(v[:, None, None, None], (len(v), size, size, 3)).copy()


# ---------------------------------------------------------------------------- GVL
def test_oracle_vlm_gives_voc_one_and_unshuffled_values(vlm):
    s = vlm(oracle)
    T = 25
    truth = np.arange(T) / (T - 1)
    gvl = GVL(client=s.client(api_key="sk-test"), num_frames=30, seed=3)
    res = gvl.predict(progress_frames(truth), "pick up the red cube")
    assert res.voc == pytest.approx(1.0) and res.problems == [] and res.n_valid == T - 1
    np.testing.assert_array_equal(res.frame_indices, np.arange(1, T))
    np.testing.assert_allclose(res.values, 100 * truth[1:], atol=0.3)  # un-shuffled correctly
    assert not np.array_equal(res.presentation, np.arange(T - 1))  # ... and it was shuffled
    np.testing.assert_allclose(res.progress(), truth, atol=0.003)
    assert GVL.success(res) is True
    # the request: first frame in order (0% scene) then the shuffled frames, as data URLs
    req = s.requests[-1]
    assert req["model"] == "fake-vlm" and s.auth[-1] == "Bearer sk-test"
    imgs = decode_images(req["messages"][0]["content"])
    assert len(imgs) == T and imgs[0].mean() == pytest.approx(20)
    assert "pick up the red cube" in req["messages"][0]["content"][0]["text"]


def test_subsampling_and_in_context_examples(vlm):
    s = vlm(oracle)
    truth = np.arange(100) / 99
    example = (progress_frames(np.linspace(0, 1, 5)), [0, 25, 50, 75, 100])
    gvl = GVL(client=s.client(), num_frames=20, examples=[example])
    res = gvl.predict(progress_frames(truth), "stack the blocks")
    assert len(res.frame_indices) == 20 and res.frame_indices[-1] == 99
    assert res.voc == pytest.approx(1.0)
    assert len(decode_images(s.requests[-1]["messages"][0]["content"])) == 1 + 5 + 20
    np.testing.assert_allclose(res.progress(), truth, atol=0.02)  # interpolated between queries


def test_lazy_vlm_that_ignores_images_has_no_value_order_correlation(vlm):
    s = vlm(lazy)
    gvl = GVL(client=s.client(), num_frames=128)
    frames = progress_frames(np.arange(129) / 128, size=4)
    vocs = [gvl.predict(frames, "pick", seed=k).voc for k in range(50)]
    assert len(s.requests) == 50 and all(np.isfinite(vocs))
    assert np.mean(np.abs(vocs)) < 0.1, np.mean(np.abs(vocs))


@pytest.mark.parametrize("answer, expect_valid, problem", [
    ("I'm sorry, I cannot see any images.", 0, "no answer for frame"),
    ("Frame 1: Frame Description: x, Task Completion Percentages: 10%\n"
     "Frame 2: Frame Description: y, Task Completion Percentages: 150%", 1, "outside 0..100"),
    ("Frame 1: Task Completion Percentages: 10%\nFrame 2: Task Completion Percentages: 20%\n"
     "Frame 1: Task Completion Percentages: 90%", 1, "conflicting answers"),
    ("Frame 1: Task Completion Percentages: about half\nFrame 2: Task Completion "
     "Percentages: 20%", 1, "frame 1: no task completion percentage"),
    ("Frame 1: Task Completion Percentages: 10%\nFrame 2: Task Completion Percentages: 20%\n"
     "Frame 7: Task Completion Percentages: 70%", 2, "only frames 1..3"),
])
def test_malformed_answers_are_nan_and_reported(vlm, answer, expect_valid, problem):
    s = vlm(lambda req: (200, completion(answer)))
    gvl = GVL(client=s.client(), num_frames=3, seed=0)
    res = gvl.predict(progress_frames(np.linspace(0, 1, 4)), "pick")
    assert res.n_valid == expect_valid
    assert any(problem in p for p in res.problems), res.problems
    assert not np.any(res.values[np.isfinite(res.values)] > 100)  # never clipped into range
    assert not np.any(res.values == 0)  # a missing answer is not a silent 0
    with pytest.raises(GVLParseError, match="problems"):
        GVL(client=s.client(), num_frames=3, strict=True).predict(
            progress_frames(np.linspace(0, 1, 4)), "pick")


def test_parser_formats_and_voc():
    text = ("**Frame 2:** Frame Description: gripper closed. Task Completion Percentage: 40 %\n"
            "Frame 1: Frame Description: compared with Frame 2, earlier; "
            "Task Completion Percentages:15.5%\n"
            "Frame 3 : Task Completion Percentages: **100**%")
    v, problems = parse_gvl_response(text, 3)
    np.testing.assert_allclose(v, [15.5, 40, 100])
    assert problems == []
    assert value_order_correlation([np.nan, 1.0]) != value_order_correlation([np.nan, 1.0])  # NaN
    assert value_order_correlation([3.0, np.nan, 1.0]) == -1.0


def test_cut_off_answer_is_reported(vlm):
    s = vlm(lambda req: (200, completion("Frame 1: Task Completion Percentages: 5%\nFrame 2:",
                                         finish="length")))
    res = GVL(client=s.client(), num_frames=3).predict(progress_frames([0, 0.3, 0.6, 1]), "pick")
    assert any("cut off" in p for p in res.problems) and res.n_valid == 1


# ---------------------------------------------------------------------------- transport
def test_http_errors_timeouts_and_retries(vlm):
    frames = progress_frames([0, 0.5, 1.0])
    # 401: not retried, reported with status and body
    s = vlm(lambda req: (401, {"error": {"message": "invalid api key"}}))
    with pytest.raises(VLMHTTPError, match="HTTP 401.*invalid api key") as e:
        GVL(client=s.client(max_retries=3)).predict(frames, "pick")
    assert e.value.status == 401 and len(s.requests) == 1
    # 500, 429 (Retry-After: 0) then success: retried
    s = vlm([lambda req: (500, b"upstream crashed"),
             lambda req: (429, {"error": "slow down"}, {"Retry-After": "0"}), oracle])
    res = GVL(client=s.client(max_retries=2)).predict(frames, "pick")
    assert res.voc == pytest.approx(1.0) and len(s.requests) == 3
    # 503 on every attempt: the last error after max_retries + 1 attempts
    s = vlm(lambda req: (503, b"overloaded"))
    with pytest.raises(VLMHTTPError, match="HTTP 503 after 3 attempt"):
        GVL(client=s.client(max_retries=2)).predict(frames, "pick")
    assert len(s.requests) == 3
    # timeouts: each attempt times out; retried, then VLMTimeoutError
    s = vlm(lambda req: (200, completion("late"), {}, 1.0))
    t0 = time.monotonic()
    with pytest.raises(VLMTimeoutError, match="timed out after 0.2 s"):
        GVL(client=s.client(timeout=0.2, max_retries=1)).predict(frames, "pick")
    assert len(s.requests) == 2 and time.monotonic() - t0 < 1.5
    # 200 with a body that is not a chat completion
    for body, msg in [(b"<html>gateway</html>", "non-JSON"), ({"choices": []}, "no choices"),
                      ({"error": {"message": "model not loaded"}}, "model not loaded")]:
        s = vlm(lambda req, body=body: (200, body))
        with pytest.raises(VLMResponseError, match=msg):
            GVL(client=s.client()).predict(frames, "pick")


def test_connection_refused_and_missing_config(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client = ChatClient(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1,
                        backoff=0.01, timeout=2)
    with pytest.raises(VLMConnectionError, match="cannot reach"):
        client.complete([{"type": "text", "text": "hi"}])
    for var in ("ROBOT_RL_VLM_BASE_URL", "OPENAI_BASE_URL", "ROBOT_RL_VLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="ROBOT_RL_VLM_BASE_URL"):
        ChatClient(model="m")
    monkeypatch.setenv("ROBOT_RL_VLM_BASE_URL", "http://127.0.0.1:1/v1/")
    monkeypatch.setenv("ROBOT_RL_VLM_MODEL", "qwen2.5-vl")
    c = ChatClient()
    assert c.url == "http://127.0.0.1:1/v1/chat/completions" and c.model == "qwen2.5-vl"


def test_an_openai_key_goes_to_openai_only(monkeypatch):
    """OPENAI_API_KEY used to be sent to whatever ROBOT_RL_VLM_BASE_URL named."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.delenv("ROBOT_RL_VLM_API_KEY", raising=False)
    assert ChatClient(base_url="http://127.0.0.1:8000/v1", model="m").api_key is None
    assert ChatClient(base_url="https://api.openai.com/v1", model="m").api_key == "sk-secret"
    monkeypatch.setenv("ROBOT_RL_VLM_API_KEY", "local-key")  # a key meant for the configured server
    assert ChatClient(base_url="http://127.0.0.1:8000/v1", model="m").api_key == "local-key"


def test_png_encoder_roundtrip():
    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(img)))), img)


# ---------------------------------------------------------------------------- datasets / CLI
def test_gvl_filter_and_relabel_cli(vlm, tmp_path):
    """`robot-rl gvl filter DATASET --min-voc X` keeps the demos whose frames progress in order."""
    from robot_rl.data.lerobot import LeRobotDataset, write_episodes
    from robot_rl.rewards.cli import add_cli
    s = vlm(oracle)
    T = 16
    rng = np.random.default_rng(0)
    good = np.arange(T) / (T - 1)
    orders = [good, good[::-1], good[rng.permutation(T)], good]  # good, backwards, shuffled, good
    eps = [{"observation.images.front": progress_frames(p, size=32),
            "observation.state": np.zeros((T, 2), np.float32),
            "next.reward": np.zeros(T, np.float32)} for p in orders]
    write_episodes(tmp_path / "demos", eps, fps=10, task="pick up the red cube", features={
        "observation.images.front": {"dtype": "video", "shape": [32, 32, 3]},
        "observation.state": {"dtype": "float32", "shape": [2]},
        "next.reward": {"dtype": "float32", "shape": [1]}})
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="cmd"))
    common = ["--base-url", s.base_url, "--model", "fake-vlm", "--num-frames", "15"]
    args = parser.parse_args(["gvl", "filter", str(tmp_path / "demos"), "--out",
                              str(tmp_path / "kept"), "--min-voc", "0.5",
                              "--json", str(tmp_path / "filter.json"), *common])
    assert args.func(args) == 0
    res = json.loads((tmp_path / "filter.json").read_text())
    assert res["kept"] == [0, 3] and res["dropped"] == [1, 2] and res["unscored"] == []
    vocs = [e["voc"] for e in res["episodes"]]
    assert vocs[0] > 0.99 and vocs[1] < -0.99 and abs(vocs[2]) < 0.9
    kept = LeRobotDataset(tmp_path / "kept")
    assert kept.num_episodes == 2 and len(kept) == 2 * T
    assert kept.tasks == ["pick up the red cube"]
    # relabel: per-frame progress column and next.reward = progress of the next observation
    args = parser.parse_args(["gvl", "relabel", str(tmp_path / "kept"), "--out",
                              str(tmp_path / "relabelled"), *common])
    assert args.func(args) == 0
    ep = LeRobotDataset(tmp_path / "relabelled").episode(0)
    np.testing.assert_allclose(ep["gvl.progress"], good, atol=0.02)  # mp4 round trip
    np.testing.assert_allclose(ep["next.reward"][:-1], ep["gvl.progress"][1:], atol=1e-6)


# ---------------------------------------------------------------------------- success
def test_parse_yes_no():
    for text, want in [("Yes", True), ("**No**.", False), ("yes, the cube is lifted", True),
                       ("Answer: no", False), ("The final answer is: YES", True),
                       ("I think so", None), ("Yesterday it was", None), ("", None),
                       ("It is unclear whether yes or no", None)]:
        assert parse_yes_no(text) is want, text


class BrightnessEnv(gym.Env):
    """Toy env emitting frames that brighten each step (test scaffolding, not a mock of ours)."""
    observation_space = gym.spaces.Dict({"front": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return {"front": progress_frames([0.0])[0]}, {"is_success": False}

    def step(self, action):
        self.t += 1
        p = min(1.0, self.t / 10)
        return {"front": progress_frames([p])[0]}, 0.0, False, self.t >= 20, {"is_success": p >= 0.8}


def test_vlm_success_detector_terminates_episode(vlm):
    def judge(request):
        img = decode_images(request["messages"][0]["content"])[-1]
        return 200, completion("Yes." if brightness_progress(img) >= 80 else "No, not yet.")

    s = vlm(judge)
    det = VLMSuccessDetector("pick up the red cube", client=s.client())
    env = RewardWrapper(BrightnessEnv(), det, terminate_on_success=True)
    env.reset(seed=0)
    rewards, term = [], False
    while not term:
        _, r, term, trunc, info = env.step(np.zeros(1, np.float32))
        rewards.append(r)
    assert rewards == [0.0] * 7 + [1.0] and info["is_success"] and info["model_success"]
    assert "pick up the red cube" in s.requests[0]["messages"][0]["content"][0]["text"]
    # history: the last k frames, oldest first, one stream per episode
    det3 = VLMSuccessDetector("pick", client=s.client(), history=3)
    det3({"front": progress_frames([0.1, 0.2, 0.9])})
    assert [len(decode_images(r["messages"][0]["content"])) for r in s.requests[-3:]] == [1, 2, 3]
    det3.reset()
    det3({"front": progress_frames([0.1])})
    assert len(decode_images(s.requests[-1]["messages"][0]["content"])) == 1


def test_vlm_success_detector_reports_unparseable_answers(vlm):
    s = vlm(lambda req: (200, completion("Hard to say from this angle.")))
    det = VLMSuccessDetector("pick", client=s.client(), reask=1)
    out = det.score({"front": progress_frames([0.5])})
    assert np.isnan(out.reward[0]) and not out.success[0]
    assert det.unparseable == ["Hard to say from this angle."] and len(s.requests) == 2
    with pytest.raises(RewardModelError, match="not yes/no"):
        VLMSuccessDetector("pick", client=s.client(), reask=0, on_unparseable="raise")(
            {"front": progress_frames([0.5])})
    env = RewardWrapper(BrightnessEnv(), det, terminate_on_success=True)
    env.reset()
    with pytest.raises(RewardModelError, match="non-finite"):
        env.step(np.zeros(1, np.float32))
    env = RewardWrapper(BrightnessEnv(), det, terminate_on_success=True, on_invalid="env")
    env.reset()
    _, r, term, _, info = env.step(np.zeros(1, np.float32))
    assert r == 0.0 and not term and info["reward_invalid"] and env.invalid_steps == 1
