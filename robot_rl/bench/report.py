"""`robot-rl bench report`: docs/results.md and its learning-curve PNGs, regenerated from the
benchmark JSONs in bench/ (what `robot-rl bench ... --json FILE` writes).

The page is the generated tables followed by docs/results_notes.md (hand-written history and
analysis, carried over verbatim), so a new benchmark run changes the numbers by one command and
nothing is copied by hand."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

# One builder per benchmark JSON: (json) -> markdown, given a function that saves a curve PNG.
Curves = dict[str, list[tuple[float, float]]]  # label -> [(env steps, success), ...]
SaveCurves = Callable[[str, str, Curves], str]  # (file stem, title, curves) -> markdown image


def _pct(x) -> str:
    return "-" if x is None else f"{100 * float(x):.0f}%"


def _num(x, fmt: str = ".0f") -> str:
    return "-" if x is None else format(float(x), fmt)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sim(d: dict, save: SaveCurves) -> str:
    return _table(["env steps/s (PandaPickCube, 10 Hz policy, 500 Hz physics)", "value"], [
        ["physics limit: mj_step/s / substeps", _num(d["physics_limit_steps_per_s"])],
        ["ours, state (C impedance kernel)", _num(d["state_steps_per_s"])],
        ["ours, state, numpy impedance law", _num(d["numpy_controller_state_steps_per_s"])],
        ["ours, vision (front + wrist 128x128)", _num(d["vision_steps_per_s"])],
        ["gym-hil PandaPickCubeBase-v0, state", _num(d["gym_hil_state_steps_per_s"])],
        ["gym-hil PandaPickCubeBase-v0, images", _num(d["gym_hil_vision_steps_per_s"], ".1f")],
        ["ours state / physics limit", _pct(d["state_fraction_of_physics_limit"])],
        ["C kernel / numpy law", _num(d["c_kernel_speedup_vs_numpy"], ".1f") + "x"],
        ["ours / gym-hil, state", _num(d["vs_gym_hil_state"], ".1f") + "x"],
        ["ours / gym-hil, vision", _num(d["vs_gym_hil_vision"], ".0f") + "x"],
    ])


def learn(d: dict, save: SaveCurves) -> str:
    rows = []
    if "critic_updates_per_s" in d:
        rows += [["critic updates/s, compiled (fraction of the GEMM ceiling)",
                  f"{_num(d['critic_updates_per_s'])} ({_pct(d['matmul_ceiling_fraction'])})"],
                 ["critic updates/s, eager (fraction of the GEMM ceiling)",
                  f"{_num(d['eager_critic_updates_per_s'])} ({_pct(d['eager_matmul_ceiling_fraction'])})"]]
    if "replay_bytes_ratio" in d:
        rows.append(["replay bytes per image transition / raw frame bytes",
                     _num(d["replay_bytes_ratio"], ".3f")])
    env = d.get("env_id", "robot_rl/PandaPickCube-v0").split("/")[-1].removesuffix("-v0")
    if "steps_to_90" in d:
        rows += [[f"{env} state: env steps to 90%, per seed",
                  ", ".join(_num(s) for s in d["steps_to_90"]) + f" (median {_num(d['median_steps_to_90'])})"],
                 ["same, wall-clock s", ", ".join(_num(s) for s in d["wall_clock_s"])],
                 ["same, success at that evaluation", ", ".join(_pct(s) for s in d["final_success"])]]
    out = _table(["measurement", "value"], rows)
    if d.get("state_curves"):
        stem = "learn_state" if env == "PandaPickCube" else f"learn_state_{env}"
        out += "\n\n" + save(stem, f"{env} (state, 20 demos): eval success",
                             {f"seed {i}": c for i, c in enumerate(d["state_curves"])})
    return out


def external(d: dict, save: SaveCurves) -> str:
    rows, curves = [], {}
    for name, t in d["tasks"].items():
        rows.append([f"{name} (`{t['config']}`)", _num(t["steps_to_80"]), _num(t["steps_to_90"]),
                     _num(t["wall_clock_s_to_90"])])
        for s in t["seeds"]:
            curves[f"{name}, seed {s['seed']}"] = s["curve"]
    return (_table(["task", "env steps to 80%", "env steps to 90%", "wall-clock s to 90%"], rows)
            + "\n\n" + save("external", "Envs nobody here wrote: eval success", curves))


def classifier(files: dict[str, dict], save: SaveCurves) -> str:
    """All classifier-reward runs in one table: the command's own file and its variants."""
    rows = []
    for name, d in files.items():
        for seed, r in zip(d.get("seeds") or ["-"], d.get("per_seed") or [d]):
            rows.append([f"`{name}`", seed, r["env_steps"], _num(r["clear_margin_m"], ".2f"),
                         _num(r.get("hard_weight", 1.0), ".0f"), r.get("warm_start", False),
                         len(r["refreshes"]), _pct(r["final_true_success"])])
    return ("Files other than `classifier_reward.json` are variants of the command (their settings "
            "are in the table; runs C-G in the notes; a single-seed file is seed 0, `_s1` seed 1).\n\n"
            + _table(["file", "seed", "final-run env steps", "clear margin m", "hard weight",
                      "warm start", "in-run refreshes", "true success, held-out seeds"], rows))


