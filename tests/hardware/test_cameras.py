"""Real cameras on real data: a RealSense recording written by librealsense's software device
and recorder, played back through the real pipeline + rs.align; an OpenCV camera on a video
file written by OpenCV. No device needed."""
from __future__ import annotations

import time

import numpy as np
import pytest

from robot_rl.hardware.cameras import (CameraError, CameraLostError, OpenCVCamera,
                                       RealSenseCamera, make_camera)
from robot_rl.hardware.cameras import write_realsense_recording as cameras_write_recording
from robot_rl.hardware.safety import ConnectionLostError

CW, CH, DW, DH = 64, 48, 32, 24      # colour / depth resolutions of the recording
FX_C, FX_D, BASELINE = 50.0, 25.0, 0.05
SERIAL = "123456"


def write_realsense_recording(path, frames: int = 8):
    """Colour 64x48 (fx 50) + depth 32x24 (fx 25), depth->colour baseline 5 cm along x.
    Depth: 2 m background with a 1 m square at depth pixels [8:16, 8:16]. Colour frame k is
    (20k, 7, 255-20k)."""
    depth = np.full((DH, DW), 2000, np.uint16)
    depth[8:16, 8:16] = 1000
    colours = []
    for k in range(frames):
        img = np.empty((CH, CW, 3), np.uint8)
        img[..., 0], img[..., 1], img[..., 2] = 20 * k, 7, 255 - 20 * k
        colours.append(img)
    return cameras_write_recording(path, colours, [depth] * frames, SERIAL, fx_color=FX_C,
                                   fx_depth=FX_D, baseline=BASELINE)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rs") / "session.db3"
    write_realsense_recording(path)
    assert path.stat().st_size > 0
    return str(path)


def test_realsense_playback_depth_aligned_to_colour(recording):
    cam = RealSenseCamera("wrist", serial=SERIAL, playback=recording, size=(CH, CW))
    with cam:
        first = cam.read()
        assert cam.wait_frames(4, timeout_s=5)
        f = cam.read()
    assert cam.device_serial == SERIAL and cam.depth_scale == pytest.approx(0.001)
    assert f.rgb.shape == (CH, CW, 3) and f.rgb.dtype == np.uint8
    assert f.depth is not None and f.depth.shape == (CH, CW) and f.depth.dtype == np.float32
    assert f.t_ns > first.t_ns
    # colour came through unchanged (frame k = (20k, 7, 255 - 20k))
    r = int(f.rgb[0, 0, 0])
    assert r % 20 == 0 and tuple(f.rgb[0, 0]) == (r, 7, 255 - r)
    assert np.all(f.rgb == f.rgb[0, 0])
    # depth in metres, reprojected into the colour camera: the 1 m square (depth pixels 8..16)
    # lands at colour u = FX_C ((u_d - 16) / FX_D + BASELINE) + 32, v = FX_C (v_d - 12) / FX_D + 24
    vals = np.unique(np.round(f.depth[f.depth > 0], 3))
    assert set(vals.tolist()) == {1.0, 2.0}
    ys, xs = np.nonzero(np.isclose(f.depth, 1.0))
    u_edges = [FX_C * ((u - DW / 2) / FX_D + BASELINE) + CW / 2 for u in (8, 16)]
    v_edges = [FX_C * (v - DH / 2) / FX_D + CH / 2 for v in (8, 16)]
    assert abs(xs.mean() - (np.mean(u_edges) - 0.5)) <= 1.0   # (without the baseline: 2.5 px off)
    assert abs(ys.mean() - (np.mean(v_edges) - 0.5)) <= 1.0
    assert xs.max() - xs.min() + 1 == pytest.approx(u_edges[1] - u_edges[0], abs=1)


