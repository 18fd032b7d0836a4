"""LeRobotDataset v3.0 writer/reader: real files, real PyAV encode/decode, real SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robot_rl.data.lerobot import (
    DatasetError,
    LeRobotDataset,
    LeRobotDatasetWriter,
    write_episodes,
)

FPS = 10
H = W = 64
VIDEO_KEYS = ["observation.images.front", "observation.images.wrist"]
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [6], "names": None},
    "action": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    **{k: {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]}
       for k in VIDEO_KEYS},
}
NUMERIC = ["observation.state", "action", "next.reward", "next.done"]
IMAGE_MAE = 3.0
LENGTHS = [12, 9, 15]
TASKS = ["pick", "place", "pick"]


def make_image(seed: int, t: int) -> np.ndarray:
    """Smooth colour gradients that move every frame (lossy video keeps them within a few levels)."""
    y, x = np.mgrid[0:H, 0:W] / H
    ph = 0.37 * seed + 0.04 * t
    r = 128 + 90 * np.sin(2 * np.pi * (0.7 * x + ph))
    g = 128 + 90 * np.cos(2 * np.pi * (0.5 * y - ph))
    b = 128 + 60 * np.sin(np.pi * (x + y) + 3 * ph)
    return np.stack([r, g, b], -1).round().astype(np.uint8)


def make_episode(seed: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    done = np.zeros(length, bool)
    done[-1] = True
    return {
        "observation.state": rng.normal(size=(length, 6)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(length, 3)).astype(np.float32),
        "next.reward": rng.normal(size=length).astype(np.float32),
        "next.done": done,
        VIDEO_KEYS[0]: np.stack([make_image(seed, t) for t in range(length)]),
        VIDEO_KEYS[1]: np.stack([make_image(seed + 100, t) for t in range(length)]),
    }


def add_episode(writer: LeRobotDatasetWriter, episode: dict[str, np.ndarray], task: str) -> None:
    for t in range(len(episode["action"])):
        writer.add_frame({k: v[t] for k, v in episode.items()}, task)


def image_mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def assert_episode_matches(ds: LeRobotDataset, i: int, expected: dict[str, np.ndarray], task: str) -> None:
    ep = ds.episode(i)
    for k in NUMERIC:
        np.testing.assert_array_equal(ep[k], expected[k], err_msg=k)
        assert ep[k].dtype == expected[k].dtype, k
    for k in VIDEO_KEYS:
        assert ep[k].shape == expected[k].shape and ep[k].dtype == np.uint8
        assert image_mae(ep[k], expected[k]) < IMAGE_MAE, k
    n = len(expected["action"])
    np.testing.assert_array_equal(ep["frame_index"], np.arange(n))
    np.testing.assert_allclose(ep["timestamp"], np.arange(n) / FPS, rtol=0, atol=1e-6)
    assert (ep["episode_index"] == i).all()
    assert list(ep["task"]) == [task] * n


def assert_stats_match(root: Path, episodes: list[dict[str, np.ndarray]]) -> None:
    stats = json.loads((root / "meta/stats.json").read_text())
    total = sum(len(e["action"]) for e in episodes)
    for k in NUMERIC:
        data = np.concatenate([e[k] for e in episodes]).astype(np.float64).reshape(total, -1)
        for name, fn in [("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)]:
            np.testing.assert_allclose(stats[k][name], fn(data, axis=0), atol=1e-9, err_msg=f"{k}/{name}")
        assert stats[k]["count"] == [total]
    for k in VIDEO_KEYS:
        px = np.concatenate([e[k] for e in episodes]).reshape(-1, 3) / 255.0
        for name, fn in [("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)]:
            value = np.asarray(stats[k][name])
            assert value.shape == (3, 1, 1)
            np.testing.assert_allclose(value.ravel(), fn(px, axis=0), atol=1e-9, err_msg=f"{k}/{name}")
        assert stats[k]["count"] == [total]
    index = np.arange(total, dtype=np.float64)
    np.testing.assert_allclose(stats["index"]["mean"], [index.mean()])
    np.testing.assert_allclose(stats["index"]["std"], [index.std()])


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


@pytest.fixture(scope="module")
def episodes() -> list[dict[str, np.ndarray]]:
    return [make_episode(seed, n) for seed, n in enumerate(LENGTHS)]


@pytest.fixture(scope="module")
def base_dataset(tmp_path_factory, episodes) -> Path:
    root = tmp_path_factory.mktemp("base") / "ds"
    with LeRobotDatasetWriter(root, FPS, FEATURES, robot_type="test_arm") as writer:
        for i, (ep, task) in enumerate(zip(episodes, TASKS)):
            add_episode(writer, ep, task)
            assert writer.save_episode() == i
    return root


@pytest.fixture
def dataset_copy(base_dataset, tmp_path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(base_dataset, root)
    return root


# --------------------------------------------------------------------------- round trip


def test_round_trip(base_dataset, episodes):
    root = base_dataset
    ds = LeRobotDataset(root)
    assert len(ds) == sum(LENGTHS) and ds.num_episodes == 3 and ds.fps == FPS
    assert ds.tasks == ["pick", "place"]
    assert ds.video_keys == VIDEO_KEYS
    for i, (ep, task) in enumerate(zip(episodes, TASKS)):
        assert_episode_matches(ds, i, ep, task)

    # Random access: same values as the episode view, and the same decoded image.
    ep2 = ds.episode(2)
    for local in [0, 7, LENGTHS[2] - 1]:
        item = ds[LENGTHS[0] + LENGTHS[1] + local]
        assert item["episode_index"] == 2 and item["frame_index"] == local and item["task"] == "pick"
        for k in NUMERIC:
            np.testing.assert_array_equal(item[k], ep2[k][local])
        for k in VIDEO_KEYS:
            np.testing.assert_array_equal(item[k], ep2[k][local])
    assert ds[-1]["index"] == len(ds) - 1
    with pytest.raises(IndexError):
        ds[len(ds)]

    # info.json
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "test_arm" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert info["chunks_size"] == 1000 and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["features"]["action"] == FEATURES["action"]
    assert info["features"]["next.done"] == {"dtype": "bool", "shape": [1], "names": None}
    assert info["features"]["index"] == {"dtype": "int64", "shape": [1], "names": None}
    standard = {"timestamp", "frame_index", "episode_index", "index", "task_index"}
    assert set(info["features"]) == set(FEATURES) | standard
    vinfo = info["features"][VIDEO_KEYS[0]]["info"]
    assert vinfo["video.height"] == H and vinfo["video.width"] == W and vinfo["video.fps"] == FPS
    assert vinfo["video.codec"] == "h264" and vinfo["video.pix_fmt"] == "yuv420p"

    # Files on disk: one data file and one mp4 per key per episode, no leftovers.
    files = tree(root)
    for i in range(3):
        assert f"data/chunk-000/file-{i:03d}.parquet" in files
        for k in VIDEO_KEYS:
            assert f"videos/{k}/chunk-000/file-{i:03d}.mp4" in files
    assert not temp_files(root)

    # Data parquet: fixed-size list vectors, scalar columns for shape [1], no video columns.
    schema = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 6)
    assert schema.field("next.reward").type == pa.float32()
    assert schema.field("next.done").type == pa.bool_()
    assert not set(VIDEO_KEYS) & set(schema.names)

    # Episodes metadata and tasks.
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["length"] for r in rows] == LENGTHS
    assert [r["tasks"] for r in rows] == [["pick"], ["place"], ["pick"]]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == [(0, 12), (12, 21), (21, 36)]
    assert rows[1][f"videos/{VIDEO_KEYS[1]}/file_index"] == 1
    assert rows[2][f"videos/{VIDEO_KEYS[0]}/to_timestamp"] == pytest.approx(LENGTHS[2] / FPS)
    tasks = pq.read_table(root / "meta/tasks.parquet").to_pydict()
    assert tasks == {"task_index": [0, 1], "task": ["pick", "place"]}

    assert_stats_match(root, episodes)
    assert set(ds.stats) == set(info["features"])


def test_write_episodes_helper(tmp_path, episodes):
    root = tmp_path / "ds"
    assert write_episodes(root, episodes[:2], FPS, FEATURES, task=["a", "b"]) == [0, 1]
    assert write_episodes(root, episodes[2:], FPS, FEATURES, task="a") == [2]
    ds = LeRobotDataset(root)
    assert ds.tasks == ["a", "b"] and ds.num_episodes == 3
    assert_episode_matches(ds, 2, episodes[2], "a")


# --------------------------------------------------------------------------- resume / discard


def test_append_after_reopen(tmp_path, episodes):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(root, FPS, FEATURES) as writer:
        add_episode(writer, episodes[0], "pick")
        writer.save_episode()
    with pytest.raises(DatasetError, match="fps"):
        LeRobotDatasetWriter(root, FPS + 1, FEATURES)
    bad = {**FEATURES, "action": {"dtype": "float32", "shape": [4], "names": None}}
    with pytest.raises(DatasetError, match="action"):
        LeRobotDatasetWriter(root, FPS, bad)
    with pytest.raises(DatasetError, match="codec"):
        LeRobotDatasetWriter(root, FPS, FEATURES, video_codec="libsvtav1")

    # The reader's feature dict (with standard columns and video info) is accepted back.
    with LeRobotDatasetWriter(root, FPS, LeRobotDataset(root).features) as writer:
        assert writer.num_episodes == 1
        with pytest.raises(DatasetError, match="another"):
            LeRobotDatasetWriter(root, FPS, FEATURES)  # one writer at a time
        add_episode(writer, episodes[1], "place")
        assert writer.save_episode() == 1
        add_episode(writer, episodes[2], "pick")
        assert writer.save_episode() == 2

    ds = LeRobotDataset(root)
    assert ds.num_episodes == 3 and len(ds) == sum(LENGTHS) and ds.tasks == ["pick", "place"]
    for i, (ep, task) in enumerate(zip(episodes, TASKS)):
        assert_episode_matches(ds, i, ep, task)
    np.testing.assert_array_equal([ds[i]["index"] for i in range(len(ds))], np.arange(len(ds)))
    assert_stats_match(root, episodes)


@pytest.mark.parametrize("field,template", [
    ("data_path", "../../escaped/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"),
    ("data_path", "/tmp/escaped-{chunk_index}-{file_index}.parquet"),
    ("video_path", "videos/../../../escaped/{video_key}/file-{chunk_index}-{file_index}.mp4"),
])
def test_paths_in_a_downloaded_info_json_cannot_leave_the_dataset(tmp_path, episodes, field, template):
    """A dataset's info.json names where its files go; appending to a downloaded one used to
    write wherever it said. Refused on open, by the writer and the reader, and nothing is
    written outside."""
    root = tmp_path / "a" / "b" / "ds"
    with LeRobotDatasetWriter(root, FPS, FEATURES) as writer:
        add_episode(writer, episodes[0], "pick")
        writer.save_episode()
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info[field] = template
    info_path.write_text(json.dumps(info))
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(DatasetError, match="outside the dataset"):
        LeRobotDatasetWriter(root, FPS, FEATURES)
    with pytest.raises(DatasetError, match="outside the dataset"):
        LeRobotDataset(root)
    assert {p for p in tmp_path.rglob("*")} == before
    assert not Path("/tmp/escaped-0-1.parquet").exists()


def test_non_finite_values_are_refused_before_they_reach_data_or_stats(tmp_path, episodes):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(root, FPS, FEATURES) as writer:
        frame = {k: v[0] for k, v in episodes[0].items()}
        for key, bad in [("action", np.array([0.1, np.nan, 0.0], np.float32)),
                         ("next.reward", np.float32(np.inf)),
                         ("observation.state", np.full(6, -np.inf, np.float32))]:
            with pytest.raises(ValueError, match=f"{key}.*not finite"):
                writer.add_frame({**frame, key: bad}, "pick")
        add_episode(writer, episodes[0], "pick")  # the episode was left intact
        writer.save_episode()
    stats = json.loads((root / "meta/stats.json").read_text())
    assert all(np.isfinite(np.asarray(stats[k]["mean"])).all() for k in NUMERIC)
    assert_episode_matches(LeRobotDataset(root), 0, episodes[0], "pick")


def test_discard_episode_leaves_nothing(tmp_path, episodes):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(root, FPS, FEATURES) as writer:
        add_episode(writer, episodes[0], "pick")
        writer.save_episode()
        before = {p: (root / p).read_bytes() for p in tree(root)}

        add_episode(writer, episodes[1], "never saved")
        assert temp_files(root)  # video is being encoded to temp files
        writer.discard_episode()
        assert {p: (root / p).read_bytes() for p in tree(root)} == before

        with pytest.raises(ValueError, match="shape"):  # a bad frame does not corrupt the buffer
            writer.add_frame({**{k: v[0] for k, v in episodes[2].items()}, "action": np.zeros(5)}, "pick")
        add_episode(writer, episodes[2], "pick")
        assert writer.save_episode() == 1

        add_episode(writer, episodes[1], "unsaved at close")
        with pytest.warns(UserWarning, match="discarding"):
            writer.close()
    assert not temp_files(root)
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 2 and ds.tasks == ["pick"]
    assert_episode_matches(ds, 1, episodes[2], "pick")
    assert_stats_match(root, [episodes[0], episodes[2]])


# --------------------------------------------------------------------------- validation


def _drop_column(root: Path) -> str:
    path = root / "data/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["action"]), path)
    return r"file-000\.parquet.*missing \['action'\]"


def _drop_row(root: Path) -> str:
    path = root / "data/chunk-000/file-001.parquet"
    pq.write_table(pq.read_table(path).slice(1), path)
    return r"file-001\.parquet: episode length mismatch"


def _garble_data(root: Path) -> str:
    path = root / "data/chunk-000/file-002.parquet"
    path.write_bytes(path.read_bytes()[:100])
    return r"file-002\.parquet: cannot read parquet"


def _delete_video(root: Path) -> str:
    (root / f"videos/{VIDEO_KEYS[1]}/chunk-000/file-002.mp4").unlink()
    return rf"missing video file .*{VIDEO_KEYS[1]}/chunk-000/file-002\.mp4"


def _delete_data(root: Path) -> str:
    (root / "data/chunk-000/file-001.parquet").unlink()
    return r"missing data file .*file-001\.parquet"


def _delete_info(root: Path) -> str:
    (root / "meta/info.json").unlink()
    return r"missing .*meta/info\.json"


def _bad_version(root: Path) -> str:
    path = root / "meta/info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "codebase_version": "v2.1"}))
    return r"info\.json: unsupported codebase_version 'v2\.1'"


def _bad_total_frames(root: Path) -> str:
    path = root / "meta/info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "total_frames": 99}))
    return r"total_frames=99"


@pytest.mark.parametrize(
    "corrupt",
    [
        _drop_column, _drop_row, _garble_data, _delete_video, _delete_data,
        _delete_info, _bad_version, _bad_total_frames,
    ],  # fmt: skip
)
def test_corruption_raises_dataset_error(dataset_copy, corrupt):
    pattern = corrupt(dataset_copy)
    with pytest.raises(DatasetError, match=pattern) as exc_info:
        LeRobotDataset(dataset_copy)
    assert isinstance(exc_info.value, ValueError)


def test_short_video_detected_on_decode(dataset_copy):
    # A video with fewer frames than the episode passes the open-time checks but not decoding.
    path = dataset_copy / f"videos/{VIDEO_KEYS[0]}/chunk-000/file-001.mp4"
    encode_mp4(path, [make_image(0, t) for t in range(LENGTHS[1] - 2)])
    ds = LeRobotDataset(dataset_copy)
    ds.episode(0)
    with pytest.raises(DatasetError, match=r"file-001\.mp4: decoded 7 frames for episode 1 of length 9"):
        ds.episode(1)


def encode_mp4(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_reader_handles_several_episodes_per_file(dataset_copy, episodes):
    """LeRobot packs episodes into shared files; the reader must use from/to index and timestamps."""
    root = dataset_copy
    decoded = LeRobotDataset(root)
    decoded = [decoded.episode(i) for i in range(3)]

    data_files = [root / f"data/chunk-000/file-{i:03d}.parquet" for i in range(3)]
    packed = pa.concat_tables([pq.read_table(p) for p in data_files])
    for p in data_files:
        p.unlink()
    pq.write_table(packed, data_files[0])
    for k in VIDEO_KEYS:
        for i in range(3):
            (root / f"videos/{k}/chunk-000/file-{i:03d}.mp4").unlink()
        # Default x264 GOP (not g=2): reaching episode 2 needs a real seek + decode-forward.
        encode_mp4(root / f"videos/{k}/chunk-000/file-000.mp4", [img for ep in decoded for img in ep[k]])
    ep_path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(ep_path)
    rows = table.to_pylist()
    for r in rows:
        r["data/file_index"] = 0
        for k in VIDEO_KEYS:
            r[f"videos/{k}/file_index"] = 0
            r[f"videos/{k}/from_timestamp"] = r["dataset_from_index"] / FPS
            r[f"videos/{k}/to_timestamp"] = r["dataset_to_index"] / FPS
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), ep_path)

    ds = LeRobotDataset(root)
    for i in range(3):
        ep = ds.episode(i)
        for k in NUMERIC:
            np.testing.assert_array_equal(ep[k], episodes[i][k])
        for k in VIDEO_KEYS:
            assert image_mae(ep[k], decoded[i][k]) < IMAGE_MAE
            assert image_mae(ep[k], episodes[i][k]) < 2 * IMAGE_MAE  # encoded twice
    last = ds.episode(2)
    for local in [0, 5, LENGTHS[2] - 1]:
        item = ds[LENGTHS[0] + LENGTHS[1] + local]
        for k in VIDEO_KEYS:
            np.testing.assert_array_equal(item[k], last[k][local])


# --------------------------------------------------------------------------- crash safety


def child_main(root: str, mode: str) -> None:
    """Runs in a subprocess: write episodes 0-1, then die while writing episode 2."""
    eps = [make_episode(seed, n) for seed, n in enumerate(LENGTHS)]
    writer = LeRobotDatasetWriter(root, FPS, FEATURES)
    for i in range(2):
        add_episode(writer, eps[i], TASKS[i])
        writer.save_episode()
    if mode == "mid_episode":
        # Parent sends SIGKILL while we are inside the add_frame loop.
        for t in range(10**6):
            writer.add_frame({k: v[t % LENGTHS[2]] for k, v in eps[2].items()}, "task of the killed episode")
            if t == 3:
                print("READY", flush=True)
            time.sleep(0.02)
    elif mode == "before_commit":
        # Die inside save_episode after data/video files and meta/episodes are replaced, just
        # before info.json (the commit point) would be.
        real_replace = os.replace

        def replace(src, dst):
            if Path(dst).name == "info.json":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)

        os.replace = replace
        add_episode(writer, eps[2], "task of the killed episode")
        writer.save_episode()


def run_child(root: Path, mode: str) -> subprocess.Popen:
    # Same import path as this process (installed package, PYTHONPATH checkout, ...).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    this_file = str(Path(__file__).resolve())
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('lerobot_test_child', {this_file!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "mod.child_main(sys.argv[1], sys.argv[2])\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(root), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def check_recovered(root: Path, episodes: list[dict[str, np.ndarray]]) -> None:
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 2 and len(ds) == LENGTHS[0] + LENGTHS[1]
    for i in range(2):
        assert_episode_matches(ds, i, episodes[i], TASKS[i])
    assert ds[len(ds) - 1]["episode_index"] == 1

    # The writer cleans up on reopen and appends after the last committed episode.
    with LeRobotDatasetWriter(root, FPS, FEATURES) as writer:
        assert writer.num_episodes == 2
        assert not temp_files(root)
        assert not (root / "data/chunk-000/file-002.parquet").exists()
        assert len(pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")) == 2
        add_episode(writer, episodes[2], TASKS[2])
        assert writer.save_episode() == 2
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 3 and len(ds) == sum(LENGTHS)
    for i in range(3):
        assert_episode_matches(ds, i, episodes[i], TASKS[i])
    assert_stats_match(root, episodes)


def test_sigkill_mid_episode(tmp_path, episodes):
    root = tmp_path / "ds"
    proc = run_child(root, "mid_episode")
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()
        time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=20) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert temp_files(root)  # half-written videos of episode 2 are left behind...
    check_recovered(root, episodes)  # ...and do not matter


def test_sigkill_before_commit(tmp_path, episodes):
    root = tmp_path / "ds"
    proc = run_child(root, "before_commit")
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err
    # Episode 2's files and metadata row are on disk, but info.json never committed them.
    assert (root / "data/chunk-000/file-002.parquet").exists()
    assert len(pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")) == 3
    check_recovered(root, episodes)