def vgps(d: dict, save: SaveCurves) -> str:
    rows = [[p["seed"], _pct(p["demo_success"]), _pct(p["base_success"]), _pct(p["base_deterministic_success"]),
             _pct(p["vgps_success"]), _pct(p["random_q_success"]), _pct(p["k1_success"])]
            for p in d["per_seed"]]
    return (_table(["seed", "demos", "BC (sampled)", "BC (mean action)", "V-GPS", "random Q", "K=1"], rows)
            + f"\n\nMedian V-GPS gain over BC: **{_num(d['median_vgps_gain_points'])} points** "
              f"(target {_num(d['target_gain_points'])}); random-Q re-ranking: "
              f"{_num(d['median_random_q_gain_points'])} points.")


def language(d: dict, save: SaveCurves) -> str:
    rows = [[q, _num(a, ".3f"), _num(p, ".3f"), _num(b, ".3f")]
            for q, a, p, b in zip(d["queries"], d["language_agreement_mean"],
                                  d["language_paper_agreement_mean"], d["bt_agreement_mean"])]
    curves = {k: list(zip(d["queries"], d[f"{k}_agreement_mean"])) for k in ("language", "language_paper", "bt")}
    return (_table(["queries", "language (ours)", "language (paper's)", "Bradley-Terry"], rows)
            + "\n\nSpearman agreement of the learned reward with the true reward, mean over "
              f"{len(d['seeds'])} seeds.\n\n"
            + save("language", "Agreement with the true reward vs queries", curves))


def distributed(d: dict, save: SaveCurves) -> str:
    return _table(["measurement", "value"], [
        ["1 actor, env steps/s", _num(d["one_actor_steps_per_s"])],
        ["2 actors, env steps/s", _num(d["two_actor_steps_per_s"])],
        ["2 vs 1 actors", _num(d["speedup"], ".2f") + "x"],
        ["2 plain processes vs 1 (the machine's ceiling)", _num(d["plain_speedup"], ".2f") + "x"],
        ["learner updates/s, no actors / 2 actors", f"{_num(d['learner_updates_per_s_no_actors'])} / "
                                                     f"{_num(d['learner_updates_per_s_two_actors'])}"],
        ["transitions sent / stored / lost", f"{d['transport_totals']['sent']} / "
                                             f"{d['transport_totals']['stored']} / "
                                             f"{d['transport_totals']['lost_requests']}"],
    ])


def mjx(d: dict, save: SaveCurves) -> str:
    rows = [[n, _num(s, ".1f"), _num(d["ratio_vs_cpu_mujoco"][n], ".3f"), _num(d["compile_s"][n])]
            for n, s in d["steps_per_s"].items()]
    return (_table(["batched envs", "env steps/s", "vs CPU MuJoCo", "compile s"], rows)
            + f"\n\nCPU MuJoCo baseline in the same run: {_num(d['cpu_mujoco_steps_per_s'])} env steps/s.")


