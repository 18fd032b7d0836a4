"""Generative Value Learning (GVL, Ma et al. 2024) progress values and a VLM success detector,
over any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, Ollama, hosted APIs).

GVL: the VLM sees the episode's first frame, in order, as the 0% scene, then the other frames
(subsampled to `num_frames`) in a random order, and answers a task-completion percentage per
frame ("Frame i: Frame Description: ..., Task Completion Percentages: x%"). Answers are parsed
and put back in time order. Value-Order Correlation, VOC = Spearman(predictions, time), scores
how well the predictions follow the (expert) episode's progress. The parser never guesses: a
missing, duplicated, malformed or out-of-range (outside 0..100) answer is NaN and listed in
`problems` (no clipping, no rescaling); `strict=True` raises instead.

Uses: dense progress rewards (`relabel_dataset`), success detection (final progress), and
filtering low-quality demos (`filter_dataset`, `robot-rl gvl filter DATASET --min-voc X`).

`VLMSuccessDetector` (RoboFuME-style) asks a yes/no question about the latest frame(s); it is a
`RewardModel` with a success detector, so `RewardWrapper(..., terminate_on_success=True)` works.
Unparseable answers are reported (NaN reward, counted, kept in `unparseable`), never guessed.

Client configuration: arguments, else the environment: `ROBOT_RL_VLM_BASE_URL` (or
`OPENAI_BASE_URL`), `ROBOT_RL_VLM_MODEL`, `ROBOT_RL_VLM_API_KEY` (or `OPENAI_API_KEY`, sent
only to api.openai.com; optional for local servers). Standard library only (http.client, with
a total deadline, a reply cap and no redirects: robot_rl/http_client.py); images are sent as base64 PNG
data URLs (JPEG when Pillow is installed and `image_format="jpeg"`).
"""
from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import re
import struct
import time
import urllib.parse
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from robot_rl.http_client import ReplyTooLarge, post
from robot_rl.rewards.base import (RewardModel, RewardModelError, RewardOutput, as_batch,
                                   require_key, spearman)

