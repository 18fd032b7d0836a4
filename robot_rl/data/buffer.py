"""Replay buffer with frame sharing, demo/online mixing and disk persistence.

Storage layout
--------------
Observations are stored in a ring of *frames* (every observation key, images
as uint8, in one slot per frame).  Each transition keeps two global frame ids,
``obs`` and ``next_obs``.  Inside an episode the ``obs`` of transition ``t+1``
is the ``next_obs`` frame of transition ``t`` (written once), so an episode of
``T`` steps uses ``T + 1`` frames: the first observation plus one frame per
step (the final ``next_obs`` is that extra frame).  The frame ring has a small
headroom (``frame_headroom``, default 5 %) over the transition capacity; when
episodes are shorter than ~``1/headroom`` steps, the oldest transitions are
invalidated a little before ``capacity`` is reached (they are never sampled
with overwritten frames).

A key can be cached as a feature vector instead of raw pixels by giving an
``obs_transforms[key]`` function (e.g. ``PretrainedTrunk.numpy_transform()``);
it is applied once per *frame* at insert time and the stored shape/dtype are
inferred from it.

Sampling takes an explicit ``numpy.random.Generator`` so that a buffer loaded
from disk samples identically given the same generator state.

On a GPU learner the frames can also be kept on the device (:meth:`ReplayBuffer.keep_on_device`,
``train.replay_on_device``): batches gather their observations there and only indices and
the small per-transition fields cross from host memory, which then goes through pinned
staging memory with non-blocking copies (:func:`to_torch`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

__all__ = [
    "ObsSpec",
    "normalize_obs_spec",
    "ReplayBuffer",
    "MixedSampler",
    "to_torch",
    "map_arrays",
    "place_frames",
]

ObsSpec = Dict[str, Tuple[Tuple[int, ...], np.dtype]]

DEFAULT_EXTRA_SPEC: Dict[str, Tuple[Tuple[int, ...], Any]] = {"grasp_penalty": ((), np.float32)}
# An extra's value when `info` lacks it, where 0 would mean something: no Monte-Carlo bound
# (Cal-QL's calibration is a max, so -inf leaves the value free) until the episode ends
EXTRA_DEFAULTS: Dict[str, float] = {"mc_bound": -np.inf}


def _spec_entry(v: Any) -> Tuple[Tuple[int, ...], np.dtype]:
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, np.ndarray):  # gymnasium Box
        return tuple(int(x) for x in v.shape), np.dtype(v.dtype)
    if isinstance(v, np.ndarray):
        return tuple(v.shape), v.dtype
    if isinstance(v, (tuple, list)):
        if len(v) == 2 and isinstance(v[0], (tuple, list)):
            return tuple(int(x) for x in v[0]), np.dtype(v[1])
        return tuple(int(x) for x in v), np.dtype(np.float32)
    raise TypeError(f"cannot interpret observation spec entry {v!r}")


def normalize_obs_spec(spec: Any) -> ObsSpec:
    """Normalise an observation spec to ``{key: (shape, np.dtype)}``.

    Accepts a ``gymnasium.spaces.Dict``, or a mapping whose values are Box
    spaces, example arrays, ``(shape, dtype)`` pairs, or plain shape tuples
    (float32 assumed; use ``(shape, np.uint8)`` for images).
    """
    if hasattr(spec, "spaces") and isinstance(getattr(spec, "spaces"), Mapping):
        spec = spec.spaces
    return {str(k): _spec_entry(v) for k, v in spec.items()}


def _spec_to_json(spec: Mapping[str, Tuple[Tuple[int, ...], np.dtype]]) -> Dict[str, Any]:
    return {k: [list(s), np.dtype(d).str] for k, (s, d) in spec.items()}


def _spec_from_json(d: Mapping[str, Any]) -> ObsSpec:
    return {k: (tuple(s), np.dtype(t)) for k, (s, t) in d.items()}


def to_torch(batch: Any, device: Any = None) -> Any:
    """Recursively convert numpy arrays in a (nested) batch dict to torch tensors on
    ``device`` (tensors are moved there). To a CUDA device they are copied through pinned
    host memory without blocking, so the host goes on while the copy runs."""
    import torch

    if isinstance(batch, Mapping):
        return {k: to_torch(v, device) for k, v in batch.items()}
    to_gpu = device is not None and torch.device(device).type == "cuda"
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(np.ascontiguousarray(batch))
        if to_gpu:
            batch = batch.pin_memory()
    if isinstance(batch, torch.Tensor) and device is not None:
        # only copies to the GPU may run on: one to the host is read right after
        return batch.to(device, non_blocking=to_gpu)
    return batch


def map_arrays(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], a: Any, b: Any) -> Any:
    """``fn`` applied leaf by leaf to two batches of the same (nested) structure."""
    if isinstance(a, Mapping):
        return {k: map_arrays(fn, a[k], b[k]) for k in a}
    return fn(a, b)



class ReplayBuffer:
    """Ring replay buffer storing each observation frame once.

    Args:
        capacity: max number of transitions.
        obs_space_spec: raw observation spec (see :func:`normalize_obs_spec`).
        action_dim: action size ``A``.
        frame_capacity: number of frame slots (default ``ceil(capacity*(1+frame_headroom)) + 2``).
        obs_transforms: ``{key: fn(raw_array) -> stored_array}`` applied once per frame
            (feature caching); stored shape/dtype are inferred from ``fn``.
        extra_spec: per-transition scalars/arrays read from ``info`` at insert
            (default ``{"grasp_penalty": ((), float32)}``), 0 when absent.
        is_demo: default value of the ``is_demo`` flag for inserted transitions.
        check_continuity: compare ``obs`` with the previous ``next_obs`` and write a
            fresh frame if they differ (robust to resets without a done flag).
    """

    TRANSITION_FIELDS = ("action", "reward", "terminated", "truncated", "intervention", "is_demo")
    _mirror: Optional[Dict[str, Any]] = None  # the frames as tensors on a device (keep_on_device)

    def __init__(
        self,
        capacity: int,
        obs_space_spec: Any,
        action_dim: int,
        *,
        frame_capacity: Optional[int] = None,
        frame_headroom: float = 0.05,
        obs_transforms: Optional[Mapping[str, Callable[[np.ndarray], np.ndarray]]] = None,
        extra_spec: Optional[Mapping[str, Tuple[Tuple[int, ...], Any]]] = None,
        is_demo: bool = False,
        check_continuity: bool = True,
    ):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = int(capacity)
        self.frame_capacity = int(frame_capacity or int(np.ceil(self.capacity * (1.0 + frame_headroom))) + 2)
        if self.frame_capacity < 2:
            raise ValueError("frame_capacity must be >= 2")
        self.action_dim = int(action_dim)
        self.raw_spec = normalize_obs_spec(obs_space_spec)
        self.obs_transforms = dict(obs_transforms or {})
        self.storage_spec: ObsSpec = {}
        for k, (shape, dtype) in self.raw_spec.items():
            if k in self.obs_transforms:
                out = np.asarray(self.obs_transforms[k](np.zeros(shape, dtype)))
                self.storage_spec[k] = (tuple(out.shape), out.dtype)
            else:
                self.storage_spec[k] = (shape, dtype)
        self.extra_spec = {
            k: (tuple(s), np.dtype(d))
            for k, (s, d) in (DEFAULT_EXTRA_SPEC if extra_spec is None else extra_spec).items()
        }
        self.default_is_demo = bool(is_demo)
        self.check_continuity = bool(check_continuity)
        self._allocate()

    # ------------------------------------------------------------------ storage
    def _allocate(self) -> None:
        C, FC = self.capacity, self.frame_capacity
        self._frames = {k: np.zeros((FC, *s), dtype=d) for k, (s, d) in self.storage_spec.items()}
        self._obs_fid = np.zeros(C, dtype=np.int64)
        self._next_fid = np.zeros(C, dtype=np.int64)
        self._fields = {
            "action": np.zeros((C, self.action_dim), dtype=np.float32),
            "reward": np.zeros(C, dtype=np.float32),
            "terminated": np.zeros(C, dtype=bool),
            "truncated": np.zeros(C, dtype=bool),
            "intervention": np.zeros(C, dtype=bool),
            "is_demo": np.zeros(C, dtype=bool),
        }
        self._extras = {k: np.zeros((C, *s), dtype=d) for k, (s, d) in self.extra_spec.items()}
        self._frames_written = 0
        self._trans_written = 0
        self._valid_start = 0
        self._last_next_fid = -1  # frame id of previous next_obs if the episode continues
        self._last_raw: Dict[str, np.ndarray] = {}  # raw copy of previous next_obs for transformed keys
        self._mirrored = 0  # frames written when the device mirror was last brought up to date

    def __len__(self) -> int:
        return self._trans_written - self._valid_start

    @property
    def num_frames(self) -> int:
        return min(self._frames_written, self.frame_capacity)

    @property
    def frames_written(self) -> int:
        return self._frames_written

    @property
    def transitions_written(self) -> int:
        return self._trans_written

    def frame_nbytes(self) -> int:
        """Bytes of the frame ring (what :meth:`keep_on_device` copies to the device)."""
        return int(sum(v.nbytes for v in self._frames.values()))

    def nbytes(self) -> int:
        arrays = list(self._frames.values()) + list(self._fields.values()) + list(self._extras.values())
        arrays += [self._obs_fid, self._next_fid]
        return int(sum(a.nbytes for a in arrays))

    def bytes_per_transition(self) -> float:
        """Allocated bytes (all storage) divided by transition capacity."""
        return self.nbytes() / self.capacity

    def raw_obs_bytes(self, image_only: bool = True) -> int:
        """Bytes of one raw observation (uint8 image keys only by default)."""
        tot = 0
        for s, d in self.raw_spec.values():
            if image_only and not (len(s) == 3 and np.dtype(d) == np.uint8):
                continue
            tot += int(np.prod(s)) * np.dtype(d).itemsize
        return tot

    # ------------------------------------------------------------------ insert
    def _write_frame(self, obs: Mapping[str, Any]) -> int:
        fid = self._frames_written
        slot = fid % self.frame_capacity
        for k in self.storage_spec:
            v = obs[k]
            if k in self.obs_transforms:
                v = self.obs_transforms[k](np.asarray(v))
            self._frames[k][slot] = v
        self._frames_written += 1
        return fid

    def _continues(self, obs: Mapping[str, Any]) -> bool:
        if self._last_next_fid < 0:
            return False
        if not self.check_continuity:
            return True
        slot = self._last_next_fid % self.frame_capacity
        for k in self.storage_spec:
            ref = self._last_raw[k] if k in self.obs_transforms else self._frames[k][slot]
            if not np.array_equal(np.asarray(obs[k]), ref):
                return False
        return True

    def insert(
        self,
        obs: Mapping[str, Any],
        action: Any,
        reward: float,
        next_obs: Mapping[str, Any],
        terminated: bool,
        truncated: bool = False,
        info: Optional[Mapping[str, Any]] = None,
        *,
        intervention: Optional[bool] = None,
        is_demo: Optional[bool] = None,
    ) -> int:
        """Add one transition; returns its global transition id.

        ``terminated`` is the bootstrap mask (true terminal state); ``terminated or
        truncated`` ends the episode (the next insert starts a new frame chain).
        ``info`` may contain ``intervention`` (or ``intervene_action``), ``is_demo``
        and any ``extra_spec`` key.
        """
        info = info or {}
        action = self._checked(obs, action, reward, next_obs)
        ofid = self._last_next_fid if self._continues(obs) else self._write_frame(obs)
        nfid = self._write_frame(next_obs)
        tid = self._trans_written
        slot = tid % self.capacity
        self._obs_fid[slot] = ofid
        self._next_fid[slot] = nfid
        f = self._fields
        f["action"][slot] = action
        f["reward"][slot] = reward
        f["terminated"][slot] = bool(terminated)
        f["truncated"][slot] = bool(truncated)
        if intervention is None:
            intervention = bool(info.get("intervention", "intervene_action" in info))
        f["intervention"][slot] = intervention
        if is_demo is None:
            is_demo = bool(info.get("is_demo", self.default_is_demo))
        f["is_demo"][slot] = is_demo
        for k, arr in self._extras.items():
            arr[slot] = info.get(k, EXTRA_DEFAULTS.get(k, 0))
        self._trans_written += 1
        if terminated or truncated:
            self._last_next_fid = -1
            self._last_raw = {}
        else:
            self._last_next_fid = nfid
            if self.check_continuity:
                self._last_raw = {k: np.array(next_obs[k], copy=True) for k in self.obs_transforms}
        self._advance_valid()
        return tid

    def _checked(self, obs, action, reward, next_obs) -> np.ndarray:
        """The action as stored, after refusing what would be stored wrongly: observations of
        another shape (numpy would broadcast a (1,) state into 14 dims), NaN or inf actions
        and rewards. Nothing is written when this raises."""
        for name, o in (("obs", obs), ("next_obs", next_obs)):
            for k, (shape, _) in self.raw_spec.items():
                if k not in o:
                    raise ValueError(f"replay insert: {name} has no key {k!r} (it has {sorted(o)})")
                if np.shape(o[k]) != tuple(shape):
                    raise ValueError(f"replay insert: {name}[{k!r}] has shape {np.shape(o[k])}, "
                                     f"the buffer stores {tuple(shape)}")
        a = np.asarray(action, dtype=np.float32)
        if a.size != self.action_dim or not np.all(np.isfinite(a)):
            raise ValueError(f"replay insert: the action must be {self.action_dim} finite numbers, "
                             f"got {a.tolist()}")
        if not np.isfinite(reward):
            raise ValueError(f"replay insert: the reward must be finite, got {reward}")
        return a.reshape(self.action_dim)

    def _advance_valid(self) -> None:
        oldest_frame = self._frames_written - self.frame_capacity
        start = max(self._valid_start, self._trans_written - self.capacity)
        while start < self._trans_written and self._obs_fid[start % self.capacity] < oldest_frame:
            start += 1
        self._valid_start = start

    # ------------------------------------------------------------------ read
    def valid_ids(self) -> np.ndarray:
        """Global ids of all sampleable transitions, oldest first."""
        return np.arange(self._valid_start, self._trans_written, dtype=np.int64)

    def get(self, ids: np.ndarray, n_step: int = 1, *, on_device: bool = False) -> Dict[str, Any]:
        """Gather transitions by global id (see :meth:`valid_ids`); with ``on_device`` the
        observations are tensors gathered from the device copy (:meth:`keep_on_device`),
        brought up to date first.

        With ``n_step > 1`` each transition is extended along its episode by up to
        ``n_step - 1`` later ones (fewer where the episode ends or the writes stop):
        ``"rewards"`` [B, n_step] holds their rewards (0 after the last), ``"steps"`` [B] how
        many there are, and ``next_obs``, ``terminated`` and ``truncated`` are the last one's.
        Every other field stays the first transition's."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < self._valid_start or ids.max() >= self._trans_written):
            raise IndexError("transition id out of the valid range")
        slots = ids % self.capacity
        batch: Dict[str, Any] = {k: v[slots] for k, v in {**self._fields, **self._extras}.items()}
        last = slots
        if n_step > 1:
            last, batch["rewards"], batch["steps"] = self._extend(ids, n_step)
            batch["terminated"], batch["truncated"] = (self._fields["terminated"][last],
                                                       self._fields["truncated"][last])
        ofs = self._obs_fid[slots] % self.frame_capacity
        nfs = self._next_fid[last] % self.frame_capacity
        if on_device:
            self._sync_mirror()
        frames = self._gather_mirror if on_device else (
            lambda fs: {k: v[fs] for k, v in self._frames.items()})
        batch["obs"], batch["next_obs"] = frames(ofs), frames(nfs)
        return batch

    # ------------------------------------------------------------------ device mirror
    def keep_on_device(self, device: Any) -> None:
        """Keep a copy of the frame ring on ``device`` (a GPU learner's), brought up to date
        by each ``sample(as_torch=True)``, whose batches then gather their observations on the
        device. The numpy arrays stay the buffer's state (``get``, ``save``, ``load`` and
        ``relabel`` read them); the copy costs :meth:`frame_nbytes` of device memory."""
        import torch
        self._mirror_device = torch.device(device)
        self._mirror = {k: torch.zeros(v.shape, dtype=torch.from_numpy(v[:0]).dtype, device=device)
                        for k, v in self._frames.items()}
        self._mirrored = 0

    def _sync_mirror(self) -> None:
        """Copy the frames written since the last sync (all of them after a ``load``)."""
        import torch
        if self._mirrored >= self._frames_written:
            return
        first = max(self._mirrored, self._frames_written - self.frame_capacity)
        slots = np.arange(first, self._frames_written) % self.frame_capacity
        idx = torch.from_numpy(slots).to(self._mirror_device)
        for k, m in self._mirror.items():
            m[idx] = to_torch(self._frames[k][slots], self._mirror_device)
        self._mirrored = self._frames_written

    def _gather_mirror(self, slots: np.ndarray) -> Dict[str, Any]:
        import torch
        idx = torch.from_numpy(slots).to(self._mirror_device)
        return {k: m[idx] for k, m in self._mirror.items()}

    def _extend(self, ids: np.ndarray, n_step: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slot of each id's last transition, rewards [B, n_step], steps [B]): transition
        ``t + 1`` continues ``t`` when ``t`` did not end its episode and ``t + 1``'s
        observation is ``t``'s next frame (the chain ``insert`` writes)."""
        f = self._fields
        last = ids % self.capacity
        rewards = np.zeros((len(ids), n_step), np.float32)
        rewards[:, 0] = f["reward"][last]
        steps = np.ones(len(ids), np.int64)
        going = np.ones(len(ids), bool)
        for j in range(1, n_step):
            nxt = ids + j
            going &= ~(f["terminated"][last] | f["truncated"][last]) & (nxt < self._trans_written)
            going &= self._obs_fid[nxt % self.capacity] == self._next_fid[last]
            last = np.where(going, nxt % self.capacity, last)
            rewards[:, j] = np.where(going, f["reward"][last], 0.0)
            steps += going
        return last, rewards, steps

    def set_extra(self, key: str, ids: np.ndarray, values: Any) -> None:
        """Write an extra of stored transitions (by global id) after the fact, e.g. the
        Monte-Carlo bounds of an episode once it has ended. Ids overwritten since are skipped."""
        ids = np.asarray(ids, dtype=np.int64)
        keep = ids >= self._valid_start
        self._extras[key][ids[keep] % self.capacity] = np.asarray(values)[keep]

    def relabel(self, fn: Callable[[Dict[str, Any]], Tuple[np.ndarray, np.ndarray]],
                chunk: int = 256) -> int:
        """Rewrite every stored transition's reward and terminal flag: ``fn(batch)`` gets
        :meth:`get` batches of up to ``chunk`` transitions and returns ``(reward [B],
        terminated [B])``. Returns how many transitions changed either."""
        changed = 0
        ids = self.valid_ids()
        for i in range(0, len(ids), chunk):
            part = ids[i:i + chunk]
            reward, term = fn(self.get(part))
            slots = part % self.capacity
            reward, term = np.asarray(reward, np.float32), np.asarray(term, bool)
            f = self._fields
            changed += int(np.sum((f["reward"][slots] != reward) | (f["terminated"][slots] != term)))
            f["reward"][slots], f["terminated"][slots] = reward, term
        return changed

    def sample(
        self, batch_size: int, rng: np.random.Generator, as_torch: bool = False, device: Any = None,
        n_step: int = 1,
    ) -> Dict[str, Any]:
        """Uniformly sample ``batch_size`` transitions (with replacement).

        Returns ``{"obs": {key: arr}, "next_obs": {...}, "action" [B,A] f32, "reward" [B] f32,
        "terminated", "truncated", "intervention", "is_demo" [B] bool, <extras>}``
        (+ ``"rewards"``, ``"steps"`` with ``n_step > 1``, see :meth:`get`)
        as numpy arrays, or torch tensors if ``as_torch``.
        """
        n = len(self)
        if n == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        ids = self._valid_start + rng.integers(0, n, size=batch_size)
        if as_torch and self._mirror is not None:
            return to_torch(self.get(ids, n_step, on_device=True), device)
        batch = self.get(ids, n_step)
        return to_torch(batch, device) if as_torch else batch

    def sample_fn(self, batch_size: int, rng: np.random.Generator, device: Any = None,
                  n_step: int = 1) -> Callable[[int], Dict[str, Any]]:
        """``fn(num_batches=1)``: ``num_batches`` minibatches of ``batch_size``, stacked along
        the batch dim (one gather and one tensor conversion for all of them)."""
        return lambda num_batches=1: self.sample(batch_size * num_batches, rng, as_torch=True,
                                                 device=device, n_step=n_step)

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> Dict[str, Any]:
        return {
            "version": 1,
            "capacity": self.capacity,
            "frame_capacity": self.frame_capacity,
            "action_dim": self.action_dim,
            "raw_spec": _spec_to_json(self.raw_spec),
            "storage_spec": _spec_to_json(self.storage_spec),
            "extra_spec": _spec_to_json(self.extra_spec),
            "is_demo": self.default_is_demo,
            "check_continuity": self.check_continuity,
            "frames_written": self._frames_written,
            "trans_written": self._trans_written,
            "valid_start": self._valid_start,
            "last_next_fid": self._last_next_fid,
            "last_raw_keys": sorted(self._last_raw),
        }

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the complete buffer state to ``path`` (uncompressed ``.npz``)."""
        nf = min(self._frames_written, self.frame_capacity)
        nt = min(self._trans_written, self.capacity)
        arrays: Dict[str, np.ndarray] = {"meta": np.array(json.dumps(self._meta()))}
        for k, v in self._frames.items():
            arrays[f"frame__{k}"] = v[:nf]
        for k, v in self._fields.items():
            arrays[f"field__{k}"] = v[:nt]
        for k, v in self._extras.items():
            arrays[f"extra__{k}"] = v[:nt]
        arrays["obs_fid"] = self._obs_fid[:nt]
        arrays["next_fid"] = self._next_fid[:nt]
        for k, v in self._last_raw.items():
            arrays[f"lastraw__{k}"] = v
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)

    def load(self, path: Union[str, os.PathLike]) -> "ReplayBuffer":
        """Restore state saved by :meth:`save` into this buffer (same capacities/specs)."""
        with np.load(os.fspath(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            for name, mine in (
                ("capacity", self.capacity),
                ("frame_capacity", self.frame_capacity),
                ("action_dim", self.action_dim),
            ):
                if meta[name] != mine:
                    raise ValueError(f"{name} mismatch: file {meta[name]} vs buffer {mine}")
            if _spec_from_json(meta["storage_spec"]) != self.storage_spec:
                raise ValueError("observation storage spec mismatch")
            if _spec_from_json(meta["extra_spec"]) != self.extra_spec:
                raise ValueError("extra spec mismatch")
            self._allocate()
            for k, v in self._frames.items():
                a = z[f"frame__{k}"]
                v[: len(a)] = a
            for k, v in self._fields.items():
                a = z[f"field__{k}"]
                v[: len(a)] = a
            for k, v in self._extras.items():
                a = z[f"extra__{k}"]
                v[: len(a)] = a
            a = z["obs_fid"]
            self._obs_fid[: len(a)] = a
            a = z["next_fid"]
            self._next_fid[: len(a)] = a
            self._last_raw = {k: np.array(z[f"lastraw__{k}"]) for k in meta["last_raw_keys"]}
        self.default_is_demo = bool(meta["is_demo"])
        self.check_continuity = bool(meta["check_continuity"])
        self._frames_written = int(meta["frames_written"])
        self._trans_written = int(meta["trans_written"])
        self._valid_start = int(meta["valid_start"])
        self._last_next_fid = int(meta["last_next_fid"])
        return self

    @classmethod
    def from_file(
        cls,
        path: Union[str, os.PathLike],
        obs_transforms: Optional[Mapping[str, Callable[[np.ndarray], np.ndarray]]] = None,
    ) -> "ReplayBuffer":
        """Construct a buffer with the capacities/specs stored in ``path`` and load it.

        Transforms are functions and are not saved; pass them again if further
        frames will be inserted (stored spec must match).
        """
        with np.load(os.fspath(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        buf = cls.__new__(cls)
        buf.capacity = meta["capacity"]
        buf.frame_capacity = meta["frame_capacity"]
        buf.action_dim = meta["action_dim"]
        buf.raw_spec = _spec_from_json(meta["raw_spec"])
        buf.storage_spec = _spec_from_json(meta["storage_spec"])
        buf.extra_spec = _spec_from_json(meta["extra_spec"])
        buf.obs_transforms = dict(obs_transforms or {})
        buf.default_is_demo = bool(meta["is_demo"])
        buf.check_continuity = bool(meta["check_continuity"])
        buf._allocate()
        return buf.load(path)


def place_frames(buffers, device: Any, keep: Optional[bool] = None) -> bool:
    """``train.replay_on_device``: keep the buffers' frames on ``device`` (``True``), never
    (``False``), or (``None``, auto) when ``device`` is a GPU and they take at most half its
    free memory (the networks, batches and compiled graphs need the rest). Returns whether
    it did."""
    import torch
    device = torch.device(device)
    if keep is None:
        need = sum(b.frame_nbytes() for b in buffers)
        keep = device.type == "cuda" and need <= torch.cuda.mem_get_info(device)[0] / 2
    if keep:
        for b in buffers:
            b.keep_on_device(device)
    return bool(keep)


class MixedSampler:
    """Samples ``round(batch_size * demo_ratio)`` transitions from ``demo_buffer``
    and the rest from ``online_buffer`` (RLPD symmetric sampling).

    If one buffer is empty (or ``None``) the whole batch comes from the other.
    The demo part comes first in the returned batch.
    """

    def __init__(
        self,
        demo_buffer: Optional[ReplayBuffer],
        online_buffer: Optional[ReplayBuffer],
        demo_ratio: float = 0.5,
    ):
        if not 0.0 <= demo_ratio <= 1.0:
            raise ValueError("demo_ratio must be in [0, 1]")
        self.demo_buffer, self.online_buffer, self.demo_ratio = demo_buffer, online_buffer, float(demo_ratio)

    def split(self, batch_size: int) -> Tuple[int, int]:
        n_demo_buf = len(self.demo_buffer) if self.demo_buffer is not None else 0
        n_online_buf = len(self.online_buffer) if self.online_buffer is not None else 0
        if n_demo_buf == 0 and n_online_buf == 0:
            raise ValueError("both replay buffers are empty")
        if n_demo_buf == 0:
            return 0, batch_size
        if n_online_buf == 0:
            return batch_size, 0
        n_demo = int(round(batch_size * self.demo_ratio))
        return n_demo, batch_size - n_demo

    def __len__(self) -> int:
        return sum(len(b) for b in (self.demo_buffer, self.online_buffer) if b is not None)

    def sample(
        self, batch_size: int, rng: np.random.Generator, as_torch: bool = False, device: Any = None,
        num_batches: int = 1, n_step: int = 1,
    ) -> Dict[str, Any]:
        """``num_batches`` minibatches of ``batch_size`` stacked along the batch dim; each
        minibatch has its demo part first, then its online part."""
        n_demo, n_online = self.split(batch_size)
        parts = []
        for buf, n in ((self.demo_buffer, n_demo), (self.online_buffer, n_online)):
            if n:
                parts.append(buf.sample(n * num_batches, rng, as_torch, device, n_step))
        if len(parts) == 1:
            return parts[0]

        def interleave(d, o):  # per minibatch: [demo_0, online_0, demo_1, online_1, ...]
            if isinstance(d, np.ndarray):
                cat = np.concatenate
            else:
                import torch
                cat = torch.cat
            return cat([d.reshape(num_batches, n_demo, *d.shape[1:]),
                        o.reshape(num_batches, n_online, *o.shape[1:])], 1).reshape(
                num_batches * batch_size, *d.shape[1:])
        return map_arrays(interleave, parts[0], parts[1])

    def sample_fn(self, batch_size: int, rng: np.random.Generator, device: Any = None,
                  n_step: int = 1) -> Callable[[int], Dict[str, Any]]:
        """``fn(num_batches=1)``: ``num_batches`` minibatches of ``batch_size``, each with the
        demo share, stacked along the batch dim."""
        return lambda num_batches=1: self.sample(batch_size, rng, as_torch=True, device=device,
                                                 num_batches=num_batches, n_step=n_step)