def finetune(d: dict, save: SaveCurves) -> str:
    arms = {"calql": "Cal-QL online, from the offline run", "rlpd_init": "RLPD, from the offline run",
            "rlpd_scratch": "RLPD from scratch, same data", "bc_init": "RLPD, actor from a BC run on the same data"}
    rows, curves = [], {}
    for s in d["seeds"]:
        rows.append([f"seed {s['seed']}: offline policy", _pct(s["offline_success"]), "-", "-", "-"])
        for arm, label in arms.items():
            if arm not in s:  # runs before the arm existed
                continue
            r = s[arm]
            curves[f"{label} (seed {s['seed']})"] = r["curve"]
            if "prior_success" in r:
                label += f" (its {r['prior_steps']} rollout steps: {_pct(r['prior_success'])} success)"
            rows.append([label, _pct(r["curve"][0][1] if r["curve"] else None),
                         "-" if r["dip"] is None else f"{100 * r['dip']:+.0f} points",
                         _num(r["steps_to_90"]), _pct(r["final_success"])])
    return (f"{d['task']}.\n\n"
            + _table(["run", "first eval", "dip below offline (first 2000 steps)",
                      "env steps to 90%", "final"], rows)
            + "\n\n" + save("finetune", "Offline-to-online fine-tuning, PandaPickCube", curves))


def reset_free(d: dict, save: SaveCurves) -> str:
    rows = []
    for s in d["seeds"]:
        for mode, label in (("episodic", "episodic (a reset before every episode)"),
                            ("reset_free", "reset-free, forward + backward learners")):
            r = s[mode]
            rows.append([f"{label}, seed {s['seed']}", _num(r["env_steps"]), _pct(r["forward_success"]),
                         _num(r["real_resets"]), _num(r["manual_resets"]), _num(r["wall_clock_s"])])
    return (f"{d['task']}; forward success on {d['eval']}.\n\n"
            + _table(["training", "env steps", "forward success", "real resets after the first",
                      "by hand", "wall-clock s"], rows))


def suite(d: dict, save: SaveCurves) -> str:
    rows, parts = [], []
    for env_id, t in d["tasks"].items():
        name = env_id.split("/")[-1].removesuffix("-v0")
        rows.append([name, t["kind"], ", ".join(_num(s) for s in t["steps_to_90"]),
                     _num(t["median_steps_to_90"]),
                     f"<= {t['target_steps']}: {'met' if t['met_target'] else '**not met**'}",
                     ", ".join(_num(w) for w in t["wall_clock_s"]),
                     ", ".join(_pct(s) for s in t["final_success"]), _num(t["peak_rss_mb"])])
        parts.append(save(f"suite_{name}", f"{name} ({t['kind']}, default agent): eval success",
                          {f"seed {r['seed']}": r["curve"] for r in t["runs"]}))
    c = d.get("config", {})
    head = (f"Default agent, no per-task tuning: state tasks `{c.get('state')}`, vision tasks "
            f"`{c.get('vision')}`, only `env.id` changed" +
            (f"; overrides {c['overrides']}" if c.get("overrides") else "") + ".\n\n")
    return head + _table(["task", "obs", "env steps to 90% (per seed)", "median", "target",
                          "wall-clock s", "success at stop", "peak RSS MB"], rows) + \
        "\n\n" + "\n".join(parts)


def agent_study(files: dict[str, dict], save: SaveCurves) -> str:
    """Candidate default agents side by side: `suite.json` (today's default) and every
    `suite_*.json` (the same suite command with a candidate's overrides), task by task, with
    one curve per candidate and seed."""
    def overrides(d: dict) -> list[str]:
        return d.get("config", {}).get("overrides", [])

    base = set(overrides(files.get("suite.json", {})))

    def label(name: str, d: dict) -> str:  # what a candidate changes from today's default run
        return " ".join(f"`{o}`" for o in overrides(d) if o not in base) or "default"

    rows, curves = [], {}
    candidates = [d for name, d in files.items() if name != "suite.json"]
    if not candidates:
        return ""  # no section without a candidate beside today's default
    for env_id in dict.fromkeys(e for d in candidates for e in d["tasks"]):
        name = env_id.split("/")[-1].removesuffix("-v0")
        for fname, d in files.items():
            t = d["tasks"].get(env_id)
            if t is None:
                continue
            rows.append([name, label(fname, d), f"`{fname}`",
                         ", ".join(_num(s) for s in t["steps_to_90"]),
                         ", ".join(_pct(s) for s in t["final_success"]),
                         ", ".join(_num(w) for w in t["wall_clock_s"])])
            for r in t["runs"]:
                curves.setdefault(name, {})[f"{label(fname, d).replace('`', '')} s{r['seed']}"] = r["curve"]
    plots = [save(f"agent_study_{name}", f"{name}: default-agent candidates", c) for name, c in curves.items()]
    return ("The suite command (`--envs` the tasks below, `--seeds 2`) once per candidate, its "
            "overrides appended; `suite.json` is today's default.\n\n"
            + _table(["task", "candidate", "file", "env steps to 90% (per seed)", "success at stop",
                      "wall-clock s"], rows) + "\n\n" + "\n".join(plots))


