"""LeRobotDataset v3.0 writer and reader (own implementation, no dependency on ``lerobot``).

Layout under ``root`` (LeRobotDataset v3.0)::

    meta/info.json                                  dataset description + feature spec
    meta/stats.json                                 per-feature min/max/mean/std/count/q01..q99
    meta/tasks.parquet                              task strings <-> task_index
    meta/episodes/chunk-000/file-000.parquet        one row per episode (+ per-episode stats)
    data/chunk-XXX/file-YYY.parquet                 per-frame numeric columns
    videos/<video_key>/chunk-XXX/file-YYY.mp4       camera streams (yuv420p, lossy)

Feature spec (the ``features`` argument of the writer), one entry per user feature::

    {"observation.state": {"dtype": "float32", "shape": [14], "names": None},
     "next.done": {"dtype": "bool", "shape": [1], "names": None},
     "observation.images.front": {"dtype": "video", "shape": [128, 128, 3],
                                  "names": ["height", "width", "channels"]}}

Camera features: ``dtype`` ``"video"`` (mp4 files) or ``"image"`` (PNG bytes in the parquet
column, a struct ``{bytes, path}`` as LeRobot/HF ``datasets`` store them). Their shape is
``[H, W, 3]`` or channel-first ``[3, H, W]`` (``names`` ``["channels", "height", "width"]``, as
LeRobot's HIL-SERL recorder writes); whatever the declared layout, the reader returns frames as
uint8 ``[H, W, 3]`` and the writer accepts either layout.

Stats: min/max/mean/std/count and the quantiles q01, q10, q50, q90, q99 that LeRobot 0.6
writes (per episode in ``meta/episodes``, aggregated into ``meta/stats.json`` as LeRobot does:
count-weighted means of the per-episode quantiles), so QUANTILES normalization works.

The standard columns ``timestamp``, ``frame_index``, ``episode_index``, ``index`` and
``task_index`` are added (and filled) by the writer. Features of shape ``[1]`` are stored as
scalar parquet columns (as LeRobot does), so the reader returns them as ``[T]`` arrays per
episode and as scalars per frame; other features come back as ``[T, *shape]``.

Writer layout: one episode per data file and one mp4 per (video key, episode). This keeps
saving an episode atomic: every file of an episode is written to a hidden temp file
(``.<name>.<pid>.tmp``), renamed into place, and only then are the meta files rewritten
(each via temp file + ``os.replace``), ``meta/info.json`` last. ``info.json``'s
``total_episodes`` is the commit record: the reader ignores anything beyond it (episode rows,
data/video files, temp files), and the writer deletes such leftovers when it reopens the root.
The reader does not rely on the one-episode-per-file layout: it locates an episode's rows via
``dataset_from_index``/``dataset_to_index`` and its video frames via ``from_timestamp``/
``to_timestamp``, so datasets that pack several episodes per file (as LeRobot does) work too.

Only one writer per root at a time (enforced with an ``flock`` on ``root/.writer.lock``).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import warnings
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robot_rl.checkpoint import fsync_path

__all__ = [
    "CODEBASE_VERSION",
    "DatasetError",
    "LeRobotDataset",
    "LeRobotDatasetWriter",
    "write_episodes",
]

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 500

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
LOCK_NAME = ".writer.lock"

# Per-frame columns every LeRobot dataset has; filled in by the writer.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
_NUMERIC_DTYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
}  # fmt: skip
_STAT_NAMES = ("min", "max", "mean", "std", "count")
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
_QUANTILE_NAMES = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)  # q01 ... q99
_CAMERA_DTYPES = ("video", "image")
# Codec names in info.json ("video.codec") -> PyAV encoders that write them, preferred first.
_ENCODERS_FOR_CODEC = {
    "h264": ("libx264",), "av1": ("libsvtav1", "libaom-av1"), "hevc": ("libx265",),
    "vp9": ("libvpx-vp9",),
}  # fmt: skip
DEFAULT_VIDEO_CODEC = "libx264"

# g=2 (a keyframe every 2 frames, LeRobot's choice too) keeps single-frame random access cheap.
DEFAULT_VIDEO_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"preset": "veryfast", "crf": "20", "g": "2"},
    "libsvtav1": {"preset": "10", "crf": "30", "g": "2"},
}


class DatasetError(ValueError):
    """A dataset on disk is missing, inconsistent or in an unsupported format."""


# --------------------------------------------------------------------------- small helpers


def _tmp_path(path: Path) -> Path:
    # Hidden and not ending in .parquet/.mp4, so no glob for real files (ours or LeRobot's) sees it.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _dataset_file(root: Path, template: str, **fields) -> Path:
    """`root / template.format(**fields)`, refused unless it stays inside `root`: the templates
    (`data_path`, `video_path`) and video keys come from a dataset's own info.json, and a
    downloaded one could name any file (`../../.bashrc`, `/etc/...`) to be written or read."""
    rel = template.format(**fields)
    path = Path(os.path.normpath(root / rel))
    if os.path.isabs(rel) or not path.is_relative_to(os.path.normpath(root)):
        raise DatasetError(f"{root / INFO_PATH}: the file path {rel!r} (from {template!r}) leads "
                           f"outside the dataset; refusing it")
    return path


def _atomic_write(path: Path, write_fn) -> None:
    """Write via ``write_fn(tmp_path)`` then rename, so readers see the old or new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        write_fn(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, obj: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=4, ensure_ascii=False)

    _atomic_write(path, write)


def _cleanup_temp_files(root: Path) -> None:
    for p in root.rglob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)


def _read_parquet(fn, path: Path, **kwargs):
    """``fn(path)`` for a pyarrow.parquet reader, with failures reported as DatasetError naming the file."""
    try:
        return fn(path, **kwargs)
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"{path}: cannot read parquet: {e}") from e


def _next_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    return (chunk_index + 1, 0) if file_index + 1 >= chunks_size else (chunk_index, file_index + 1)


