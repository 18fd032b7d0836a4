"""`robot-rl bench report` and the generated config reference, on real benchmark JSONs and the
real run-config schema."""
import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

from PIL import Image

from robot_rl import run_config
from robot_rl.config import config_key
from robot_rl.bench import report

ROOT = Path(__file__).resolve().parents[2]


def test_report_tables_hold_the_json_values_and_curves_are_pngs(tmp_path):
    bench, docs = tmp_path / "bench", tmp_path / "docs"
    bench.mkdir()
    for name in ("learn_state.json", "vgps.json", "external.json", "classifier_reward.json",
                 "classifier_reward_seeds_3_4.json"):
        shutil.copy(ROOT / "bench" / name, bench / name)
    (bench / "something_new.json").write_text(json.dumps({"widgets_per_s": 12.5, "nested": {"x": 1}}))
    docs.mkdir()
    (docs / "results_notes.md").write_text("Hand-written history stays.")

    page = report.build(bench, docs)
    assert page == (docs / "results.md").read_text()

    learn = json.loads((bench / "learn_state.json").read_text())
    assert f"median {learn['median_steps_to_90']:.0f}" in page
    assert f"| {learn['critic_updates_per_s']:.0f} ({100 * learn['matmul_ceiling_fraction']:.0f}%) |" in page
    vgps = json.loads((bench / "vgps.json").read_text())
    for p in vgps["per_seed"]:
        assert f"| {p['seed']} | {100 * p['demo_success']:.0f}% | {100 * p['base_success']:.0f}% |" in page
    assert f"**{vgps['median_vgps_gain_points']:.0f} points**" in page
    clf = json.loads((bench / "classifier_reward_seeds_3_4.json").read_text())
    for seed, r in zip(clf["seeds"], clf["per_seed"]):
        assert f"| `classifier_reward_seeds_3_4.json` | {seed} | {r['env_steps']} |" in page
        assert f"{100 * r['final_true_success']:.0f}% |" in page
    assert "| widgets_per_s | 12.5 |" in page  # a benchmark the report does not know is still listed
    assert page.rstrip().endswith("Hand-written history stays.")

    for stem in ("learn_state", "external"):
        assert f"](img/{stem}.png)" in page
        with Image.open(docs / "img" / f"{stem}.png") as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 200


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _leaves(cls, prefix=""):
    for f in dataclasses.fields(cls):
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(value):
            yield from _leaves(type(value), f"{prefix}{config_key(f.name)}.")
        else:
            yield f"{prefix}{config_key(f.name)}", f


def test_config_reference_lists_every_field_with_default_and_help():
    md = _hooks().reference_markdown()
    for key, f in _leaves(run_config.RunConfig):
        row = next((line for line in md.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        if f.default is not dataclasses.MISSING:
            assert f"`{f.default!r}`" in row, key
        if f.metadata.get("help"):
            assert f.metadata["help"].replace("|", "\\|") in row, key
    # Optional sections (env.reward, env.teleop) are documented field by field too
    for f in dataclasses.fields(run_config.RewardConfig):
        assert f"| `env.reward.{f.name}` |" in md
    assert "| `agent.algo` |" in md  # the offline run config's learner section
    assert "| `init.from` |" in md  # a keyword field (`from_`) under the key users write