# (JSON file pattern, section title, reproducing command, builder); a JSON matching no entry is
# listed with its top-level numbers, so nothing in bench/ is left off the page. A builder in
# MULTI_FILE gets every matching file at once, for one table.
SECTIONS = [
    ("sim*", "Simulation throughput", "robot-rl bench sim --json bench/sim.json", sim),
    ("learn*", "Learning: sample efficiency and update throughput",
     "robot-rl bench learn --task throughput,replay,state --seeds 3 --json bench/learn_state.json", learn),
    ("suite", "Every sim task, one default agent",
     "robot-rl bench learn --task suite --seeds 3 --json bench/suite.json", suite),
    ("suite*", "Choosing the default agent",
     "robot-rl bench learn --task suite --seeds 2 --envs TASKS --json bench/suite_NAME.json OVERRIDES",
     agent_study),
    ("external*", "Environments nobody here wrote", "robot-rl bench external --json bench/external.json", external),
    ("classifier_reward*", "A success classifier as the only reward",
     "robot-rl bench classifier-reward train.torch_threads=1 --json bench/classifier_reward.json", classifier),
    ("vgps*", "V-GPS re-ranking of a BC policy", "robot-rl bench vgps --json bench/vgps.json", vgps),
    ("language*", "Rewards from comparative language feedback",
     "robot-rl bench language --json bench/language.json", language),
    ("distributed*", "Distributed actors + learner (Ray)",
     "robot-rl bench distributed --json bench/distributed.json", distributed),
    ("mjx*", "Batched MJX simulation", "robot-rl bench mjx --json bench/mjx.json", mjx),
    ("finetune*", "Offline-to-online fine-tuning", "robot-rl bench finetune --json bench/finetune.json", finetune),
    ("reset_free*", "Reset-free training vs episodic",
     "robot-rl bench reset-free train.total_env_steps=12000 train.eval_every=2000 train.eval_episodes=20 "
     "--json bench/reset_free.json", reset_free),
]
MULTI_FILE = (classifier, agent_study)


def _generic(d: dict, save: SaveCurves) -> str:
    rows = [[k, v] for k, v in d.items() if isinstance(v, (int, float, str, bool))]
    return _table(["key", "value"], rows)


def _curve_saver(img_dir: Path) -> SaveCurves:
    def save(stem: str, title: str, curves: Curves) -> str:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        for label, pts in curves.items():
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="o", label=label)
        ax.set(title=title, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        img_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(img_dir / f"{stem}.png")
        plt.close(fig)
        return f"![{title}](img/{stem}.png)"
    return save


def build(bench_dir: Path, docs_dir: Path) -> str:
    """Write docs_dir/results.md and docs_dir/img/*.png from bench_dir/*.json; returns the page."""
    save = _curve_saver(docs_dir / "img")
    parts = ["# Results", "",
             "Generated by `robot-rl bench report` from the JSON files in `bench/` (do not edit by "
             "hand: rerun a benchmark with `--json`, then the report). Measured on 2-core x86_64 "
             "CPU machines shared with other jobs, so wall-clock figures are pessimistic; ratios "
             "are measured within one run. Analysis and history: [notes](#notes) below."]
    done: set[Path] = set()
    for pattern, title, command, builder in SECTIONS:
        paths = sorted(bench_dir.glob(f"{pattern}.json"))
        done.update(paths)
        if builder in MULTI_FILE:
            body = builder({p.name: json.loads(p.read_text()) for p in paths}, save) if paths else ""
            if body:
                parts += ["", f"## {title}", "", f"`{command}`", "", body]
            continue
        for path in paths:
            parts += ["", f"## {title}", "", f"`{command}`" if path.name in command
                      else f"`bench/{path.name}` (a variant of `{command}`)", "",
                      builder(json.loads(path.read_text()), save)]
    for path in sorted(set(bench_dir.glob("*.json")) - done):
        parts += ["", f"## `{path.name}`", "", _generic(json.loads(path.read_text()), save)]
    notes = docs_dir / "results_notes.md"
    if notes.exists():
        parts += ["", "## Notes", "", notes.read_text().strip()]
    page = "\n".join(parts) + "\n"
    (docs_dir / "results.md").write_text(page)
    return page