def _normalize_features(features: Mapping[str, Mapping[str, Any]], *, strict: bool = True) -> dict:
    """User features (defaults removed) as ``{name: {"dtype", "shape", "names"}}``, validated."""
    out = {}
    for name, ft in features.items():
        if name in DEFAULT_FEATURES:
            continue  # always written by us; tolerated so `reader.features` can be passed back in
        if "/" in name:
            raise ValueError(f"feature name {name!r} must not contain '/'")
        if "dtype" not in ft or "shape" not in ft:
            raise ValueError(f"feature {name!r} needs 'dtype' and 'shape', got {dict(ft)}")
        dtype, shape = ft["dtype"], [int(s) for s in ft["shape"]]
        names = ft.get("names")
        if not shape or any(s <= 0 for s in shape):
            raise ValueError(f"feature {name!r}: shape must be non-empty and positive, got {shape}")
        if dtype in _CAMERA_DTYPES:
            if len(shape) != 3 or 3 not in (shape[0], shape[2]):
                raise ValueError(
                    f"{dtype} feature {name!r}: shape must be [height, width, 3] or [3, height, width], "
                    f"got {shape}"
                )
            h, w, _ = _hwc({"shape": shape, "names": names})
            if dtype == "video" and strict and (h % 2 or w % 2):
                raise ValueError(f"video feature {name!r}: yuv420p needs even height/width, got {shape}")
            if names is None:
                cf = _channel_first({"shape": shape, "names": None})
                names = ["channels", "height", "width"] if cf else ["height", "width", "channels"]
        elif dtype not in _NUMERIC_DTYPES:
            raise ValueError(
                f"feature {name!r}: unsupported dtype {dtype!r} (supported: 'video', 'image', "
                f"{', '.join(sorted(_NUMERIC_DTYPES))}; 'string' is not implemented)"
            )
        out[name] = {"dtype": dtype, "shape": shape, "names": list(names) if names is not None else None}
    return out


def _is_camera(ft: Mapping[str, Any]) -> bool:
    return ft["dtype"] in _CAMERA_DTYPES


def _channel_first(ft: Mapping[str, Any]) -> bool:
    """Whether a camera feature is declared [C, H, W]: by its names when given (LeRobot's
    ``["channels", "height", "width"]``), else by which end of the shape holds the 3 channels."""
    names = ft.get("names")
    if names and len(names) == 3:
        first = str(names[0]).lower()
        if first in ("channels", "channel", "c"):
            return True
        if str(names[2]).lower() in ("channels", "channel", "c"):
            return False
    shape = list(ft["shape"])
    return shape[0] == 3 and shape[2] != 3


def _hwc(ft: Mapping[str, Any]) -> tuple[int, int, int]:
    """(height, width, channels) of a camera feature, whichever layout it declares."""
    a, b, c = (int(s) for s in ft["shape"])
    return (b, c, a) if _channel_first(ft) else (a, b, c)


