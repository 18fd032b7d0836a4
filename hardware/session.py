"""Real-robot session workflow: `robot-rl robot check CONFIG` before anything moves.

`check_robot(config_path, load_config)` reads a RunConfig YAML for a real env (the Franka,
config/franka_peg_insert.yaml, or the SO-101, config/so101_real.yaml), connects to the arm
without moving it, the gripper and every camera, and reports: connectivity and latency, joint
and TCP state (and whether the TCP and the task's poses are inside the workspace box, how far
each joint is from its limit), gripper width, one frame per camera (saved as PNG) with its
measured rate and intrinsics, the safety-box limits, step limits and watchdog, and the
arm's own control settings (Franka: how the impedance presets map onto franky; SO-101: the
servo rate, the lead clip and LeRobot's calibration/joint mapping). It prints the report and
returns it as a dict (`report["ok"]`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from robot_rl.controllers.frames import quat_to_rpy


def _fmt(v, nd: int = 4):
    return np.round(np.asarray(v, float), nd).tolist()


def _box_report(task, kw: dict, watchdog_s: float) -> dict[str, Any]:
    """The workspace box, step limits, watchdog and rate, from the config alone."""
    box = task.safety
    return {"xyz_low": _fmt(box.xyz_low), "xyz_high": _fmt(box.xyz_high),
            "rpy_low": _fmt(box.rpy_low), "rpy_high": _fmt(box.rpy_high),
            "max_step_pos_m": box.max_step_pos, "max_step_rot_rad": box.max_step_rot,
            "action_step_pos_m": task.action.step_pos,
            "watchdog_s": kw.get("watchdog_s", watchdog_s), "control_hz": kw.get("control_hz", 10.0)}


def _failed(rep: dict, what: str, exc: Exception, problems: list[str]) -> None:
    rep["error"] = f"{type(exc).__name__}: {exc}"
    problems.append(f"{what}: {rep['error']}")


def check_robot(config_path: str, load_config: Callable, out_dir: str | None = None,
                camera_seconds: float = 1.0, print_report: bool = True,
                overrides: list[str] = ()) -> dict[str, Any]:
    """Connectivity, state, camera frames (PNGs in `out_dir`, default
    `runs/<name>/robot_check`) and safety limits. Nothing moves. `load_config(path, overrides)`
    reads the run config: the CLI hands it in, since hardware sits below the runtime
    (.importlinter) and does not import it."""
    from robot_rl.hardware import franka_env, so101_env
    checks = {franka_env.ENV_ID: _check_franka, so101_env.ENV_ID: _check_so101}
    cfg = load_config(config_path, list(overrides))
    if cfg.env.id not in checks:
        raise ValueError(f"{config_path}: env.id {cfg.env.id!r} is not a real-robot env "
                         f"(known: {sorted(checks)})")
    kw = dict(cfg.env.kwargs)
    out = Path(out_dir) if out_dir else Path(cfg.runs_dir) / cfg.name / "robot_check"
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    report: dict[str, Any] = {"config": str(config_path), "env_id": cfg.env.id,
                              "out_dir": str(out)}
    checks[cfg.env.id](kw, report, problems)
    report["cameras"] = _check_cameras(kw.get("cameras", []) or [], out, camera_seconds,
                                       float(kw.get("control_hz", 10.0)), problems)
    fatal = [p for p in problems if p.startswith(("arm:", "gripper:", "camera"))]
    report["problems"] = problems
    report["ok"] = report["arm"].get("connected", False) and not fatal
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    if print_report:
        print(format_report(report))
    return report


def _check_franka(kw: dict, report: dict, problems: list[str]) -> None:
    from robot_rl.hardware.franka import FrankaArm, FrankaGripper, JOINT_LIMITS, map_impedance
    from robot_rl.hardware.franka_env import FrankaPegInsert

    host = kw.get("host", "172.16.0.2")
    task = FrankaPegInsert(**kw.get("task", {}))
    box = task.safety
    report["device"] = host

    # ---- safety limits (from the config alone) -----------------------------------------
    presets = {}
    for label, params in (("training", task.impedance), ("reset", task.reset_impedance)):
        m = map_impedance(params)
        presets[label] = {"stiffness": _fmt(m.stiffness, 1),
                          "damping": "critical" if m.damping is None else _fmt(m.damping, 1),
                          "error_clip_m": _fmt(m.translational_error_clip),
                          "error_clip_rad": _fmt(m.rotational_error_clip),
                          "max_delta_tau_nm_per_ms": m.max_delta_tau, "notes": list(m.notes)}
        problems += [f"{label} impedance: {n}" for n in m.notes]
    report["safety"] = {
        **_box_report(task, kw, 0.15), "impedance": presets,
        "insertion_pose_in_box": box.contains(task.target_pos),
        "reset_pose_in_box": box.contains(task.reset_pos)}

    # ---- arm (read-only) -----------------------------------------------------------------
    arm_kw = {k: v for k, v in kw.get("arm", {}).items()}
    arm_rep: dict[str, Any] = {"connected": False}
    arm = None
    try:
        t0 = time.monotonic()
        arm = FrankaArm(host, **arm_kw).connect(control=False)
        arm_rep["connect_s"] = round(time.monotonic() - t0, 3)
        n0, t1 = arm.samples, time.monotonic()
        time.sleep(0.25)
        rate = (arm.samples - n0) / (time.monotonic() - t1)
        s = arm.state()
        lo, hi = JOINT_LIMITS[arm.joint_limits] if arm.joint_limits else (None, None)
        arm_rep.update({
            "connected": True, "robot_mode": arm.robot_mode, "in_control": arm.in_control,
            "state_rate_hz": round(rate, 1),
            "q": _fmt(s.q), "tcp_xyz": _fmt(s.tcp_pose[:3]), "tcp_quat_xyzw": _fmt(s.tcp_pose[3:]),
            "tcp_rpy": _fmt(quat_to_rpy(s.tcp_pose[3:])), "wrench": _fmt(s.wrench, 2),
            "tcp_in_box": box.contains(s.tcp_pose[:3]),
        })
        if lo is not None:
            margin = float(np.min(np.minimum(s.q - lo, hi - s.q)))
            arm_rep["joint_limit_margin_rad"] = round(margin, 4)
            if margin < 0.1:
                problems.append(f"a joint is {margin:.3f} rad from its limit")
        if task.reset_q is not None:
            arm.check_joints(task.reset_q)
        if not arm_rep["tcp_in_box"]:
            problems.append("the TCP is outside the workspace box: the first reset will do a "
                            "joint reset to task.reset_q" if task.reset_q is not None else
                            "the TCP is outside the workspace box and no task.reset_q is set")
        if arm.robot_mode not in ("Idle", "Move"):
            problems.append(f"robot mode is {arm.robot_mode} (user stop engaged / errors?)")
    except Exception as exc:  # noqa: BLE001 (reported, not raised)
        _failed(arm_rep, "arm", exc, problems)
    finally:
        if arm is not None:
            arm.close()
    report["arm"] = arm_rep

    # ---- gripper -------------------------------------------------------------------------
    g_cfg = kw.get("gripper", True)
    if g_cfg:
        g_rep: dict[str, Any] = {"connected": False}
        try:
            with FrankaGripper(host, **(g_cfg if isinstance(g_cfg, dict) else {})) as g:
                gs = g.state()
                g_rep.update({"connected": True, "width": round(gs.width, 4),
                              "max_width": round(gs.max_width, 4), "grasped": gs.grasped})
        except Exception as exc:  # noqa: BLE001
            _failed(g_rep, "gripper", exc, problems)
        report["gripper"] = g_rep



def _check_so101(kw: dict, report: dict, problems: list[str]) -> None:
    """The SO-101 through LeRobot: connect (which holds every joint where it is; see
    LeRobotSO101.connect), read joints and jaw, and report the TCP our kinematics put there:
    it must match where the gripper really is, else the joint mapping is wrong."""
    from robot_rl.controllers.frames import quat_to_rpy
    from robot_rl.hardware.so101 import SO101_CHAIN, JointMapping, LeRobotSO101
    from robot_rl.hardware.so101_env import SO101Task

    task = SO101Task(**kw.get("task", {}))
    box, port = task.safety, kw.get("port", "/dev/ttyACM0")
    mapping = JointMapping(**(kw.get("mapping") or {}))
    report["device"] = port
    report["safety"] = {
        **_box_report(task, kw, 0.3),
        "servo": {"servo_hz": kw.get("servo_hz", 50.0), "max_lead_rad": kw.get("max_lead", 0.2),
                  "max_velocity_rad_s": _fmt(SO101_CHAIN.max_velocity, 2),
                  "joint_signs": list(mapping.signs), "joint_offsets_rad": list(mapping.offsets)},
        "reset_pose_in_box": box.contains(SO101_CHAIN.fk(task.reset_q)[0])}
    if task.target is not None:
        report["safety"]["target_pose_in_box"] = box.contains(task.target)
    if not report["safety"]["reset_pose_in_box"]:
        problems.append(f"task.reset_q puts the TCP at {_fmt(SO101_CHAIN.fk(task.reset_q)[0])}, "
                        f"outside the workspace box")
    arm_rep: dict[str, Any] = {"connected": False}
    so101 = None
    try:
        t0 = time.monotonic()
        so101 = LeRobotSO101(port, kw.get("robot_id", "so101_follower"),
                             kw.get("calibration_dir"), mapping).connect()
        arm_rep["connect_s"] = round(time.monotonic() - t0, 3)
        n, t1 = 0, time.monotonic()
        while time.monotonic() - t1 < 0.25:
            q, _, _ = so101.read()
            n += 1
        pos, quat = SO101_CHAIN.fk(q)
        margin = np.minimum(q - SO101_CHAIN.lower, SO101_CHAIN.upper - q)
        g = so101.gripper.state()
        arm_rep.update({"connected": True, "state_rate_hz": round(n / (time.monotonic() - t1), 1),
                        "q": _fmt(q), "tcp_xyz": _fmt(pos), "tcp_quat_xyzw": _fmt(quat),
                        "tcp_rpy": _fmt(quat_to_rpy(quat)), "tcp_in_box": box.contains(pos),
                        "joint_limit_margin_rad": round(float(margin.min()), 4)})
        report["gripper"] = {"connected": True, "width": round(g.width, 4),
                             "max_width": round(g.max_width, 4), "grasped": g.grasped}
        if margin.min() < 0:
            problems.append(f"joint {SO101_CHAIN.names[int(margin.argmin())]} is outside its "
                            f"limits by {-margin.min():.3f} rad: wrong calibration or mapping?")
        elif margin.min() < 0.1:
            problems.append(f"a joint is {margin.min():.3f} rad from its limit")
        if not arm_rep["tcp_in_box"]:
            problems.append("the TCP is outside the workspace box: the first reset will do a "
                            "joint move to task.reset_q")
    except Exception as exc:  # noqa: BLE001 (reported, not raised)
        _failed(arm_rep, "arm", exc, problems)
    finally:
        if so101 is not None:
            so101.close()
    report["arm"] = arm_rep


def _check_cameras(specs: list, out: Path, camera_seconds: float, control_hz: float,
                   problems: list[str]) -> list[dict]:
    from robot_rl.hardware.cameras import make_camera
    cams = []
    for spec in specs:
        c_rep: dict[str, Any] = {"name": spec.get("name"), "type": spec.get("type")}
        cam = None
        try:
            cam = make_camera(spec).open()
            f = cam.read()
            n0, t0 = cam.frames, time.monotonic()
            time.sleep(camera_seconds)
            f = cam.read()
            fps = (cam.frames - n0) / (time.monotonic() - t0)
            png = out / f"{cam.name}.png"
            _write_png(png, f.rgb)
            c_rep.update({"ok": True, "shape": list(f.rgb.shape), "fps": round(fps, 1),
                          "png": str(png), "mean_rgb": _fmt(f.rgb.reshape(-1, 3).mean(0), 1)})
            if f.depth is not None:
                dpng = out / f"{cam.name}_depth.png"
                d = f.depth
                scaled = np.clip(d / max(float(np.percentile(d, 99)), 1e-6) * 255, 0, 255)
                _write_png(dpng, np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=2))
                c_rep.update({"depth_png": str(dpng),
                              "depth_range_m": _fmt([float(d[d > 0].min()) if (d > 0).any()
                                                     else 0.0, float(d.max())], 3)})
            if getattr(cam, "intrinsics", None):
                c_rep["intrinsics"] = {k: (round(v, 3) if isinstance(v, float) else v)
                                       for k, v in cam.intrinsics.items()}
            if fps < 0.5 * control_hz:
                problems.append(f"camera {cam.name}: {fps:.1f} fps is below half the control rate")
        except Exception as exc:  # noqa: BLE001
            c_rep.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            problems.append(f"camera {spec.get('name')}: {c_rep['error']}")
        finally:
            if cam is not None:
                cam.close()
        cams.append(c_rep)
    return cams



def _write_png(path: Path, rgb: np.ndarray) -> None:
    import imageio.v2 as imageio
    imageio.imwrite(path, np.asarray(rgb, np.uint8))


def format_report(r: dict) -> str:
    lines = [f"robot check: {r['config']} ({r['env_id']}) -> {'OK' if r['ok'] else 'PROBLEMS'}"]
    a = r["arm"]
    if a.get("connected"):
        mode = f", mode {a['robot_mode']}" if "robot_mode" in a else ""
        lines += [f"  arm {r['device']}: connected in {a['connect_s']} s{mode}, "
                  f"state {a['state_rate_hz']} Hz (nothing was moved)",
                  f"    q        {a['q']}",
                  f"    tcp xyz  {a['tcp_xyz']}  rpy {a['tcp_rpy']}  in box: {a['tcp_in_box']}"]
        if "wrench" in a:
            lines.append(f"    wrench   {a['wrench']}")
        if "joint_limit_margin_rad" in a:
            lines.append(f"    joint-limit margin {a['joint_limit_margin_rad']} rad")
    else:
        lines.append(f"  arm {r['device']}: NOT CONNECTED: {a.get('error')}")
    if "gripper" in r:
        g = r["gripper"]
        lines.append(f"  gripper: width {g['width']} / {g['max_width']} m, grasped {g['grasped']}"
                     if g.get("connected") else f"  gripper: NOT CONNECTED: {g.get('error')}")
    for c in r["cameras"]:
        if c.get("ok"):
            lines.append(f"  camera {c['name']} ({c['type']}): {c['shape']} at {c['fps']} fps -> "
                         f"{c['png']}" + (f", depth {c['depth_range_m']} m" if "depth_png" in c
                                          else ""))
        else:
            lines.append(f"  camera {c['name']} ({c['type']}): FAILED: {c.get('error')}")
    if not r["cameras"]:
        lines.append("  cameras: none configured")
    s = r["safety"]
    lines += [f"  safety box xyz {s['xyz_low']} .. {s['xyz_high']}",
              f"             rpy {s['rpy_low']} .. {s['rpy_high']}",
              f"    per-step limit {s['max_step_pos_m']} m / {s['max_step_rot_rad']} rad, action "
              f"step {s['action_step_pos_m']} m, watchdog {s['watchdog_s']} s, "
              f"{s['control_hz']} Hz",
              "    " + ", ".join(f"{k[:-len('_pose_in_box')]} pose in box: {v}"
                              for k, v in s.items() if k.endswith("_pose_in_box"))]
    if "servo" in s:
        v = s["servo"]
        lines.append(f"    position servos: IK at {v['servo_hz']} Hz, joint speed <= "
                     f"{v['max_velocity_rad_s']} rad/s, lead clip {v['max_lead_rad']} rad, "
                     f"joint signs {v['joint_signs']} offsets {v['joint_offsets_rad']} rad")
    for label, p in s.get("impedance", {}).items():
        lines.append(f"    {label} impedance: K {p['stiffness']}, D {p['damping']}, clip "
                     f"{p['error_clip_m']} m / {p['error_clip_rad']} rad, "
                     f"dtau {p['max_delta_tau_nm_per_ms']} Nm/ms")
    for p in r["problems"]:
        lines.append(f"  ! {p}")
    return "\n".join(lines)


def _cmd_check(args) -> int:
    report = check_robot(args.config, args.load_config, out_dir=args.out,
                         overrides=args.overrides)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["ok"] else 1


def add_cli(subparsers, load_config: Callable) -> None:
    """Register `robot-rl robot check CONFIG` on the `robot-rl` subparsers; `load_config` as in
    `check_robot`."""
    r = subparsers.add_parser("robot", help="real-robot session tools")
    sub = r.add_subparsers(dest="robot_command", required=True)
    c = sub.add_parser("check", help="connectivity, state, camera frames and safety limits "
                                     "of a real-robot config, before anything moves")
    c.add_argument("config",
                   help="RunConfig YAML of a real env, e.g. config/franka_peg_insert.yaml or "
                        "config/so101_real.yaml")
    c.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. env.kwargs.host=...")
    c.add_argument("--out", help="where the PNGs and report.json go "
                                 "(default runs/<name>/robot_check)")
    c.add_argument("--json", help="also write the report here")
    c.set_defaults(func=_cmd_check, load_config=load_config)