__all__ = [
    "VLMError", "VLMHTTPError", "VLMTimeoutError", "VLMConnectionError", "VLMResponseError",
    "GVLParseError", "ChatClient", "ChatResponse", "encode_png", "image_data_url",
    "GVLResult", "GVL", "parse_gvl_response", "value_order_correlation", "filter_dataset",
    "relabel_dataset", "VLMSuccessDetector", "parse_yes_no",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- errors
class VLMError(RuntimeError):
    """Base class of VLM backend and answer errors."""


class VLMHTTPError(VLMError):
    def __init__(self, status: int, body: str, url: str, attempts: int = 1):
        self.status, self.body, self.url, self.attempts = status, body, url, attempts
        super().__init__(f"VLM endpoint {url} returned HTTP {status} after {attempts} "
                         f"attempt(s): {body[:300]}")


class VLMTimeoutError(VLMError):
    pass


class VLMConnectionError(VLMError):
    pass


class VLMResponseError(VLMError):
    """The endpoint answered, but not with a usable chat completion."""


class GVLParseError(VLMError):
    """GVL answers that could not be parsed (strict mode)."""


# ---------------------------------------------------------------------------- images
def encode_png(img: np.ndarray) -> bytes:
    """uint8 [H, W, 3] (or [H, W]) -> PNG bytes, standard library only."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {a.dtype}")
    if a.ndim == 2:
        color = 0
    elif a.ndim == 3 and a.shape[2] == 3:
        color = 2
    else:
        raise ValueError(f"expected [H, W, 3] or [H, W], got {a.shape}")
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def image_data_url(img: np.ndarray, image_format: str = "png", quality: int = 90) -> str:
    if image_format == "png":
        data, mime = encode_png(np.ascontiguousarray(img)), "image/png"
    elif image_format == "jpeg":
        from PIL import Image  # optional
        buf = io.BytesIO()
        Image.fromarray(np.asarray(img, np.uint8)).save(buf, format="JPEG", quality=quality)
        data, mime = buf.getvalue(), "image/jpeg"
    else:
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# ---------------------------------------------------------------------------- the client
@dataclass
class ChatResponse:
    text: str
    raw: dict
    attempts: int
    seconds: float
    finish_reason: str | None = None


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ChatClient:
    """Minimal OpenAI-compatible chat-completions client (POST {base_url}/chat/completions)
    with image inputs, a per-request timeout and retries with exponential backoff on
    timeouts, connection errors and HTTP 408/409/425/429/5xx (honouring a numeric
    Retry-After). Other HTTP errors raise `VLMHTTPError` at once."""

    def __init__(self, base_url: str | None = None, model: str | None = None,
                 api_key: str | None = None, timeout: float = 60.0, max_retries: int = 2,
                 backoff: float = 1.0, max_backoff: float = 30.0, max_tokens: int = 2048,
                 temperature: float = 0.0, extra_headers: Mapping[str, str] | None = None,
                 extra_body: Mapping[str, Any] | None = None):
        base_url = base_url or os.environ.get("ROBOT_RL_VLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        model = model or os.environ.get("ROBOT_RL_VLM_MODEL")
        if not base_url:
            raise ValueError("no VLM endpoint: pass base_url or set ROBOT_RL_VLM_BASE_URL (e.g. "
                             "http://localhost:8000/v1 for vLLM/SGLang, http://localhost:11434/v1 "
                             "for Ollama, https://api.openai.com/v1)")
        if not model:
            raise ValueError("no VLM model name: pass model or set ROBOT_RL_VLM_MODEL")
        base_url = base_url.rstrip("/")
        self.url = base_url if base_url.endswith("/chat/completions") else base_url + "/chat/completions"
        self.model = model
        # OPENAI_API_KEY goes to OpenAI only: ROBOT_RL_VLM_BASE_URL may name any server
        openai = urllib.parse.urlsplit(self.url).hostname == "api.openai.com"
        self.api_key = api_key or os.environ.get("ROBOT_RL_VLM_API_KEY") or \
            (os.environ.get("OPENAI_API_KEY") if openai else None)
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.extra_headers, self.extra_body = dict(extra_headers or {}), dict(extra_body or {})
        self.max_reply_bytes = 16 << 20

    def _request(self, body: bytes) -> tuple[int, bytes, Mapping[str, str]]:
        """One POST with a total deadline, a reply cap and no redirects, so the key goes to
        `self.url`'s host only (robot_rl/http_client.py)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   **self.extra_headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return post(self.url, body, headers, self.timeout, self.max_reply_bytes)

    def complete(self, content: list[dict], system: str | None = None) -> ChatResponse:
        """One chat completion for a user message made of content parts (see `text_part`,
        `image_part`). Returns the assistant text."""
        messages = ([{"role": "system", "content": system}] if system else []) + \
                   [{"role": "user", "content": content}]
        body = json.dumps({"model": self.model, "messages": messages,
                           "max_tokens": self.max_tokens, "temperature": self.temperature,
                           **self.extra_body}).encode()
        t0 = time.monotonic()
        last: Exception | None = None
        for attempt in range(1, self.max_retries + 2):
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            try:
                status, payload, headers = self._request(body)
            except TimeoutError as e:
                last = VLMTimeoutError(f"VLM request to {self.url} timed out after "
                                       f"{self.timeout:g} s (attempt {attempt}/"
                                       f"{self.max_retries + 1})")
                last.__cause__ = e
            except ReplyTooLarge as e:
                raise VLMResponseError(f"VLM endpoint {self.url}: {e}") from None
            except OSError as e:
                last = VLMConnectionError(f"cannot reach VLM endpoint {self.url}: {e} "
                                          f"(attempt {attempt}/{self.max_retries + 1})")
                last.__cause__ = e
            else:
                if status == 200:
                    resp = self._parse(payload)
                    resp.attempts, resp.seconds = attempt, time.monotonic() - t0
                    return resp
                text = payload.decode("utf-8", "replace")
                last = VLMHTTPError(status, text, self.url, attempt)
                if status not in _RETRY_STATUS:
                    raise last
                ra = headers.get("Retry-After") or headers.get("retry-after")
                if ra is not None:
                    try:
                        delay = min(self.max_backoff, max(0.0, float(ra)))
                    except ValueError:
                        pass
            if attempt <= self.max_retries:
                log.warning("%s; retrying in %.2f s", last, delay)
                time.sleep(delay)
        assert last is not None
        raise last

    def _parse(self, payload: bytes) -> ChatResponse:
        try:
            data = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise VLMResponseError(f"VLM endpoint {self.url} returned non-JSON: "
                                   f"{payload[:200]!r}") from e
        if not isinstance(data, dict):
            raise VLMResponseError(f"VLM endpoint {self.url} returned {type(data).__name__}, "
                                   f"not a chat completion object")
        if "error" in data and not data.get("choices"):
            raise VLMResponseError(f"VLM endpoint {self.url} returned an error: {data['error']}")
        try:
            choice = data["choices"][0]
            msg = choice["message"]
            content = msg.get("content")
        except (KeyError, IndexError, TypeError) as e:
            raise VLMResponseError(f"VLM endpoint {self.url}: no choices[0].message in "
                                   f"{json.dumps(data)[:300]}") from e
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            refusal = msg.get("refusal") if isinstance(msg, dict) else None
            raise VLMResponseError(f"VLM endpoint {self.url}: no text content in the answer"
                                   + (f" (refusal: {refusal})" if refusal else ""))
        return ChatResponse(content, data, 0, 0.0, choice.get("finish_reason"))


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def image_part(img: np.ndarray, image_format: str = "png", detail: str | None = None) -> dict:
    part: dict = {"type": "image_url", "image_url": {"url": image_data_url(img, image_format)}}
    if detail:
        part["image_url"]["detail"] = detail
    return part


def _make_client(client, client_kwargs) -> ChatClient:
    if client is not None:
        if client_kwargs:
            raise ValueError(f"give either client= or client options, not both: {sorted(client_kwargs)}")
        return client
    return ChatClient(**client_kwargs)


# ---------------------------------------------------------------------------- GVL
GVL_INTRO = (
    "You are an expert roboticist tasked to predict task completion percentages for frames of "
    "a robot for the task of {task}. The task completion percentages are between 0 and 100, "
    "where 100 corresponds to full task completion. Note that these frames are in random "
    "order, so please pay attention to the individual frames when reasoning about task "
    "completion percentage.")
GVL_INITIAL = "Initial robot scene:"
GVL_INITIAL_AFTER = "In the initial robot scene, the task completion percentage is 0%."
GVL_EXAMPLES = ("Here are examples of the robot performing the task at various stages, with "
                "their task completion percentages:")
GVL_QUERY = (
    "Now, for the task of {task}, output the task completion percentage for the following "
    "frames that are presented in random order. For each frame, format your response as "
    "follows: Frame {{i}}: Frame Description: {{}}, Task Completion Percentages: {{}}%")

_FRAME_RE = re.compile(r"\bFrame\s*#?\s*(\d+)\s*[*_]*\s*:", re.IGNORECASE)
_PCT_RE = re.compile(r"Task\s*Completion\s*Percentages?\s*\**\s*[:=]?\s*\**\s*"
                     r"(-?\d+(?:\.\d+)?)\s*(%?)", re.IGNORECASE)
_ANY_PCT_RE = re.compile(r"(-?\d+(?:\.\d+)?)\s*%")


def parse_gvl_response(text: str, n: int) -> tuple[np.ndarray, list[str]]:
    """Percentages for presented frames 1..n (index 0 = "Frame 1") from a GVL answer, NaN where
    an answer is missing, duplicated with different values, malformed or outside [0, 100].
    Each frame's value is the one labelled "Task Completion Percentage(s)" in its block (or,
    failing that, the block's only "x%" number). Returns (values [n], problems)."""
    values = np.full(n, np.nan)
    problems: list[str] = []
    seen: dict[int, float] = {}
    conflict: set[int] = set()
    heads = list(_FRAME_RE.finditer(text or ""))
    for h, nxt in zip(heads, heads[1:] + [None]):
        i = int(h.group(1))
        block = text[h.end():nxt.start() if nxt is not None else len(text)]
        m = _PCT_RE.search(block)
        if m is not None:
            raw = m.group(1)
        else:
            pct = _ANY_PCT_RE.findall(block)
            if len(pct) != 1:
                problems.append(f"frame {i}: no task completion percentage"
                                + (f" (ambiguous: {pct})" if pct else ""))
                conflict.add(i)
                continue
            raw = pct[0]
        if not (1 <= i <= n):
            problems.append(f"answer for frame {i}, but only frames 1..{n} were shown")
            continue
        v = float(raw)
        if i in seen and seen[i] != v:
            problems.append(f"frame {i}: conflicting answers {seen[i]:g} and {v:g}")
            conflict.add(i)
        seen.setdefault(i, v)
    for i, v in seen.items():
        if i in conflict:
            continue
        if not (0.0 <= v <= 100.0):
            problems.append(f"frame {i}: {v:g}% is outside 0..100")
            continue
        values[i - 1] = v
    missing = [i for i in range(1, n + 1) if i not in seen and i not in conflict]
    if missing:
        problems.append(f"no answer for frame(s) {missing[:20]}{'...' if len(missing) > 20 else ''}")
    return values, problems


def value_order_correlation(values, times=None) -> float:
    """VOC: Spearman correlation of progress predictions with time (NaN entries ignored;
    NaN if fewer than 2 valid predictions)."""
    v = np.asarray(values, np.float64)
    t = np.arange(len(v), dtype=np.float64) if times is None else np.asarray(times, np.float64)
    ok = np.isfinite(v)
    return spearman(v[ok], t[ok]) if ok.sum() >= 2 else float("nan")


@dataclass
class GVLResult:
    frame_indices: np.ndarray    # episode frame indices of the queried frames, time order
    values: np.ndarray           # predicted completion (%) per queried frame, time order; NaN = invalid
    presentation: np.ndarray     # presentation[k] = position (in frame_indices) of "Frame k+1"
    voc: float
    problems: list[str] = field(default_factory=list)
    response: str = ""
    episode_length: int = 0

    @property
    def n_valid(self) -> int:
        return int(np.isfinite(self.values).sum())

    def progress(self) -> np.ndarray:
        """Per-frame progress in [0, 1] for all `episode_length` frames: frame 0 is 0, queried
        frames their prediction / 100, others linearly interpolated between valid
        predictions (held constant after the last one). NaN only if nothing is valid."""
        ok = np.isfinite(self.values)
        x = np.concatenate([[0], self.frame_indices[ok]]).astype(np.float64)
        y = np.concatenate([[0.0], self.values[ok] / 100.0])
        if len(x) == 1 and self.episode_length > 1:
            return np.full(self.episode_length, np.nan)
        return np.interp(np.arange(self.episode_length), x, y)


class GVL:
    """GVL progress estimator. `examples`: optional in-context episodes, each
    `(frames [T, H, W, 3], completion_percentages [T])`, shown in order before the query."""

    def __init__(self, client: ChatClient | None = None, num_frames: int = 30,
                 image_format: str = "png", examples: Sequence | None = None,
                 strict: bool = False, seed: int = 0, **client_kwargs):
        self.client = _make_client(client, client_kwargs)
        self.num_frames, self.image_format = int(num_frames), image_format
        self.examples = list(examples or [])
        self.strict = strict
        self.rng = np.random.default_rng(seed)

    def query_indices(self, T: int) -> np.ndarray:
        """Frames 1..T-1 (frame 0 is the 0% context), subsampled evenly to `num_frames`."""
        if T < 2:
            raise ValueError(f"GVL needs episodes of at least 2 frames, got {T}")
        if T - 1 <= self.num_frames:
            return np.arange(1, T)
        return np.unique(np.round(np.linspace(1, T - 1, self.num_frames)).astype(int))

    def build_prompt(self, frames: np.ndarray, task: str, indices: np.ndarray,
                     presentation: np.ndarray) -> list[dict]:
        fmt = self.image_format
        parts = [text_part(GVL_INTRO.format(task=task)), text_part(GVL_INITIAL),
                 image_part(frames[0], fmt), text_part(GVL_INITIAL_AFTER)]
        if self.examples:
            parts.append(text_part(GVL_EXAMPLES))
            k = 1
            for ex_frames, ex_values in self.examples:
                for img, v in zip(ex_frames, ex_values):
                    parts += [text_part(f"Frame {k}:"), image_part(img, fmt),
                              text_part(f"Task Completion Percentages: {float(v):.0f}%")]
                    k += 1
        parts.append(text_part(GVL_QUERY.format(task=task)))
        for k, pos in enumerate(presentation):
            parts += [text_part(f"Frame {k + 1}:"), image_part(frames[indices[pos]], fmt)]
        return parts

    def predict(self, frames: np.ndarray, task: str, seed: int | None = None) -> GVLResult:
        """Progress predictions for one episode's frames (uint8 [T, H, W, 3])."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        idx = self.query_indices(len(frames))
        rng = self.rng if seed is None else np.random.default_rng(seed)
        presentation = rng.permutation(len(idx))
        resp = self.client.complete(self.build_prompt(frames, task, idx, presentation))
        shown, problems = parse_gvl_response(resp.text, len(idx))
        if resp.finish_reason == "length":
            problems.append("the answer was cut off (finish_reason=length): raise max_tokens")
        values = np.full(len(idx), np.nan)
        values[presentation] = shown  # un-shuffle: "Frame k+1" shows frame idx[presentation[k]]
        if problems and self.strict:
            raise GVLParseError(f"GVL answer problems: {problems}; answer: {resp.text[:500]!r}")
        if problems:
            log.warning("GVL answer problems: %s", "; ".join(problems))
        return GVLResult(idx, values, presentation, value_order_correlation(values, idx),
                         problems, resp.text, len(frames))

    @staticmethod
    def success(result: GVLResult, threshold: float = 95.0) -> bool | None:
        """Did the episode end in success (last valid prediction >= threshold)? None if
        there is no valid prediction."""
        ok = np.flatnonzero(np.isfinite(result.values))
        return None if len(ok) == 0 else bool(result.values[ok[-1]] >= threshold)


# ---------------------------------------------------------------------------- datasets
def _open(dataset):
    from robot_rl.data.lerobot import LeRobotDataset
    return dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)


def _episode_task(ds, ep, task):
    if task:
        return task
    if "task" in ep and len(ep["task"]):
        return str(ep["task"][0])
    raise ValueError(f"{ds.root}: no task string; pass task=")


def _camera(ds, image_key):
    key = f"observation.images.{image_key}"
    if key not in ds.features:
        cams = [k[len("observation.images."):] for k in ds.camera_keys]
        raise ValueError(f"{ds.root} has no camera {image_key!r}; it has {cams}")
    return key


def _copy_episodes(ds, out, keep: Sequence[int], modify: Callable | None = None,
                   extra_features: Mapping | None = None) -> None:
    """Write episodes `keep` of `ds` to a new dataset `out` (re-encoding videos);
    `modify(i, episode_dict)` may change columns before writing."""
    import shutil

    from robot_rl.data.lerobot import DEFAULT_FEATURES, LeRobotDatasetWriter
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    feats = {k: v for k, v in ds.features.items() if k not in DEFAULT_FEATURES}
    feats.update(extra_features or {})
    with LeRobotDatasetWriter(out, fps=int(ds.fps), features=feats,
                              robot_type=ds.info.get("robot_type") or "unknown") as w:
        for i in keep:
            ep = ds.episode(i)
            if modify is not None:
                ep = modify(i, ep)
            T = len(ep["frame_index"])
            for t in range(T):
                w.add_frame({k: ep[k][t] for k in feats}, task=str(ep["task"][t]))
            w.save_episode()
    meta = Path(ds.root) / "meta" / "robot_rl.json"  # env id for replay (robot_rl.collect)
    if meta.is_file():
        shutil.copy(meta, out / "meta" / "robot_rl.json")


def filter_dataset(dataset, out, gvl: GVL, min_voc: float, image_key: str = "front",
                   task: str | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Keep the episodes whose GVL VOC is >= `min_voc` and write them to `out`. Episodes whose
    VOC cannot be computed (unusable answers) are dropped and listed as `unscored`."""
    ds = _open(dataset)
    key = _camera(ds, image_key)
    per_episode, keep, unscored = [], [], []
    it = range(ds.num_episodes)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="gvl", unit="ep")
    for i in it:
        ep = ds.episode(i)
        res = gvl.predict(ep[key], _episode_task(ds, ep, task), seed=seed + i)
        per_episode.append({"episode": i, "voc": res.voc, "valid": res.n_valid,
                            "queried": len(res.values), "problems": res.problems})
        if not math.isfinite(res.voc):
            unscored.append(i)
        elif res.voc >= min_voc:
            keep.append(i)
    if keep:
        _copy_episodes(ds, out, keep)
    return {"dataset": str(ds.root), "out": str(out) if keep else None, "min_voc": min_voc,
            "kept": keep, "dropped": [i for i in range(ds.num_episodes) if i not in keep],
            "unscored": unscored, "episodes": per_episode}


