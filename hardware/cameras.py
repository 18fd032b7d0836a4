"""Real cameras implementing `hal.Camera`: Intel RealSense (pyrealsense2) and anything OpenCV
opens (a device index or a video file; opencv-python-headless).

Each camera runs a background reader thread that keeps only the latest frame, already cropped
and resized for the policy, with its arrival time (`time.monotonic_ns`, the HAL clock), so
`read()` costs a reference copy and never waits for the sensor (except for the very first
frame). Per-camera config: `size` (H, W) of the output (default 128x128) and `crop`
(x, y, w, h) in source pixels applied before the resize (None: the full frame).

    RealSenseCamera("wrist", serial="123456789", width=640, height=480, fps=30)
    RealSenseCamera("wrist", playback="session.db3")         # a recording, through the same
                                                              # pipeline + rs.align code path
    OpenCVCamera("front", source=0)  /  OpenCVCamera("front", source="front.mp4")
    make_camera({"type": "opencv", "name": "front", "source": 0, "crop": [80, 0, 480, 480]})

A camera that stops delivering raises `CameraLostError` (a `ConnectionLostError`: the episode
ends as truncated, see `hardware/safety.py`) once its latest frame is older than `max_age_s`.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import numpy as np

from robot_rl.hardware.hal import Frame
from robot_rl.hardware.safety import ConnectionLostError


class CameraError(RuntimeError):
    """A camera could not be opened or configured."""


class CameraLostError(CameraError, ConnectionLostError):
    """A camera stopped delivering frames."""


def _import_cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("cameras need `pip install opencv-python-headless`") from exc
    return cv2


def _import_rs():
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise ImportError("RealSense cameras need `pip install pyrealsense2` (and the "
                          "libusb-1.0-0 system library)") from exc
    return rs


class _ThreadedCamera:
    """Latest-frame reader thread + crop/resize shared by the concrete cameras."""

    def __init__(self, name: str, size: Sequence[int] = (128, 128),
                 crop: Sequence[int] | None = None, max_age_s: float = 1.0,
                 first_frame_timeout_s: float = 10.0):
        size = tuple(int(v) for v in size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"camera {name}: size must be (height, width) > 0, got {size}")
        if crop is not None:
            crop = tuple(int(v) for v in crop)
            if len(crop) != 4 or crop[2] <= 0 or crop[3] <= 0 or min(crop[:2]) < 0:
                raise ValueError(f"camera {name}: crop must be (x, y, width, height), got {crop}")
        self.name, self.size, self.crop = name, size, crop
        self.shape = (size[0], size[1], 3)
        self.max_age_s, self.first_frame_timeout_s = max_age_s, first_frame_timeout_s
        self.frames = 0              # frames received since open
        self.error: str | None = None
        self._latest: Frame | None = None
        self._latest_wall = 0.0
        self._new = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cv2 = _import_cv2()

    # ---- subclass interface ------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(rgb uint8 HxWx3, depth float32 metres HxW or None) at source resolution, or None
        (no frame this time; keep trying)."""
        raise NotImplementedError

    def _close_source(self) -> None:
        pass

    # ---- processing ----------------------------------------------------------------------
    def _crop(self, img: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return img
        x, y, w, h = self.crop
        H, W = img.shape[:2]
        if x + w > W or y + h > H:
            raise CameraError(f"camera {self.name}: crop {self.crop} exceeds the {W}x{H} frame")
        return img[y:y + h, x:x + w]

    def process(self, rgb: np.ndarray, depth: np.ndarray | None = None):
        """Crop then resize to `size` (area filter for colour, nearest for depth)."""
        cv2 = self._cv2
        rgb = self._crop(rgb)
        H, W = self.size
        if rgb.shape[:2] != (H, W):
            rgb = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
        if depth is not None:
            depth = self._crop(depth)
            if depth.shape[:2] != (H, W):
                depth = cv2.resize(depth, (W, H), interpolation=cv2.INTER_NEAREST)
        return np.ascontiguousarray(rgb), depth

    # ---- thread --------------------------------------------------------------------------
    def _run(self) -> None:
        # A failure to grab or to process a frame never ends the thread (it used to, silently,
        # when processing failed): it is kept in `error` and `read()` reports it once the
        # frames go stale.
        while not self._stop.is_set():
            try:
                got = self._grab()
                if got is None:
                    continue
                t_ns = time.monotonic_ns()
                rgb, depth = self.process(*got)
            except Exception as exc:  # noqa: BLE001 (reported through staleness)
                self.error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(0.05)
                continue
            frame = Frame(rgb=rgb, t_ns=t_ns, depth=depth)
            with self._new:
                self._latest, self._latest_wall = frame, time.monotonic()
                self.frames += 1
                self._new.notify_all()

    def open(self):
        if self._thread is not None:
            return self
        self._open()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        return self

    def read(self) -> Frame:
        """The latest processed frame. Waits only for the first frame after opening."""
        if self._thread is None:
            self.open()
        if self._latest is None:
            with self._new:
                ok = self._new.wait_for(lambda: self._latest is not None,
                                        timeout=self.first_frame_timeout_s)
            if not ok:
                raise CameraLostError(f"camera {self.name}: no frame within "
                                      f"{self.first_frame_timeout_s} s "
                                      f"({self.error or 'no error'})")
        age = time.monotonic() - self._latest_wall
        if age > self.max_age_s:
            raise CameraLostError(f"camera {self.name}: latest frame is {age:.2f} s old "
                                  f"(limit {self.max_age_s} s): {self.error or 'no new frames'}")
        return self._latest

    def wait_frames(self, n: int, timeout_s: float = 10.0) -> bool:
        """Block until `n` more frames arrived (tests, session checks)."""
        if self._thread is None:
            self.open()
        with self._new:
            target = self.frames + n
            return self._new.wait_for(lambda: self.frames >= target, timeout=timeout_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._close_source()
        self._latest = None

    def reconnect(self) -> None:
        try:
            if self._thread is not None:
                self.read()
                return
        except CameraLostError:
            pass
        self.close()
        self.open()
        self.read()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class OpenCVCamera(_ThreadedCamera):
    """A camera OpenCV can open: `source` is a device index (int) or a path/URL (a video file
    plays at its own frame rate and loops when `loop`). `width`/`height`/`fps` request a
    device mode (ignored for files)."""

    def __init__(self, name: str, source: int | str = 0, size: Sequence[int] = (128, 128),
                 crop: Sequence[int] | None = None, width: int | None = None,
                 height: int | None = None, fps: float | None = None, loop: bool = True,
                 realtime: bool = True, max_age_s: float = 1.0,
                 first_frame_timeout_s: float = 10.0):
        super().__init__(name, size, crop, max_age_s, first_frame_timeout_s)
        if isinstance(source, str) and source.isdigit():
            source = int(source)
        self.source, self.width, self.height, self.fps = source, width, height, fps
        self.loop, self.realtime = loop, realtime
        self.is_file = isinstance(source, str)
        self._cap = None
        self._t0 = 0.0
        self._n = 0
        self.source_fps: float | None = None

    def _open(self) -> None:
        cv2 = self._cv2
        if self.is_file:
            import os
            if "://" not in self.source and not os.path.exists(self.source):
                raise CameraError(f"camera {self.name}: video file not found: {self.source}")
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise CameraError(f"camera {self.name}: OpenCV cannot open {self.source!r}")
        if not self.is_file:
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        self.source_fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
        self._cap, self._t0, self._n = cap, time.monotonic(), 0

    def _grab(self):
        cv2, cap = self._cv2, self._cap
        if self.is_file and self.realtime and self.source_fps:  # play at the file's rate
            due = self._t0 + self._n / self.source_fps
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return None
        ok, bgr = cap.read()
        if not ok:
            if self.is_file and self.loop:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = cap.read()
            if not ok:
                self.error = f"no frame from {self.source!r}"
                self._stop.wait(0.05)
                return None
        self._n += 1
        if bgr.ndim == 2:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return rgb, None

    def _close_source(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def write_realsense_recording(path, color_frames: Sequence[np.ndarray],
                              depth_frames: Sequence[np.ndarray], serial: str, fx_color: float,
                              fx_depth: float, baseline: float, fps: int = 30) -> str:
    """Record rgb8 colour + z16 depth (mm) frames through librealsense's software device and
    recorder, as a real camera's recording: for tests and benchmarks without hardware. Pinhole
    intrinsics with the principal point at the image centre; depth sits `baseline` metres along
    x from colour."""
    rs = _import_rs()
    dev = rs.software_device()
    sensor = dev.add_sensor("Stereo Module")
    cs, ds = rs.video_stream(), rs.video_stream()
    (ch, cw), (dh, dw) = color_frames[0].shape[:2], depth_frames[0].shape[:2]
    for s, kind, uid, w, h, bpp, fmt, f in ((cs, rs.stream.color, 0, cw, ch, 3, rs.format.rgb8, fx_color),
                                            (ds, rs.stream.depth, 1, dw, dh, 2, rs.format.z16, fx_depth)):
        s.type, s.index, s.uid, s.fps, s.bpp, s.fmt = kind, 0, uid, fps, bpp, fmt
        s.width, s.height = w, h
        i = rs.intrinsics()
        i.width, i.height, i.fx, i.fy, i.ppx, i.ppy = w, h, f, f, w / 2, h / 2
        i.model, i.coeffs = rs.distortion.none, [0.0] * 5
        s.intrinsics = i
    cp, dp = sensor.add_video_stream(cs), sensor.add_video_stream(ds)
    sensor.add_read_only_option(rs.option.depth_units, 0.001)
    ext = rs.extrinsics()
    ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [baseline, 0, 0]
    dp.register_extrinsics_to(cp, ext)
    dev.register_info(rs.camera_info.serial_number, serial)
    dev.register_info(rs.camera_info.name, "software RealSense")
    recorder = rs.recorder(str(path), dev)
    sensor.open([cp, dp])
    sensor.start(rs.frame_queue(10))
    for k, (img, depth) in enumerate(zip(color_frames, depth_frames)):
        for prof, pix, stride, bpp in ((cp, img, cw * 3, 3), (dp, depth, dw * 2, 2)):
            f = rs.software_video_frame()
            f.pixels, f.stride, f.bpp = np.ascontiguousarray(pix), stride, bpp
            f.timestamp, f.frame_number = k * 1000.0 / fps, k
            f.domain = rs.timestamp_domain.hardware_clock
            f.profile = prof.as_video_stream_profile()
            if prof is dp:
                f.depth_units = 0.001
            sensor.on_video_frame(f)
        time.sleep(1.0 / fps)  # the recorder timestamps by arrival as well
    sensor.stop()
    sensor.close()
    del recorder  # flushes and closes the file
    return str(path)


def list_realsense_devices() -> list[dict]:
    """Connected RealSense devices: [{"serial": ..., "name": ...}]."""
    rs = _import_rs()
    out = []
    for dev in rs.context().query_devices():
        out.append({"serial": dev.get_info(rs.camera_info.serial_number),
                    "name": dev.get_info(rs.camera_info.name)})
    return out


class RealSenseCamera(_ThreadedCamera):
    """An Intel RealSense: colour (rgb8) + depth (z16) aligned to colour with `rs.align`.

    serial: pick the device (None: the first one; with `playback`, checked against the
    recording's serial). width/height/fps: the colour and depth stream mode. playback: a
    recording (.bag/.db3) played through the same pipeline instead of a device (repeats when
    `repeat`, at recorded speed when `realtime`). `frame.depth` is float32 metres, aligned
    to and cropped/resized like the colour image. `intrinsics` describes the output image.
    """

    def __init__(self, name: str, serial: str | None = None, width: int = 640,
                 height: int = 480, fps: int = 30, depth: bool = True, align: bool = True,
                 size: Sequence[int] = (128, 128), crop: Sequence[int] | None = None,
                 playback: str | None = None, repeat: bool = True, realtime: bool = True,
                 max_age_s: float = 1.0, first_frame_timeout_s: float = 10.0,
                 frame_timeout_ms: int = 1000):
        super().__init__(name, size, crop, max_age_s, first_frame_timeout_s)
        self.rs = _import_rs()
        self.serial = None if serial is None else str(serial)
        self.width, self.height, self.fps = width, height, fps
        self.depth, self.align_depth = depth, align
        self.playback, self.repeat, self.realtime = playback, repeat, realtime
        self.frame_timeout_ms = frame_timeout_ms
        self.depth_scale: float | None = None
        self.raw_intrinsics: dict | None = None
        self.device_serial: str | None = None
        self.last_device_timestamp_ms: float | None = None
        self._pipe = None
        self._align = None

    def _open(self) -> None:
        rs = self.rs
        pipe, cfg = rs.pipeline(), rs.config()
        if self.playback is not None:
            import os
            if not os.path.exists(self.playback):
                raise CameraError(f"camera {self.name}: recording not found: {self.playback}")
            cfg.enable_device_from_file(self.playback, repeat_playback=self.repeat)
        else:
            if self.serial is not None:
                cfg.enable_device(self.serial)
            cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
            if self.depth:
                cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16,
                                  self.fps)
        try:
            profile = pipe.start(cfg)
        except RuntimeError as exc:
            where = f"serial {self.serial}" if self.serial else "any device"
            raise CameraError(f"camera {self.name}: cannot start the RealSense pipeline "
                              f"({self.playback or where}): {exc}") from exc
        dev = profile.get_device()
        self.device_serial = (dev.get_info(rs.camera_info.serial_number)
                              if dev.supports(rs.camera_info.serial_number) else None)
        if self.serial is not None and self.device_serial != self.serial:
            pipe.stop()
            raise CameraError(f"camera {self.name}: asked for serial {self.serial}, the "
                              f"{'recording' if self.playback else 'device'} has "
                              f"{self.device_serial}")
        if self.playback is not None:
            dev.as_playback().set_real_time(self.realtime)
        streams = {s.stream_type(): s for s in profile.get_streams()}
        if rs.stream.color not in streams:
            pipe.stop()
            raise CameraError(f"camera {self.name}: no colour stream")
        ci = streams[rs.stream.color].as_video_stream_profile().get_intrinsics()
        self.raw_intrinsics = {"width": ci.width, "height": ci.height, "fx": ci.fx, "fy": ci.fy,
                               "ppx": ci.ppx, "ppy": ci.ppy, "model": str(ci.model),
                               "coeffs": list(ci.coeffs)}
        use_depth = self.depth and rs.stream.depth in streams
        if use_depth:
            self.depth_scale = float(dev.first_depth_sensor().get_depth_scale())
        self.depth = use_depth
        self._align = rs.align(rs.stream.color) if use_depth and self.align_depth else None
        self._pipe = pipe

    @property
    def intrinsics(self) -> dict | None:
        """Pinhole intrinsics of the output image (after crop and resize)."""
        if self.raw_intrinsics is None:
            return None
        r = dict(self.raw_intrinsics)
        x0, y0, w, h = self.crop or (0, 0, r["width"], r["height"])
        sx, sy = self.size[1] / w, self.size[0] / h
        return {**r, "width": self.size[1], "height": self.size[0], "fx": r["fx"] * sx,
                "fy": r["fy"] * sy, "ppx": (r["ppx"] - x0) * sx, "ppy": (r["ppy"] - y0) * sy}

    def _grab(self):
        ok, fs = self._pipe.try_wait_for_frames(self.frame_timeout_ms)
        if not ok:
            self.error = f"no frameset within {self.frame_timeout_ms} ms"
            return None
        if self._align is not None:
            fs = self._align.process(fs)
        color = fs.get_color_frame()
        if not color:
            return None
        self.last_device_timestamp_ms = color.get_timestamp()
        rgb = np.asanyarray(color.get_data())
        if color.get_profile().format() == self.rs.format.bgr8:
            rgb = rgb[..., ::-1]
        rgb = np.array(rgb, np.uint8)  # own the memory: librealsense recycles frame buffers
        depth = None
        if self.depth:
            d = fs.get_depth_frame()
            if d:
                depth = np.asanyarray(d.get_data()).astype(np.float32) * self.depth_scale
        return rgb, depth

    def _close_source(self) -> None:
        if self._pipe is not None:
            try:
                self._pipe.stop()
            except RuntimeError:
                pass
            self._pipe = None


CAMERA_TYPES = {"opencv": OpenCVCamera, "realsense": RealSenseCamera}


def make_camera(spec: dict[str, Any]):
    """A camera from a config mapping: {"type": "opencv" | "realsense", "name": ..., ...}."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in CAMERA_TYPES:
        raise ValueError(f"camera spec needs type one of {sorted(CAMERA_TYPES)}, got {kind!r}")
    if "name" not in spec:
        raise ValueError(f"camera spec needs a name (the observation key): {spec}")
    return CAMERA_TYPES[kind](**spec)