def _same_camera(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return _is_camera(a) and _is_camera(b) and _hwc(a) == _hwc(b)


def _stat_shape(ft: Mapping[str, Any]) -> tuple[int, ...]:
    return (3, 1, 1) if _is_camera(ft) else tuple(ft["shape"])


def _encode_png(img: np.ndarray) -> bytes:
    cc = av.CodecContext.create("png", "w")
    cc.width, cc.height, cc.pix_fmt = img.shape[1], img.shape[0], "rgb24"
    packets = cc.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"))
    packets += cc.encode(None)
    return b"".join(bytes(p) for p in packets)


def _decode_image_bytes(data: bytes, where: str) -> np.ndarray:
    """An encoded image (PNG as LeRobot writes; any format Pillow reads, where it is installed)
    -> uint8 [H, W, 3]."""
    try:
        from PIL import Image
    except ImportError:
        Image = None
    try:
        if Image is not None:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        frames = av.CodecContext.create("png", "r").decode(av.Packet(data))
        return frames[0].to_ndarray(format="rgb24")
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad dataset
        raise DatasetError(f"{where}: cannot decode image: {e}") from e


def _images_from_arrow(col: pa.ChunkedArray | pa.Array, root: Path, where: str) -> np.ndarray:
    """An ``image`` column (struct {bytes, path}) -> uint8 [T, H, W, 3]. Bytes are used when
    present, else the file at ``path`` (relative to the dataset root)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_struct(arr.type) or arr.type.get_field_index("bytes") < 0:
        raise DatasetError(f"{where}: image column must be a struct {{bytes, path}}, got {arr.type}")
    has_path = arr.type.get_field_index("path") >= 0
    blobs = arr.field("bytes").to_pylist()
    paths = arr.field("path").to_pylist() if has_path else [None] * len(blobs)
    frames = []
    for i, (blob, path) in enumerate(zip(blobs, paths)):
        if blob is None:
            file = None if path is None else (Path(path) if Path(path).is_absolute() else root / path)
            if file is None or not file.is_file():
                raise DatasetError(f"{where}: row {i} has neither image bytes nor a readable path ({path!r})")
            blob = file.read_bytes()
        frames.append(_decode_image_bytes(blob, f"{where} row {i}"))
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def _images_to_arrow(pngs: Sequence[bytes]) -> pa.Array:
    paths = [f"frame-{i:06d}.png" for i in range(len(pngs))]
    return pa.StructArray.from_arrays(
        [pa.array(list(pngs), pa.binary()), pa.array(paths, pa.string())], names=["bytes", "path"]
    )


def _to_arrow(values: np.ndarray, shape: Sequence[int]) -> pa.Array:
    """[T, *shape] -> scalar column for shape [1], else (nested) fixed-size lists like HF datasets."""
    arr = pa.array(np.ascontiguousarray(values).reshape(-1))
    if list(shape) != [1]:
        for dim in reversed(shape):
            arr = pa.FixedSizeListArray.from_arrays(arr, dim)
    return arr


def _from_arrow(col: pa.ChunkedArray | pa.Array, ft: Mapping[str, Any], where: str) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    # flatten() (unlike .values) honours slice offsets; works for fixed-size and variable lists.
    while isinstance(arr.type, (pa.ListType, pa.LargeListType, pa.FixedSizeListType)):
        arr = arr.flatten()
    if arr.null_count:
        raise DatasetError(f"{where}: contains null values")
    values = arr.to_numpy(zero_copy_only=False).astype(ft["dtype"], copy=False)
    shape = list(ft["shape"])
    if values.size != n * int(np.prod(shape)):
        raise DatasetError(f"{where}: {values.size} values for {n} frames do not match shape {shape}")
    return values.reshape((n,) if shape == [1] else (n, *shape))


# --------------------------------------------------------------------------- stats


def _numeric_stats(values: np.ndarray, shape: Sequence[int]) -> dict[str, np.ndarray]:
    x = values.astype(np.float64).reshape(len(values), *shape)
    stats = {
        "min": x.min(0),
        "max": x.max(0),
        "mean": x.mean(0),
        "std": x.std(0),
        "count": np.array([len(values)], dtype=np.int64),
    }
    qs = np.quantile(x, QUANTILES, axis=0)
    stats.update({name: q for name, q in zip(_QUANTILE_NAMES, qs)})
    return stats


class _ImageStats:
    """Per-channel stats of uint8 frames, reported in [0, 1].

    Keeps a 256-bin histogram per channel: exact, and much cheaper per frame than sums/min/max.
    """

    _OFFSETS = np.array([0, 256, 512], dtype=np.int32)

    def __init__(self) -> None:
        self.frames = 0
        self.hist = np.zeros((3, 256), np.int64)

    def add(self, img: np.ndarray) -> None:
        self.frames += 1
        self.hist += np.bincount((img.reshape(-1, 3) + self._OFFSETS).ravel(), minlength=768).reshape(3, 256)

    def result(self) -> dict[str, np.ndarray]:
        levels = np.arange(256) / 255.0
        n = self.hist.sum(1)
        mean = (self.hist * levels).sum(1) / n
        var = (self.hist * (levels - mean[:, None]) ** 2).sum(1) / n
        seen = self.hist > 0
        stats = {
            "min": np.array([levels[s].min() for s in seen]).reshape(3, 1, 1),
            "max": np.array([levels[s].max() for s in seen]).reshape(3, 1, 1),
            "mean": mean.reshape(3, 1, 1),
            "std": np.sqrt(var).reshape(3, 1, 1),
            "count": np.array([self.frames], dtype=np.int64),
        }
        # Exact per-channel quantiles of the pixel values (the smallest level whose cumulative
        # share reaches q), in [0, 1] like the other image stats.
        cum = np.cumsum(self.hist, 1)
        for name, q in zip(_QUANTILE_NAMES, QUANTILES):
            idx = [min(int(np.searchsorted(c, q * c[-1], side="left")), 255) for c in cum]
            stats[name] = levels[idx].reshape(3, 1, 1)
        return stats


def _aggregate_stats(per_episode: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine per-episode stats exactly (weighted mean, pooled variance)."""
    counts = np.array([s["count"][0] for s in per_episode], dtype=np.float64)
    total = counts.sum()
    w = counts.reshape(-1, *([1] * per_episode[0]["mean"].ndim))
    means = np.stack([s["mean"] for s in per_episode])
    stds = np.stack([s["std"] for s in per_episode])
    mean = (w * means).sum(0) / total
    var = (w * (stds**2 + (means - mean) ** 2)).sum(0) / total
    out = {
        "min": np.min(np.stack([s["min"] for s in per_episode]), 0),
        "max": np.max(np.stack([s["max"] for s in per_episode]), 0),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([int(total)], dtype=np.int64),
    }
    # Quantiles as LeRobot 0.6 aggregates them: count-weighted mean of per-episode quantiles
    # (only where every episode has them, e.g. not over episodes written before we wrote them).
    for q in _QUANTILE_NAMES:
        if all(q in s for s in per_episode):
            out[q] = (w * np.stack([s[q] for s in per_episode])).sum(0) / total
    return out


def _dataset_stats(features: Mapping[str, Any], episodes: list[dict]) -> dict[str, dict[str, list]]:
    """stats.json content from the per-episode ``stats/<feature>/<stat>`` columns."""
    stats = {}
    for name, ft in features.items():
        shape = _stat_shape(ft)
        per_ep = []
        for row in episodes:
            vals = {s: row.get(f"stats/{name}/{s}") for s in _STAT_NAMES}
            if any(v is None for v in vals.values()):
                continue  # e.g. foreign episode rows without stats for this feature
            vals.update({q: row[f"stats/{name}/{q}"] for q in _QUANTILE_NAMES
                         if row.get(f"stats/{name}/{q}") is not None})
            per_ep.append({
                s: np.asarray(v, dtype=np.float64).reshape((1,) if s == "count" else shape)
                for s, v in vals.items()
            })  # fmt: skip
        if per_ep:
            agg = _aggregate_stats(per_ep)
            stats[name] = {s: (v.astype(np.int64) if s == "count" else v).tolist() for s, v in agg.items()}
    return stats


# --------------------------------------------------------------------------- video


class _VideoEncoder:
    """Streams frames of one (video key, episode) into a temp mp4; ``finish`` closes it."""

    def __init__(self, path: Path, fps: int, height: int, width: int, codec: str, options: dict[str, str]):
        self.path = path
        self.tmp = _tmp_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self._container = av.open(str(self.tmp), mode="w", format="mp4")
        self._stream = self._container.add_stream(codec, rate=fps, options=dict(options))
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"

    def add(self, img: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = self.frames  # stream time base is 1/fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def finish(self) -> None:
        for packet in self._stream.encode(None):  # flush delayed frames
            self._container.mux(packet)
        self._container.close()
        fsync_path(self.tmp)

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - we are throwing the file away anyway
            pass
        self.tmp.unlink(missing_ok=True)


def _decode_video(path: Path, from_ts: float, to_ts: float, fps: float) -> list[np.ndarray]:
    """RGB frames whose presentation time lies in [from_ts, to_ts) (half a frame of tolerance)."""
    tol = 0.5 / fps
    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if from_ts > tol:  # lands on the keyframe at or before from_ts
                container.seek(int(from_ts / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = frame.time
                if t < from_ts - tol:
                    continue
                if t >= to_ts - tol:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, IndexError) as e:
        raise DatasetError(f"{path}: cannot decode video: {e}") from e
    return frames


# --------------------------------------------------------------------------- metadata


def _read_tasks(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"missing tasks file {path}")
    table = _read_parquet(pq.read_table, path)
    if "task_index" not in table.column_names:
        raise DatasetError(f"{path}: no 'task_index' column")
    # v3 stores the task string as the pandas index: column "task" or "__index_level_0__".
    pandas_meta = table.schema.pandas_metadata or {}
    candidates = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    candidates += ["task", "__index_level_0__"]
    col = next((c for c in candidates if c in table.column_names), None)
    if col is None:
        raise DatasetError(f"{path}: no task string column (expected 'task' or the pandas index)")
    indices, strings = table["task_index"].to_pylist(), table[col].to_pylist()
    if sorted(indices) != list(range(len(indices))):
        raise DatasetError(f"{path}: task_index values must be 0..{len(indices) - 1}, got {sorted(indices)}")
    tasks = [""] * len(indices)
    for i, s in zip(indices, strings):
        tasks[i] = s
    return tasks


def _write_tasks(path: Path, tasks: list[str]) -> None:
    table = pa.table({
        "task_index": pa.array(range(len(tasks)), pa.int64()),
        "task": pa.array(tasks, pa.string()),
    })  # fmt: skip
    # Pandas metadata so `pd.read_parquet` gives LeRobot's DataFrame: index = task string.
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": {"encoding": "UTF-8"}}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }  # fmt: skip
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


_VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")


def _episode_columns(info: Mapping[str, Any]) -> list[str]:
    cols = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
            "dataset_from_index", "dataset_to_index"]  # fmt: skip
    for key, ft in info["features"].items():
        if ft["dtype"] == "video":
            cols += [f"videos/{key}/{c}" for c in _VIDEO_COLUMNS]
    return cols


class _Meta:
    """Validated metadata: info.json, committed episode rows, task strings."""

    def __init__(self, root: Path, *, with_stats: bool = False):
        info_path = root / INFO_PATH
        if not info_path.is_file():
            raise DatasetError(f"missing {info_path} (not a LeRobot dataset, or nothing committed yet)")
        try:
            info = json.loads(info_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{info_path}: invalid JSON: {e}") from e
        version = info.get("codebase_version")
        if version != CODEBASE_VERSION:
            raise DatasetError(
                f"{info_path}: unsupported codebase_version {version!r}, expected {CODEBASE_VERSION!r}"
            )
        for key in ("fps", "features", "total_episodes", "total_frames"):
            if key not in info:
                raise DatasetError(f"{info_path}: missing key {key!r}")
        for name, ft in info["features"].items():
            if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
                raise DatasetError(f"{info_path}: feature {name!r} needs 'dtype' and 'shape'")
        for name in DEFAULT_FEATURES:
            if name not in info["features"]:
                raise DatasetError(f"{info_path}: standard feature {name!r} missing from 'features'")
        self.info = info
        n = int(info["total_episodes"])

        # Task strings. An empty dataset may not have written one yet.
        tasks_path = root / TASKS_PATH
        self.tasks = _read_tasks(tasks_path) if n > 0 or tasks_path.exists() else []

        # Episode rows. Rows beyond total_episodes belong to a save that crashed before committing
        # info.json: they are not part of the dataset.
        paths = sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
        if n > 0 and not paths:
            raise DatasetError(f"missing episodes metadata {root / EPISODES_DIR}/chunk-*/file-*.parquet")
        required = _episode_columns(info)
        tables = []
        for p in paths:
            names = _read_parquet(pq.read_schema, p).names
            missing = [c for c in required if c not in names]
            if missing:
                raise DatasetError(f"{p}: episodes metadata lacks columns {missing}")
            cols = names if with_stats else [c for c in names if not c.startswith("stats/")]
            tables.append(_read_parquet(pq.read_table, p, columns=cols))
        rows = pa.concat_tables(tables, promote_options="default").to_pylist() if tables else []
        rows.sort(key=lambda r: r["episode_index"])
        self.uncommitted_rows = max(len(rows) - n, 0)
        rows = rows[:n]
        if [r["episode_index"] for r in rows] != list(range(n)):
            raise DatasetError(
                f"{root / EPISODES_DIR}: expected episodes 0..{n - 1} (total_episodes in {info_path}), "
                f"found {[r['episode_index'] for r in rows]}"
            )
        expected_from = 0
        for r in rows:
            start, stop = r["dataset_from_index"], r["dataset_to_index"]
            if start != expected_from or stop - start != r["length"]:
                raise DatasetError(
                    f"{root / EPISODES_DIR}: episode {r['episode_index']} length mismatch: "
                    f"length={r['length']}, dataset_from_index={start}, dataset_to_index={stop}"
                )
            expected_from = r["dataset_to_index"]
        if expected_from != int(info["total_frames"]):
            raise DatasetError(
                f"{info_path}: total_frames={info['total_frames']} but episode lengths sum to {expected_from}"
            )
        self.episodes = rows


# --------------------------------------------------------------------------- writer


class LeRobotDatasetWriter:
    """Append episodes to a LeRobotDataset v3.0 at ``root`` (created if needed, resumed if present).

    Args:
        root: dataset directory.
        fps: frames per second (int).
        features: user feature spec, see module docstring. Standard columns are added automatically.
        robot_type: stored in info.json (kept from the existing dataset when resuming).
        video_codec: PyAV encoder name. None: the codec of the dataset's videos when appending
            (``libsvtav1`` for LeRobot's default AV1), else ``libx264``, because AV1 is much
            slower to encode on CPU; both decode everywhere.
        video_options: encoder options; defaults to ``DEFAULT_VIDEO_OPTIONS[video_codec]``.
        chunks_size: max files per ``chunk-XXX`` directory (LeRobot default 1000).

    Resuming checks that fps, features and video codec match the existing dataset
    (``DatasetError`` otherwise), removes temp files and files of uncommitted episodes left by
    a crashed writer, and appends after the last committed episode. A camera feature matches
    the dataset's when its frames have the same height, width and channels, whatever the
    declared layout or camera dtype (video/image): the dataset's declaration is kept, and so
    are its feature ``names`` where ours are None.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        fps: int,
        features: Mapping[str, Mapping[str, Any]],
        robot_type: str = "unknown",
        video_codec: str | None = None,
        video_options: Mapping[str, str] | None = None,
        chunks_size: int = DEFAULT_CHUNKS_SIZE,
    ):
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        self.root = Path(root)
        self.fps = int(fps)
        self._features = _normalize_features(features)
        self._set_feature_keys()
        self._codec_requested = video_codec
        if video_codec is not None:
            self._set_codec(video_codec, video_options)  # fails early if unknown
        self._video_options_arg = video_options
        self._closed = False

        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise DatasetError(f"{self.root}: another LeRobotDatasetWriter has this dataset open") from None
        try:
            _cleanup_temp_files(self.root)  # leftovers of a killed writer (we hold the lock)
            if (self.root / INFO_PATH).exists():
                self._resume(chunks_size)
            else:
                if video_codec is None:
                    self._set_codec(DEFAULT_VIDEO_CODEC, video_options)
                self._info = self._new_info(robot_type, chunks_size)
                self._episodes: list[dict] = []
                self._tasks: list[str] = []
                self._write_meta(self._info, self._episodes, self._tasks)
        except BaseException:
            self._release_lock()
            raise
        self._reset_buffer()

    # ---- setup

    def _set_feature_keys(self) -> None:
        self._video_keys = [k for k, ft in self._features.items() if ft["dtype"] == "video"]
        self._image_keys = [k for k, ft in self._features.items() if ft["dtype"] == "image"]
        self._numeric_keys = [k for k, ft in self._features.items() if not _is_camera(ft)]

    def _set_codec(self, codec: str, options: Mapping[str, str] | None) -> None:
        self._codec = codec
        self._codec_name = av.codec.Codec(codec, "w").canonical_name
        if options is None:
            options = DEFAULT_VIDEO_OPTIONS.get(codec, {"g": "2"})
        self._video_options = dict(options)

    @staticmethod
    def _encoder_for(codec_name: str) -> str | None:
        """A PyAV encoder writing ``codec_name`` (info.json's "video.codec"), None if none here."""
        for enc in _ENCODERS_FOR_CODEC.get(codec_name, (codec_name,)):
            try:
                av.codec.Codec(enc, "w")
                return enc
            except Exception:  # noqa: BLE001 - not built into this PyAV/FFmpeg
                continue
        return None

    @property
    def video_codec(self) -> str:
        """The PyAV encoder this writer uses (e.g. ``libx264``, ``libsvtav1``)."""
        return self._codec

    def _new_info(self, robot_type: str, chunks_size: int) -> dict:
        features = {}
        for name, ft in self._features.items():
            features[name] = dict(ft)
            if ft["dtype"] == "video":
                h, w, c = _hwc(ft)
                features[name]["info"] = {
                    "video.height": h,
                    "video.width": w,
                    "video.codec": self._codec_name,
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": c,
                    "has_audio": False,
                }
        features.update({k: dict(v) for k, v in DEFAULT_FEATURES.items()})
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": int(chunks_size),
            "data_files_size_in_mb": DEFAULT_DATA_FILE_SIZE_IN_MB,
            "video_files_size_in_mb": DEFAULT_VIDEO_FILE_SIZE_IN_MB,
            "fps": self.fps,
            "splits": {"train": "0:0"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self._video_keys else None,
            "features": features,
        }

    def _resume(self, chunks_size: int) -> None:
        meta = _Meta(self.root, with_stats=True)
        info = meta.info
        where = self.root / INFO_PATH
        if info["fps"] != self.fps:
            raise DatasetError(f"{where}: dataset has fps={info['fps']}, writer was given fps={self.fps}")
        stored = _normalize_features(info["features"], strict=False)
        mine = self._features

        def same(k: str) -> bool:
            a, b = stored.get(k), mine.get(k)
            if a is None or b is None:
                return a is b
            if _is_camera(a) or _is_camera(b):
                return _same_camera(a, b)
            return (a["dtype"], a["shape"]) == (b["dtype"], b["shape"]) and (
                b["names"] is None or a["names"] == b["names"]
            )

        diff = sorted(k for k in stored.keys() | mine.keys() if not same(k))
        if diff:
            details = "; ".join(f"{k}: dataset={stored.get(k)} writer={mine.get(k)}" for k in diff)
            raise DatasetError(f"{where}: features do not match the existing dataset ({details})")
        self._features = {k: stored[k] for k in mine}  # the dataset's declarations win
        self._set_feature_keys()
        codecs = {info["features"][k].get("info", {}).get("video.codec") for k in self._video_keys} - {None}
        if self._codec_requested is None:
            # Match the dataset (e.g. LeRobot's AV1) so every episode of a key has one codec.
            stored_codec = sorted(codecs)[0] if codecs else None
            encoder = self._encoder_for(stored_codec) if stored_codec else DEFAULT_VIDEO_CODEC
            if encoder is None:
                raise DatasetError(
                    f"{where}: videos are encoded as {stored_codec!r} and this PyAV has no encoder "
                    f"for it; pass a video_codec (all episodes of a video key must share a codec)"
                )
            self._set_codec(encoder, self._video_options_arg)
        for key in self._video_keys:
            codec = info["features"][key].get("info", {}).get("video.codec")
            if codec is not None and codec != self._codec_name:
                raise DatasetError(
                    f"{where}: video {key!r} is encoded as {codec!r} but the writer uses {self._codec!r} "
                    f"({self._codec_name!r}); pass a matching video_codec"
                )
        info.setdefault("chunks_size", int(chunks_size))
        info.setdefault("data_path", DATA_PATH)
        if self._video_keys:
            info["video_path"] = info.get("video_path") or VIDEO_PATH
        self._info, self._episodes, self._tasks = info, meta.episodes, meta.tasks
        self._data_path(0, 0)  # refuse paths leading outside the dataset before writing anything
        for key in self._video_keys:
            self._video_path(key, 0, 0)
        if meta.uncommitted_rows:  # a save crashed between the episodes file and info.json
            self._write_meta(self._info, self._episodes, self._tasks)
        self._remove_unreferenced_files()

    def _remove_unreferenced_files(self) -> None:
        """Delete data/video files not referenced by a committed episode (from a crashed save).

        They are invisible to our reader, but LeRobot globs every data file, so don't leave them.
        """
        keep = {self._data_path(r["data/chunk_index"], r["data/file_index"]) for r in self._episodes}
        for key in self._video_keys:
            keep |= {
                self._video_path(key, r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"])
                for r in self._episodes
            }
        candidates = list(self.root.glob("data/chunk-*/file-*.parquet"))
        candidates += list(self.root.glob("videos/*/chunk-*/file-*.mp4"))
        for p in candidates:
            if p not in keep:
                p.unlink(missing_ok=True)

    def _data_path(self, chunk_index: int, file_index: int) -> Path:
        return _dataset_file(self.root, self._info["data_path"], chunk_index=chunk_index,
                             file_index=file_index)

    def _video_path(self, key: str, chunk_index: int, file_index: int) -> Path:
        return _dataset_file(self.root, self._info["video_path"], video_key=key,
                             chunk_index=chunk_index, file_index=file_index)

    def _next_location(self, prefix: str) -> tuple[int, int]:
        # Always start a new file after the last one used, so we never touch an existing file
        # (also when appending to a LeRobot dataset that packs several episodes per file).
        if not self._episodes:
            return 0, 0
        last = self._episodes[-1]
        chunks_size = self._info["chunks_size"]
        return _next_file(last[f"{prefix}/chunk_index"], last[f"{prefix}/file_index"], chunks_size)

    # ---- episode buffer

    def _reset_buffer(self) -> None:
        self._frames: dict[str, list[np.ndarray]] = {k: [] for k in self._numeric_keys}
        self._pngs: dict[str, list[bytes]] = {k: [] for k in self._image_keys}
        self._frame_tasks: list[str] = []
        self._encoders: dict[str, _VideoEncoder] = {}
        self._image_stats = {k: _ImageStats() for k in self._video_keys + self._image_keys}

    @property
    def num_episodes(self) -> int:
        """Committed episodes (the next ``save_episode`` returns this index)."""
        return len(self._episodes)

    @property
    def num_buffered_frames(self) -> int:
        return len(self._frame_tasks)

    @property
    def features(self) -> dict:
        return self._info["features"]

    def add_frame(self, frame: Mapping[str, Any], task: str) -> None:
        """Buffer one frame of the current episode. Video frames are encoded right away (to a temp file).

        ``frame`` holds exactly the user features: numeric values with the feature's shape
        (scalars allowed for shape [1]) and images as uint8 arrays [H, W, 3] (or [3, H, W]).
        """
        self._check_open()
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty string, got {task!r}")
        reserved = sorted(set(frame) & (set(DEFAULT_FEATURES) | {"task"}))
        if reserved:
            raise ValueError(f"frame keys {reserved} are filled in by the writer; remove them")
        missing = sorted(self._features.keys() - frame.keys())
        extra = sorted(frame.keys() - self._features.keys())
        if missing or extra:
            raise ValueError(f"frame keys do not match features: missing {missing}, unexpected {extra}")

        # Validate everything before touching the buffer, so a bad frame leaves the episode intact.
        values = {}
        for name, ft in self._features.items():
            arr = np.asarray(frame[name])
            shape = tuple(ft["shape"])
            if _is_camera(ft):
                hwc = _hwc(ft)
                if arr.dtype == np.uint8 and arr.shape != hwc and arr.shape == (hwc[2], hwc[0], hwc[1]):
                    arr = arr.transpose(1, 2, 0)  # channel-first frame
                if arr.dtype != np.uint8 or arr.shape != hwc:
                    raise ValueError(
                        f"{name!r}: expected uint8 image of shape {hwc} (or channel-first "
                        f"{(hwc[2], hwc[0], hwc[1])}), got {arr.dtype} {arr.shape}"
                    )
                arr = np.ascontiguousarray(arr)
            else:
                if not np.can_cast(arr.dtype, ft["dtype"], casting="same_kind"):
                    raise ValueError(f"{name!r}: cannot store {arr.dtype} values as {ft['dtype']}")
                if shape == (1,) and arr.shape == ():
                    arr = arr.reshape(1)
                if arr.shape != shape:
                    raise ValueError(f"{name!r}: expected shape {shape}, got {arr.shape}")
                arr = arr.astype(ft["dtype"])  # copy: the caller may reuse its buffers
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise ValueError(f"{name!r}: {arr.tolist()} is not finite; NaN/inf would "
                                     f"poison the dataset's stats and every learner reading it")
            values[name] = arr

        for key in self._video_keys:
            if key not in self._encoders:
                h, w, _ = _hwc(self._features[key])
                path = self._video_path(key, *self._next_location(f"videos/{key}"))
                self._encoders[key] = _VideoEncoder(path, self.fps, h, w, self._codec, self._video_options)
            self._encoders[key].add(values[key])
            self._image_stats[key].add(values[key])
        for key in self._image_keys:
            self._pngs[key].append(_encode_png(values[key]))
            self._image_stats[key].add(values[key])
        for name in self._frames:
            self._frames[name].append(values[name])
        self._frame_tasks.append(task)

    def save_episode(self) -> int:
        """Write the buffered frames as the next episode and commit it. Returns its episode_index."""
        self._check_open()
        n = len(self._frame_tasks)
        if n == 0:
            raise ValueError("save_episode() called without any add_frame()")
        ep = len(self._episodes)
        start = int(self._info["total_frames"])

        tasks = list(self._tasks)
        task_ids = {t: i for i, t in enumerate(tasks)}
        for t in self._frame_tasks:
            if t not in task_ids:
                task_ids[t] = len(tasks)
                tasks.append(t)

        columns = {name: np.stack(vals) for name, vals in self._frames.items()}
        columns.update(
            timestamp=(np.arange(n) / self.fps).astype(np.float32),
            frame_index=np.arange(n, dtype=np.int64),
            episode_index=np.full(n, ep, dtype=np.int64),
            index=np.arange(start, start + n, dtype=np.int64),
            task_index=np.array([task_ids[t] for t in self._frame_tasks], dtype=np.int64),
        )
        features = self._info["features"]
        numeric = [k for k, ft in features.items() if not _is_camera(ft)]
        arrays = {}
        for k, ft in features.items():  # the dataset's column order
            if k in self._pngs:
                arrays[k] = _images_to_arrow(self._pngs[k])
            elif not _is_camera(ft):
                arrays[k] = _to_arrow(columns[k], ft["shape"])
        table = pa.table(arrays)

        # 1) Episode files: temp files first, then rename into place. Not visible to readers
        #    until info.json is committed below.
        data_loc = self._next_location("data")
        data_path = self._data_path(*data_loc)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        data_tmp = _tmp_path(data_path)
        try:
            pq.write_table(table, data_tmp)
            fsync_path(data_tmp)
            for enc in self._encoders.values():
                enc.finish()
            os.replace(data_tmp, data_path)
            for enc in self._encoders.values():
                os.replace(enc.tmp, enc.path)
        finally:
            data_tmp.unlink(missing_ok=True)

        episode_tasks = set(self._frame_tasks)
        row: dict[str, Any] = {
            "episode_index": ep,
            "tasks": [t for t in tasks if t in episode_tasks],
            "length": n,
            "data/chunk_index": data_loc[0],
            "data/file_index": data_loc[1],
            "dataset_from_index": start,
            "dataset_to_index": start + n,
        }
        for key in self._video_keys:
            loc = self._next_location(f"videos/{key}")
            row.update({
                f"videos/{key}/chunk_index": loc[0],
                f"videos/{key}/file_index": loc[1],
                f"videos/{key}/from_timestamp": 0.0,
                f"videos/{key}/to_timestamp": n / self.fps,
            })  # fmt: skip
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        ep_stats = {k: _numeric_stats(columns[k], features[k]["shape"]) for k in numeric}
        ep_stats.update({k: s.result() for k, s in self._image_stats.items()})
        for name, st in ep_stats.items():
            for stat, value in st.items():
                row[f"stats/{name}/{stat}"] = value.tolist()

        # 2) Meta files; info.json last is the commit point.
        info = dict(self._info)
        info.update(
            total_episodes=ep + 1,
            total_frames=start + n,
            total_tasks=len(tasks),
            splits={"train": f"0:{ep + 1}"},
        )
        episodes = self._episodes + [row]
        self._write_meta(info, episodes, tasks)
        self._info, self._episodes, self._tasks = info, episodes, tasks
        self._reset_buffer()
        return ep

    def discard_episode(self) -> None:
        """Drop the buffered frames (and their temp video files)."""
        for enc in self._encoders.values():
            enc.abort()
        self._reset_buffer()

    def _write_meta(self, info: dict, episodes: list[dict], tasks: list[str]) -> None:
        _write_tasks(self.root / TASKS_PATH, tasks)
        if episodes:
            table = pa.Table.from_pylist(episodes, schema=self._episodes_schema(episodes))
            _atomic_write(self.root / EPISODES_PATH, lambda tmp: pq.write_table(table, tmp))
        _write_json(self.root / STATS_PATH, _dataset_stats(info["features"], episodes))
        _write_json(self.root / INFO_PATH, info)

    def _episodes_schema(self, episodes: list[dict]) -> pa.Schema:
        fields: dict[str, pa.DataType] = {}
        path = self.root / EPISODES_PATH
        if path.exists():  # keep column types of an existing (possibly LeRobot-written) file
            fields.update({f.name: f.type for f in pq.read_schema(path)})
        for col in episodes[-1]:
            if col in fields:
                continue
            if col == "tasks":
                fields[col] = pa.list_(pa.string())
            elif col.endswith("_timestamp"):
                fields[col] = pa.float64()
            elif col.startswith("stats/"):
                name, stat = col[len("stats/") :].rsplit("/", 1)
                t = pa.int64() if stat == "count" else pa.float64()
                depth = 1 if stat == "count" else len(_stat_shape(self._info["features"][name]))
                for _ in range(depth):
                    t = pa.list_(t)
                fields[col] = t
            else:
                fields[col] = pa.int64()
        return pa.schema(list(fields.items()))

    # ---- lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")

    def _release_lock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    def close(self) -> None:
        """Release the dataset. Frames not saved with ``save_episode`` are discarded (with a warning)."""
        if self._closed:
            return
        if self._frame_tasks:
            warnings.warn(f"closing writer: discarding {len(self._frame_tasks)} unsaved frames", stacklevel=2)
        self.discard_episode()
        self._closed = True
        self._release_lock()

    def __enter__(self) -> LeRobotDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard_episode()  # an exception mid-episode: the partial episode is not wanted
        self.close()


def write_episodes(
    root: str | os.PathLike,
    episodes: Iterable[Mapping[str, Any]],
    fps: int,
    features: Mapping[str, Mapping[str, Any]],
    task: str | Sequence[str],
    **writer_kwargs: Any,
) -> list[int]:
    """Append whole episodes: each maps feature name -> array with a leading time axis.

    ``task`` is one string for all episodes or one per episode. Returns the new episode indices.
    """
    indices = []
    with LeRobotDatasetWriter(root, fps, features, **writer_kwargs) as writer:
        for i, episode in enumerate(episodes):
            lengths = {len(v) for v in episode.values()}
            if len(lengths) != 1:
                raise ValueError(f"episode {i}: features have different lengths {sorted(lengths)}")
            ep_task = task if isinstance(task, str) else task[i]
            for t in range(lengths.pop()):
                writer.add_frame({k: v[t] for k, v in episode.items()}, ep_task)
            indices.append(writer.save_episode())
    return indices


# --------------------------------------------------------------------------- reader


class LeRobotDataset:
    """Read a LeRobotDataset v3.0 from a local directory.

    Opening validates metadata and checks that every referenced data/video file exists and
    that data files have exactly the feature columns and the declared number of rows; video
    frame counts are checked when an episode is decoded. Problems raise ``DatasetError``.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        meta = _Meta(self.root)
        self.info: dict = meta.info
        self.features: dict = meta.info["features"]
        self.fps = meta.info["fps"]
        self.tasks: list[str] = meta.tasks
        self.episodes: list[dict] = meta.episodes  # per-episode metadata rows
        self.video_keys = [k for k, ft in self.features.items() if ft["dtype"] == "video"]
        self.image_keys = [k for k, ft in self.features.items() if ft["dtype"] == "image"]
        self._numeric = [k for k, ft in self.features.items() if not _is_camera(ft)]
        self._columns = [k for k in self.features if k not in self.video_keys]
        self._from_indices = [r["dataset_from_index"] for r in self.episodes]
        self._cache: tuple[Path, pa.Table] | None = None
        self._check_files()

    def _data_path(self, row: Mapping[str, Any]) -> Path:
        return _dataset_file(self.root, self.info.get("data_path", DATA_PATH),
                             chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])

    def _video_path(self, row: Mapping[str, Any], key: str) -> Path:
        return _dataset_file(self.root, self.info.get("video_path") or VIDEO_PATH, video_key=key,
                             chunk_index=row[f"videos/{key}/chunk_index"],
                             file_index=row[f"videos/{key}/file_index"])

    def _check_files(self) -> None:
        # Episodes of one data file occupy a contiguous range of global indices.
        self._file_start: dict[Path, int] = {}
        rows_in_file: dict[Path, int] = {}
        for r in self.episodes:
            path = self._data_path(r)
            start = r["dataset_from_index"]
            self._file_start[path] = min(self._file_start.get(path, start), start)
            rows_in_file[path] = rows_in_file.get(path, 0) + r["length"]
            for key in self.video_keys:
                vpath = self._video_path(r, key)
                if not vpath.is_file():
                    raise DatasetError(f"missing video file {vpath} ({key!r}, episode {r['episode_index']})")
        expected = set(self._columns)
        for path, n_rows in rows_in_file.items():
            if not path.is_file():
                raise DatasetError(f"missing data file {path}")
            md = _read_parquet(pq.read_metadata, path)
            columns = set(md.schema.to_arrow_schema().names) - {"__index_level_0__"}
            if columns != expected:
                raise DatasetError(
                    f"{path}: columns do not match features: missing {sorted(expected - columns)}, "
                    f"unexpected {sorted(columns - expected)}"
                )
            if md.num_rows != n_rows:
                raise DatasetError(
                    f"{path}: episode length mismatch: file has {md.num_rows} rows, "
                    f"episodes metadata declares {n_rows}"
                )

    def __len__(self) -> int:
        return int(self.info["total_frames"])

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def camera_keys(self) -> list[str]:
        """Video and image features (all read as uint8 [H, W, 3] frames)."""
        return [k for k in self.features if k in self.video_keys or k in self.image_keys]

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        path = self.root / STATS_PATH
        if not path.is_file():
            return {}
        stats = json.loads(path.read_text())
        return {k: {s: np.asarray(v) for s, v in st.items()} for k, st in stats.items()}

    def _table(self, path: Path) -> pa.Table:
        # One-file cache: consecutive accesses usually hit the same file.
        if self._cache is None or self._cache[0] != path:
            self._cache = (path, _read_parquet(pq.read_table, path, columns=self._columns))
        return self._cache[1]

    def _episode_rows(self, i: int) -> tuple[Path, pa.Table]:
        r = self.episodes[i]
        path = self._data_path(r)
        rows = self._table(path).slice(r["dataset_from_index"] - self._file_start[path], r["length"])
        return path, rows

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """All frames of episode ``i``: numeric features [T, *shape] ([T] for shape [1]),
        videos and images uint8 [T, H, W, 3] (also where declared channel-first), and ``task``
        (string per frame)."""
        if not -self.num_episodes <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range ({self.num_episodes} episodes)")
        i %= self.num_episodes
        r = self.episodes[i]
        n = r["length"]
        path, rows = self._episode_rows(i)
        out = {k: _from_arrow(rows[k], self.features[k], f"{path} column {k!r}") for k in self._numeric}
        if not (
            np.array_equal(out["index"], np.arange(r["dataset_from_index"], r["dataset_to_index"]))
            and np.all(out["episode_index"] == i)
            and np.array_equal(out["frame_index"], np.arange(n))
        ):
            raise DatasetError(
                f"{path}: rows for episode {i} do not match its metadata (index/frame_index/episode_index)"
            )
        out["task"] = np.array([self.tasks[t] for t in out["task_index"]])
        for key in self.image_keys:
            out[key] = self._check_image(
                _images_from_arrow(rows[key], self.root, f"{path} column {key!r}"), key, path
            )
        for key in self.video_keys:
            vpath = self._video_path(r, key)
            frames = _decode_video(
                vpath, r[f"videos/{key}/from_timestamp"], r[f"videos/{key}/to_timestamp"], self.fps
            )
            if len(frames) != n:
                raise DatasetError(
                    f"{vpath}: decoded {len(frames)} frames for episode {i} of length {n} ({key!r})"
                )
            out[key] = self._check_image(np.stack(frames), key, vpath)
        return out

    def _check_image(self, arr: np.ndarray, key: str, path: Path) -> np.ndarray:
        """Frames are returned [.., H, W, 3] whatever layout the feature declares."""
        ft = self.features[key]
        if arr.shape[-3:] != _hwc(ft):
            raise DatasetError(
                f"{path}: frames of shape {arr.shape[-3:]} but {key!r} is {ft['shape']} "
                f"(height, width, channels {_hwc(ft)})"
            )
        return arr

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One frame by global index, same conventions as ``episode`` without the time axis."""
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range ({len(self)} frames)")
        index %= len(self)
        i = bisect_right(self._from_indices, index) - 1
        r = self.episodes[i]
        path, rows = self._episode_rows(i)
        row = rows.slice(index - r["dataset_from_index"], 1)
        item = {k: _from_arrow(row[k], self.features[k], f"{path} column {k!r}")[0] for k in self._numeric}
        if item["index"] != index:
            raise DatasetError(f"{path}: row for index {index} holds index {item['index']}")
        item["task"] = self.tasks[item["task_index"]]
        for key in self.image_keys:
            item[key] = self._check_image(
                _images_from_arrow(row[key], self.root, f"{path} column {key!r}")[0], key, path
            )
        for key in self.video_keys:
            vpath = self._video_path(r, key)
            ts = r[f"videos/{key}/from_timestamp"] + float(item["timestamp"])
            frames = _decode_video(vpath, ts, ts + 1.0 / self.fps, self.fps)
            if len(frames) != 1:
                raise DatasetError(f"{vpath}: no frame at {ts:.4f}s for index {index} ({key!r})")
            item[key] = self._check_image(frames[0], key, vpath)
        return item