def relabel_dataset(dataset, out, gvl: GVL, image_key: str = "front", task: str | None = None,
                    reward: str = "progress", seed: int = 0) -> dict:
    """Write `out` = `dataset` with GVL progress: a per-frame `gvl.progress` column (progress of
    the frame's observation, 0..1) and `next.reward` replaced by the progress of the next
    observation (`reward="progress"`) or its increase (`"delta"`, potential-based). Raises if
    an episode has no valid prediction at all."""
    if reward not in ("progress", "delta"):
        raise ValueError(f"reward must be 'progress' or 'delta', got {reward!r}")
    ds = _open(dataset)
    key = _camera(ds, image_key)
    results = {}

    def modify(i, ep):
        res = gvl.predict(ep[key], _episode_task(ds, ep, task), seed=seed + i)
        p = res.progress()
        if not np.all(np.isfinite(p)):
            raise GVLParseError(f"episode {i}: no valid GVL prediction ({res.problems})")
        nxt = np.append(p[1:], p[-1])  # the last frame has no next observation: hold
        ep = dict(ep)
        ep["gvl.progress"] = p.astype(np.float32)
        ep["next.reward"] = (nxt if reward == "progress" else nxt - p).astype(np.float32)
        results[i] = {"voc": res.voc, "valid": res.n_valid, "problems": res.problems}
        return ep

    _copy_episodes(ds, out, range(ds.num_episodes), modify,
                   {"gvl.progress": {"dtype": "float32", "shape": [1], "names": None}})
    return {"dataset": str(ds.root), "out": str(out), "reward": reward, "episodes": results}


