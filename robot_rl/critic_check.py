"""`robot-rl eval RUN --critic`: is the run's critic right about good behaviour?

Runs the run's demo source (our sim task's scripted expert, or the `demos.policy` hook on a
user's env) on held-out seeds and compares the critic's Q of every state-action pair of its
successful episodes with the discounted return that pair actually got (in the critic's reward
units, `agent.reward_scale * r + reward_bias`), grouped by steps before the episode's end. The
returns are of the env's own reward: for a run trained on a learned reward (`env.reward`) they
are what the task paid, not what the model did.

A critic that learned the task values the expert's actions close to their returns; one that
far underrates them near the goal cannot tell succeeding from failing there, however long the
actor trains on it (docs/results_notes.md: the insertion tasks).
"""
from __future__ import annotations

import numpy as np

from robot_rl.agents.conservative import mc_lower_bounds
from robot_rl.policies.base import batch_obs

# steps before the episode's end: (first, last) inclusive
BUCKETS = ((1, 3), (4, 10), (11, 10_000))


def critic_check(agent, cfg, episodes: int = 20, seed: int = 3_000_000) -> dict:
    from robot_rl.demos import scripted_policy
    from robot_rl.envs import make_gym_env
    env = make_gym_env(cfg.env)
    reset_policy, act = scripted_policy(env, cfg.demos.policy, seed=seed)
    a = cfg.agent
    q_all, g_all, before_end = [], [], []
    successes = 0
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            reset_policy()
            qs, rewards, done = [], [], False
            while not done:
                action = env.scale.to_policy(act(obs))
                qs.append(float(agent.q_values(batch_obs(obs, 1), action[None])[0]))
                obs, r, term, trunc, info = env.step(action)
                rewards.append(float(r))
                done = term or trunc
            if not info["is_success"]:
                continue  # the check is about behaviour that worked
            successes += 1
            q_all += qs
            g_all += mc_lower_bounds(rewards, bool(term), a.gamma, a.reward_scale, a.reward_bias,
                                     a.reward_min).tolist()
            before_end += list(range(len(qs), 0, -1))
    finally:
        env.close()
    q, g, k = np.asarray(q_all), np.asarray(g_all), np.asarray(before_end)
    rows = []
    for lo, hi in BUCKETS:
        m = (k >= lo) & (k <= hi)
        if m.any():
            rows.append({"steps_before_end": [lo, hi], "pairs": int(m.sum()),
                         "q_mean": float(q[m].mean()), "return_mean": float(g[m].mean())})
    return {"episodes": episodes, "successful": successes, "gamma": a.gamma, "by_steps_before_end": rows,
            "correlation": float(np.corrcoef(q, g)[0, 1]) if len(q) > 2 and q.std() > 0 else None}


def format_report(res: dict) -> str:
    lines = [f"critic vs discounted return along {res['successful']}/{res['episodes']} successful "
             f"demo-policy episodes (gamma {res['gamma']}):",
             "  steps before end   pairs   mean Q   mean return"]
    for r in res["by_steps_before_end"]:
        lo, hi = r["steps_before_end"]
        span = f"{lo}-{hi}" if hi < 10_000 else f">= {lo}"
        lines.append(f"  {span:>16}  {r['pairs']:6d}  {r['q_mean']:7.3f}  {r['return_mean']:12.3f}")
    if res["correlation"] is not None:
        lines.append(f"  correlation of Q with the return: {res['correlation']:.2f}")
    return "\n".join(lines)
