"""A checkpoint from someone else never runs their code: every loader unpickles with
`weights_only=True`, so a pickle that would execute a call on load is refused, even when the
checkpoint's sha256 manifest was shipped to match it."""
import json
import pickle

import pytest
import torch

from robot_rl.checkpoint import MANIFEST, _sha256, latest_good
from robot_rl.run_config import load_config
from robot_rl.train import Trainer, load_policy, resume


class Payload:
    """Unpickling this calls `open(marker, "w")`: the file appears only if the call ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def poison(path, marker) -> None:
    torch.save({"kind": "bc", "steps": Payload(marker)}, path)


def test_policy_and_critic_files_refuse_code(tmp_path):
    from robot_rl.agents.bc import BCAgent
    from robot_rl.agents.offline import load_offline_learner
    from robot_rl.agents.warm_start import warm_start
    marker = tmp_path / "ran"
    bad = tmp_path / "policy.pt"
    poison(bad, marker)
    loaders = [BCAgent.load, load_offline_learner]
    t = Trainer(load_config(None, [f"runs_dir={tmp_path}", "train.video=false", "demos.scripted_episodes=0"]),
                progress=False)
    loaders.append(lambda p: warm_start(t.agent, p))
    for load in loaders:
        with pytest.raises(pickle.UnpicklingError):
            load(bad)
        assert not marker.exists()


def test_a_run_with_a_poisoned_checkpoint_and_matching_manifest_is_refused(tmp_path):
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=victim", "train.video=false",
                             "demos.scripted_episodes=0", "train.total_env_steps=20", "train.warmup_steps=10",
                             "train.eval_every=20", "train.eval_episodes=1", "train.checkpoint_every=20",
                             "train.torch_threads=1"])
    run_dir = tmp_path / "victim"
    Trainer(cfg, progress=False).run()
    ckpt = latest_good(run_dir / "checkpoints")
    marker = tmp_path / "ran"
    poison(ckpt / "agent.pt", marker)
    manifest = json.loads((ckpt / MANIFEST).read_text())  # the attacker ships a matching manifest
    manifest["files"]["agent.pt"] = _sha256(ckpt / "agent.pt")
    (ckpt / MANIFEST).write_text(json.dumps(manifest))
    assert latest_good(run_dir / "checkpoints") == ckpt
    for load in (lambda: load_policy(run_dir), lambda: resume(run_dir, progress=False)):
        with pytest.raises(pickle.UnpicklingError):
            load()
        assert not marker.exists()