# ---------------------------------------------------------------------------- success
_YES_NO_START = re.compile(r"^[\s*_`\"'#>(\[]*(yes|no)\b", re.IGNORECASE)
_YES_NO_LABEL = re.compile(r"\b(?:final\s+answer|answer)\s*(?:is)?\s*[:\-]?\s*[*_`\"']*\s*(yes|no)\b",
                           re.IGNORECASE)


def parse_yes_no(text: str) -> bool | None:
    """True / False for an answer that starts with yes/no (or states "Answer: yes/no");
    None (unparseable) otherwise - no guessing from other words."""
    if not text:
        return None
    m = _YES_NO_START.match(text) or _YES_NO_LABEL.search(text)
    return None if m is None else m.group(1).lower() == "yes"


SUCCESS_QUESTION = ("The robot's task is: {task}. {frames} Has the robot successfully completed "
                    "the task in the {last}? Answer with a single word: yes or no.")


class VLMSuccessDetector(RewardModel):
    """RoboFuME-style success detector: asks the VLM whether the latest frame (or the last
    `history` frames, oldest first) shows the task completed. Reward 1.0 / 0.0 for yes / no.

    An answer that is not a clear yes/no is re-asked up to `reask` times; if still unclear it is
    recorded in `unparseable` and reported as NaN reward and success False (with
    `on_unparseable="raise"`, a `RewardModelError`). NaN makes `RewardWrapper` raise (or fall
    back to the env reward with `on_invalid="env"`) rather than train on a guess.

    With `history > 1`, calls are treated as a stream (one frame per observation, in order)
    and `reset()` clears it at episode start."""
    name = "vlm_success"
    has_success = True

    def __init__(self, task: str, image_key: str = "front", client: ChatClient | None = None,
                 history: int = 1, reask: int = 1, on_unparseable: str = "nan",
                 image_format: str = "png", question: str = SUCCESS_QUESTION, **client_kwargs):
        if on_unparseable not in ("nan", "raise"):
            raise ValueError(f"on_unparseable must be 'nan' or 'raise', got {on_unparseable!r}")
        self.client = _make_client(client, client_kwargs)
        self.task, self.image_key, self.history = task, image_key, int(history)
        self.reask, self.on_unparseable = int(reask), on_unparseable
        self.image_format, self.question = image_format, question
        self._frames: deque = deque(maxlen=self.history)
        self.unparseable: list[str] = []
        self.queries = 0

    def reset(self) -> None:
        self._frames.clear()

    def ask(self, frames: Sequence[np.ndarray]) -> tuple[bool | None, str]:
        """(verdict or None, last answer text) for the given frames (oldest first)."""
        n = len(frames)
        desc = ("Here is the latest camera frame." if n == 1 else
                f"Here are the last {n} camera frames, oldest first.")
        parts = [text_part(self.question.format(task=self.task, frames=desc,
                                                last="frame" if n == 1 else "last frame"))]
        parts += [image_part(f, self.image_format) for f in frames]
        text = ""
        for _ in range(self.reask + 1):
            self.queries += 1
            text = self.client.complete(parts).text
            verdict = parse_yes_no(text)
            if verdict is not None:
                return verdict, text
        self.unparseable.append(text)
        log.warning("VLM success detector: unparseable answer %r", text[:200])
        if self.on_unparseable == "raise":
            raise RewardModelError(f"VLM success detector: answer is not yes/no: {text[:300]!r}")
        return None, text

    def score(self, observations) -> RewardOutput:
        batch = as_batch(observations)
        frames = require_key(batch, self.image_key, "VLMSuccessDetector")
        reward = np.empty(len(frames), np.float32)
        succ = np.zeros(len(frames), bool)
        for i, f in enumerate(frames):
            if self.history > 1:
                self._frames.append(np.asarray(f))
                shown = list(self._frames)
            else:
                shown = [np.asarray(f)]
            verdict, _ = self.ask(shown)
            reward[i] = np.nan if verdict is None else float(verdict)
            succ[i] = bool(verdict)
        return RewardOutput(reward, succ)

    def __call__(self, observations) -> np.ndarray:
        return self.score(observations).reward

    def success(self, observations) -> np.ndarray:
        return self.score(observations).success
