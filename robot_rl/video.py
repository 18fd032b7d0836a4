"""mp4 writing for evaluation videos (H.264 through imageio's bundled ffmpeg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    import imageio.v2 as imageio
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1,
                            ffmpeg_log_level="error") as w:
        for f in frames:
            w.append_data(np.asarray(f, np.uint8))
    tmp.replace(path)  # atomic: a crash never leaves a truncated video under the real name
    return path


def env_frame(env, size: int = 256) -> np.ndarray:
    """A front-camera view for videos: the sim's front camera whatever the observation cameras
    are, else (real robots) the env's first camera."""
    world = getattr(env.unwrapped, "world", None)
    if world is not None and hasattr(world, "render"):
        return world.render("front", size, size)
    return env.render()