def test_realsense_crop_resize_intrinsics_and_serial(recording):
    cam = RealSenseCamera("wrist", playback=recording, crop=(16, 8, 32, 32), size=(16, 16))
    with cam:
        f = cam.read()
        intr = cam.intrinsics
    assert f.rgb.shape == (16, 16, 3) and f.depth.shape == (16, 16)
    assert cam.shape == (16, 16, 3)
    assert cam.raw_intrinsics["fx"] == pytest.approx(FX_C) and cam.raw_intrinsics["width"] == CW
    assert intr["fx"] == pytest.approx(FX_C * 0.5) and intr["ppx"] == pytest.approx((32 - 16) * 0.5)
    assert intr["ppy"] == pytest.approx((24 - 8) * 0.5) and intr["width"] == 16
    with pytest.raises(CameraError, match="serial"):
        RealSenseCamera("wrist", serial="999", playback=recording).open()


def write_video(path, n: int = 12, w: int = 320, h: int = 240, fps: float = 30.0):
    """Left half blue, right half (40 + 15 i, 200, 60) in frame i (RGB), MJPG in AVI."""
    import cv2
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for i in range(n):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[:, : w // 2] = (0, 0, 255)
        rgb[:, w // 2:] = (40 + 15 * i, 200, 60)
        out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out.release()


def test_opencv_camera_on_video_file(tmp_path):
    path = tmp_path / "front.avi"
    write_video(path)
    cam = make_camera({"type": "opencv", "name": "front", "source": str(path),
                       "crop": [160, 0, 160, 240]})
    assert isinstance(cam, OpenCVCamera)
    with cam:
        f0 = cam.read()
        t0 = time.monotonic()
        assert cam.wait_frames(20, timeout_s=5)   # 12-frame file: it looped
        elapsed = time.monotonic() - t0
        t = time.perf_counter()
        f = cam.read()
        read_ms = (time.perf_counter() - t) * 1e3
    assert cam.source_fps == pytest.approx(30.0)
    assert 20 / elapsed == pytest.approx(30.0, rel=0.35)   # played at the file's rate
    assert f.rgb.shape == (128, 128, 3) and f.rgb.dtype == np.uint8 and f.depth is None
    assert f.t_ns > f0.t_ns and read_ms < 1.0
    # the crop kept the right half only: (40 + 15 i, 200, 60), never the blue half
    px = f.rgb.reshape(-1, 3).mean(0)
    assert abs(px[1] - 200) < 12 and abs(px[2] - 60) < 12
    i = (px[0] - 40) / 15
    assert abs(i - round(i)) < 0.5 and -0.5 < i < 11.5


def test_opencv_camera_lost_and_bad_config(tmp_path):
    path = tmp_path / "short.avi"
    write_video(path, n=3)
    cam = OpenCVCamera("front", source=str(path), loop=False, max_age_s=0.3)
    with cam:
        cam.read()
        time.sleep(0.6)
        with pytest.raises(CameraLostError, match="old"):
            cam.read()
        assert issubclass(CameraLostError, ConnectionLostError)  # ends the episode, not the run
    with pytest.raises(CameraError, match="not found"):
        OpenCVCamera("x", source=str(tmp_path / "missing.avi")).open()
    with pytest.raises(ValueError, match="crop"):
        OpenCVCamera("x", source=str(path), crop=(0, 0, 10))
    with pytest.raises(ValueError, match="type"):
        make_camera({"name": "x"})


def test_a_frame_that_cannot_be_processed_is_reported_not_swallowed(tmp_path):
    """A crop that no longer fits (the source changed resolution) used to kill the reader
    thread silently: read() then said "no error". Now the thread keeps running and read()
    names the cause."""
    path = tmp_path / "small.avi"
    write_video(path, w=160, h=120)
    cam = OpenCVCamera("front", source=str(path), crop=(100, 0, 120, 120), max_age_s=0.3,
                       first_frame_timeout_s=1.0)
    with cam:
        with pytest.raises(CameraLostError, match=r"crop \(100, 0, 120, 120\) exceeds the 160x120 frame"):
            cam.read()
        assert cam._thread.is_alive()
