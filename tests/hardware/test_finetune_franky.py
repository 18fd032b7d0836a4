"""The fine-tuning walk-through of docs/finetuning.md against franky-sim (a real Franka-protocol
server): demos recorded through the real driver and `SafeArm`, a Cal-QL offline run on them,
then the PickCube fine-tune config pointed at `robot_rl/FrankaPegInsert-v0`."""
import json
from pathlib import Path

import pytest
import torch

CONFIG = Path(__file__).resolve().parents[2] / "config"
# the Franka env of config/franka_peg_insert.yaml, as overrides of the PickCube fine-tune config
RESET_Q = "[0.0, -0.1113, 0.0, -2.2754, 0.0, 2.1655, 0.7853]"

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.slow
def test_offline_pretrain_then_online_finetune_on_franky_sim(franky_sim, tmp_path):
    from robot_rl import config as cfgmod
    from robot_rl.agents.offline import load_offline_learner
    from robot_rl.demos import collect_scripted_demos
    from robot_rl.offline import run_offline
    from robot_rl.run_config import EnvConfig, OfflineRunConfig, load_config
    from robot_rl.train import Trainer
    env = EnvConfig(id="robot_rl/FrankaPegInsert-v0",
                    kwargs={"host": franky_sim.host, "task": {"reset_q": json.loads(RESET_Q)}})
    data = tmp_path / "peg_mixed"
    print(collect_scripted_demos(env, 6, str(data), seed=0, noise=0.3, fail_prob=0.3,
                                 policy="robot_rl.hardware.franka_env:ScriptedInsertion"))
    run_offline(cfgmod.load(OfflineRunConfig, str(CONFIG / "offline_pick_cube.yaml"),
                            [f"data.dataset={data}", f"runs_dir={tmp_path}", "name=offline_peg",
                             "agent.steps=100"]), progress=False)
    offline = load_offline_learner(tmp_path / "offline_peg" / "critic.pt")

    cfg = load_config(str(CONFIG / "finetune_pick_cube.yaml"), [
        "env.id=robot_rl/FrankaPegInsert-v0", f"env.kwargs.host={franky_sim.host}",
        f"env.kwargs.task.reset_q={RESET_Q}", f"init.from={tmp_path / 'offline_peg'}",
        f"demos.dataset={data}", f"runs_dir={tmp_path}", "name=finetune_peg",
        "train.total_env_steps=120", "train.warmup_steps=40", "train.eval_every=120",
        "train.eval_episodes=1", "train.checkpoint_every=120", "train.video=false",
        "train.torch_threads=1", "agent.compile=false"])
    t = Trainer(cfg, progress=False)
    for mine, theirs in ((t.agent.actor, offline.actor), (t.agent.critic, offline.critic)):
        for (k, a), (_, b) in zip(sorted(mine.state_dict().items()), sorted(theirs.state_dict().items())):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert len(t.demo) > 0                       # the recorded demos are the offline data
    result = t.run()
    assert result["step"] == 120 and t.agent.critic_steps > 0 and result["eval_success"] is not None
    assert (t.run_dir / "checkpoints").exists()
