"""Tests for robot_rl.networks and robot_rl.agents.sac (real torch, small nets)."""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robot_rl.agents.sac import (
    GRASP_CLOSE,
    GRASP_OPEN,
    GRASP_STAY,
    GripperCritic,
    SACAgent,
    SACConfig,
    compute_target_q,
    double_dqn_target,
    grasp_action_to_index,
    grasp_index_to_action,
    subsample_indices,
    temperature_loss,
)
from robot_rl.data.buffer import ReplayBuffer
from robot_rl.networks import (
    ConvEncoder,
    CriticEnsemble,
    PretrainedTrunk,
    TanhGaussianActor,
    hl_gauss_probs,
    random_shift,
)



pytestmark = pytest.mark.usefixtures("single_torch_thread")


SMALL = dict(hidden_dims=(32, 32), num_critics=4, critic_subsample=2, batch_size=32)


def small_cfg(**kw):
    d = dict(SMALL)
    d.update(kw)
    return SACConfig(**d)


def state_batch(rng, B=32, S=3, A=2, terminal_p=0.2):
    return {
        "obs": {"state": rng.standard_normal((B, S)).astype(np.float32)},
        "next_obs": {"state": rng.standard_normal((B, S)).astype(np.float32)},
        "action": rng.uniform(-1, 1, (B, A)).astype(np.float32),
        "reward": rng.standard_normal(B).astype(np.float32),
        "terminated": rng.random(B) < terminal_p,
    }


def image_spec(size=24):
    return {
        "state": ((3,), np.float32),
        "front": ((size, size, 3), np.uint8),
        "wrist": ((size, size, 3), np.uint8),
    }


def image_batch(rng, B=8, size=24, A=3):
    def obs():
        return {
            "state": rng.standard_normal((B, 3)).astype(np.float32),
            "front": rng.integers(0, 256, (B, size, size, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (B, size, size, 3), dtype=np.uint8),
        }

    return {
        "obs": obs(),
        "next_obs": obs(),
        "action": rng.uniform(-1, 1, (B, A)).astype(np.float32),
        "reward": rng.standard_normal(B).astype(np.float32),
        "terminated": rng.random(B) < 0.2,
    }


# ---------------------------------------------------------------------------
# Bellman target / subsampling
# ---------------------------------------------------------------------------


def test_compute_target_q_hand_computed():
    reward = torch.tensor([1.0, 0.5, -1.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[2.0, 3.0, -1.0], [1.5, 4.0, 0.5]])  # 2 subsampled target critics
    next_logp = torch.tensor([-1.0, 2.0, 0.5])
    # min over critics = [1.5, 3.0, -1.0]; gamma = 0.9
    t = compute_target_q(reward, terminated, next_q, 0.9)
    torch.testing.assert_close(t, torch.tensor([1.0 + 0.9 * 1.5, 0.5, -1.0 + 0.9 * -1.0]))
    # with entropy backup (alpha = 0.1): next_v = min_q - 0.1 * logp = [1.6, 2.8, -1.05]
    t = compute_target_q(reward, terminated, next_q, 0.9, next_logp, 0.1, backup_entropy=True)
    torch.testing.assert_close(t, torch.tensor([2.44, 0.5, -1.945]))
    # bool terminal mask works too
    t2 = compute_target_q(reward, terminated.bool(), next_q, 0.9, next_logp, 0.1, backup_entropy=True)
    torch.testing.assert_close(t, t2)


def test_agent_target_matches_manual_subset_min():
    rng = np.random.default_rng(0)
    agent = SACAgent({"state": (3,)}, 2, small_cfg(gamma=0.8, num_critics=5, critic_subsample=3), seed=1)
    batch = state_batch(rng)
    gen_state = agent.generator.get_state()
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        g.set_state(gen_state)
        noise = torch.randn(32, 2, generator=g)  # same draw order as SACAgent.update
        idx = subsample_indices(g, 5, 3)
        s2 = torch.as_tensor(batch["next_obs"]["state"])
        a2, _ = agent.actor.sample(s2, noise)
        all_q = agent.target_critic(s2, a2)  # [5, B]
        expected = torch.as_tensor(batch["reward"]) + 0.8 * (
            1 - torch.as_tensor(batch["terminated"]).float()
        ) * all_q[idx].min(0).values
    m = agent.update(batch)
    assert m["target_q"] == pytest.approx(expected.mean().item(), rel=1e-5, abs=1e-6)
    assert len(set(idx.tolist())) == 3


def test_n_step_target_sums_scaled_rewards_then_bootstraps_with_gamma_to_the_k():
    """`agent.n_step`: a batch from a real buffer's episodes (`get(ids, n_step=3)`) gets the
    target sum_j gamma^j (scale * r_j + bias) over the steps the episode still has, plus
    gamma^k (1 - terminated) min Q' at the k-th next observation."""
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(100, {"state": (3,)}, 2)
    for ep, T in enumerate([6, 2, 5]):
        for t in range(T):
            buf.insert({"state": np.array([ep, t, 0], np.float32)}, rng.uniform(-1, 1, 2),
                       float(rng.standard_normal()), {"state": np.array([ep, t + 1, 0], np.float32)},
                       terminated=t == T - 1 and ep != 1, truncated=t == T - 1 and ep == 1)
    batch = buf.get(buf.valid_ids(), n_step=3)
    agent = SACAgent({"state": (3,)}, 2, small_cfg(gamma=0.8, n_step=3, reward_scale=2.0,
                                                   reward_bias=-0.5), seed=1)
    g = torch.Generator().manual_seed(0)
    g.set_state(agent.generator.get_state())
    with torch.no_grad():
        B = len(batch["steps"])
        noise = torch.randn(B, 2, generator=g)
        idx = subsample_indices(g, 4, 2)
        s2 = torch.as_tensor(batch["next_obs"]["state"])
        a2, _ = agent.actor.sample(s2, noise)
        boot = agent.target_critic(s2, a2)[idx].min(0).values
    expected = []
    for i in range(B):
        k = int(batch["steps"][i])
        ret = sum(0.8 ** j * (2.0 * float(batch["rewards"][i, j]) - 0.5) for j in range(k))
        expected.append(ret + 0.8 ** k * (1 - float(batch["terminated"][i])) * float(boot[i]))
    assert sorted(set(batch["steps"].tolist())) == [1, 2, 3]
    m = agent.update(batch)
    assert m["target_q"] == pytest.approx(float(np.mean(expected)), rel=1e-5, abs=1e-6)


def test_subsample_indices_without_replacement_uniform():
    g = torch.Generator().manual_seed(0)
    counts = np.zeros(10)
    draws = 5000
    for _ in range(draws):
        idx = subsample_indices(g, 10, 2).tolist()
        assert len(idx) == 2 and len(set(idx)) == 2
        assert all(0 <= i < 10 for i in idx)
        counts[idx] += 1
    expected = draws * 2 / 10
    assert counts.min() > 0
    assert np.all(np.abs(counts - expected) < 0.1 * expected), counts
    assert subsample_indices(g, 10, None).tolist() == list(range(10))
    idx = subsample_indices(g, 7, 7).tolist()
    assert sorted(idx) == list(range(7))


def test_critic_ensemble_is_batched_and_matches_per_member():
    torch.manual_seed(0)
    ens = CriticEnsemble(5, 2, num_critics=3, hidden_dims=(16, 8))
    x, a = torch.randn(4, 5), torch.randn(4, 2)
    q = ens(x, a)
    assert q.shape == (3, 4)
    F = torch.nn.functional
    for n in range(3):
        h = torch.cat([x, a], -1)
        for layer, norm in zip(ens.layers, ens.norms):
            h = h @ layer.weight[n] + layer.bias[n, 0]
            h = F.layer_norm(h, (h.shape[-1],), norm.weight[n, 0], norm.bias[n, 0])
            h = torch.relu(h)
        qn = (h @ ens.out.weight[n] + ens.out.bias[n, 0]).squeeze(-1)
        torch.testing.assert_close(q[n], qn)
    idx = torch.tensor([2, 0])
    torch.testing.assert_close(ens(x, a, idx), q[idx])
    # every parameter is a single stacked tensor with the ensemble dim first
    assert all(p.shape[0] == 3 for p in ens.parameters())


def test_tanh_gaussian_log_prob_correction():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 1, hidden_dims=(8,))
    feat = torch.randn(1, 3)
    mean, log_std = actor(feat)
    noise = torch.randn(20000, 1)
    a, logp = actor.squash_and_log_prob(mean.expand(20000, 1), log_std.expand(20000, 1), noise)
    assert a.abs().max() < 1
    # change of variables: p_a(a) = N(u) / (1 - tanh(u)^2)
    u = torch.atanh(a.clamp(-0.999999, 0.999999))
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1) - torch.log1p(-a.pow(2) + 1e-12).sum(-1)
    torch.testing.assert_close(logp, ref, atol=2e-3, rtol=1e-3)


# ---------------------------------------------------------------------------
# schedule / temperature
# ---------------------------------------------------------------------------


def test_update_many_counts():
    rng = np.random.default_rng(0)
    agent = SACAgent({"state": (3,)}, 2, small_cfg(utd_ratio=4))
    sample = lambda n: state_batch(rng, B=32 * n)  # noqa: E731  n stacked minibatches
    m = agent.update_many(sample)
    assert (agent.critic_steps, agent.actor_steps) == (4, 1)
    assert m["critic_steps"] == 4 and m["actor_steps"] == 1
    agent.update_many(sample, 10)
    assert (agent.critic_steps, agent.actor_steps) == (14, 3)  # actor at critic steps 4, 8, 12
    # optimizers really stepped that many times
    assert int(agent.critic_opt.state_dict()["state"][0]["step"]) == 14
    assert int(agent.actor_opt.state_dict()["state"][0]["step"]) == 3
    assert int(agent.temp_opt.state_dict()["state"][0]["step"]) == 3

    agent = SACAgent({"state": (3,)}, 2, small_cfg(utd_ratio=8, actor_update_every=2))
    agent.update_many(sample, 8)
    assert (agent.critic_steps, agent.actor_steps) == (8, 4)


def test_temperature_loss_direction():
    log_alpha = torch.zeros((), requires_grad=True)
    high_entropy_logp = torch.full((16,), -2.0)  # entropy 2 > target -1
    temperature_loss(log_alpha, high_entropy_logp, target_entropy=-1.0).backward()
    assert log_alpha.grad > 0  # gradient descent lowers alpha
    log_alpha.grad = None
    temperature_loss(log_alpha, torch.full((16,), 3.0), target_entropy=-1.0).backward()
    assert log_alpha.grad < 0


@pytest.mark.parametrize("target_entropy,direction", [(-8.0, -1), (3.0, +1)])
def test_temperature_moves_toward_target_entropy(target_entropy, direction):
    # actor frozen (lr 0): a fixed tanh-Gaussian policy has entropy in (-inf, log 2] for A=1,
    # i.e. far above -8 (alpha must fall) and below 3 (alpha must rise).
    rng = np.random.default_rng(0)
    cfg = small_cfg(actor_lr=0.0, temp_lr=1e-2, target_entropy=target_entropy, utd_ratio=1, init_temperature=0.1)
    agent = SACAgent({"state": (3,)}, 1, cfg)
    alphas = [agent.alpha]
    for _ in range(30):
        agent.update(state_batch(rng, A=1))
        alphas.append(agent.alpha)
    diffs = np.diff(alphas) * direction
    assert np.all(diffs > 0)
    assert (alphas[-1] - alphas[0]) * direction > 0.02


# ---------------------------------------------------------------------------
# learning
# ---------------------------------------------------------------------------


def test_sac_learns_1d_bandit():
    """reward = -|a - 0.5|, one-step episodes: actor mean should converge near 0.5."""
    rng = np.random.default_rng(0)
    spec = {"state": (1,)}
    buf = ReplayBuffer(2000, spec, 1)
    o = {"state": np.zeros(1, np.float32)}
    for _ in range(500):  # uniform random prior data
        a = rng.uniform(-1, 1, 1).astype(np.float32)
        buf.insert(o, a, -abs(float(a[0]) - 0.5), o, terminated=True)
    cfg = SACConfig(hidden_dims=(64, 64), num_critics=4, critic_subsample=2, utd_ratio=2, init_temperature=0.05)
    agent = SACAgent(spec, 1, cfg, seed=0)
    sample = buf.sample_fn(128, rng)
    for step in range(300):
        a = agent.act(o)  # online data from the current policy
        assert a.shape == (1,) and -1 <= a[0] <= 1
        buf.insert(o, a, -abs(float(a[0]) - 0.5), o, terminated=True)
        agent.update_many(sample)
    a_det = agent.act(o, deterministic=True)
    assert abs(a_det[0] - 0.5) < 0.1, a_det


def test_q_filtered_bc_copies_only_the_batch_actions_the_critic_rates_above_the_policy():
    """`agent.bc_weight`: the actor loss adds bc_weight x the mean, over the batch, of the
    squared distance from the actor's mean action to each batch action whose mean-ensemble Q
    beats the policy's sampled action (Nair et al. 2018's Q-filter). The critics are first
    fit to Q(a) = 1 - |a - 0.6|, so with the policy near 0 an action at 0.6 is better and one
    at -0.9 worse."""
    spec, s = {"state": (1,)}, torch.zeros(64, 1)
    agent = SACAgent(spec, 1, small_cfg(bc_weight=2.0, init_temperature=1e-4), seed=0)
    opt = torch.optim.Adam(agent.critic.parameters(), lr=3e-3)
    for _ in range(300):  # regression of every critic onto the known Q
        a = torch.rand(64, 1) * 2 - 1
        loss, _ = agent.critic.td_loss(agent.encoder({"state": s}), a, 1 - (a[:, 0] - 0.6).abs())
        opt.zero_grad()
        loss.backward()
        opt.step()
    feat = agent.encoder({"state": s}).detach()
    noise = torch.zeros(64, 1)
    alpha = torch.tensor(1e-4)
    good, bad = torch.full((64, 1), 0.6), torch.full((64, 1), -0.9)
    base = agent._actor_loss(feat, noise, alpha)[0]
    mean_action = agent.actor.deterministic(feat).detach()
    assert float(mean_action.abs().max()) < 0.3  # the policy starts far from 0.6
    with_good = agent._actor_loss(feat, noise, alpha, good)[0]
    expected = 2.0 * float((mean_action - 0.6).pow(2).mean())
    assert float((with_good - base).detach()) == pytest.approx(expected, rel=1e-4)
    with_bad = agent._actor_loss(feat, noise, alpha, bad)[0]
    assert float(with_bad.detach()) == pytest.approx(float(base.detach()))  # filtered out


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------


def _reference_shift(x, dy, dx, pad):
    p = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    H, W = x.shape[:2]
    return p[pad + dy : pad + dy + H, pad + dx : pad + dx + W]


def test_drq_random_shift_shifts_within_pad():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 20, 20, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(0)
    out = random_shift(torch.from_numpy(x), pad=4, generator=g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    out = out.numpy()
    found = []
    for b in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if np.array_equal(out[b], _reference_shift(x[b], dy, dx, 4))
        ]
        assert len(matches) == 1, f"sample {b} is not a replicate-padded shift within pad"
        found.append(matches[0])
    assert sum(s != (0, 0) for s in found) >= 12  # it really shifts (P(0,0) = 1/81)
    assert len(set(found)) > 5
    # explicit shifts follow the documented convention
    sh = torch.tensor([[0, 8], [4, 4]])
    out2 = random_shift(torch.from_numpy(x[:2]), 4, shifts=sh).numpy()
    np.testing.assert_array_equal(out2[0], _reference_shift(x[0], -4, 4, 4))
    np.testing.assert_array_equal(out2[1], x[1])
    # pad 0 disables
    assert random_shift(torch.from_numpy(x), 0) is not None


def test_conv_encoder_pooling_variants():
    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    for pooling in ("flatten", "spatial_softmax", "avg"):
        enc = ConvEncoder((32, 32, 3), filters=(8, 8), strides=(2, 1), pooling=pooling, feature_dim=16)
        f = enc(x)
        assert f.shape == (2, 16) and f.abs().max() <= 1.0
        f.sum().backward()
        assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_fourier_features_resolve_what_a_plain_critic_blurs():
    """`agent.fourier_features`: the encoder appends sin/cos(2 pi x B) of the normalized vector
    inputs, with the same B in every agent (checkpoints, target copies), and a critic fed them
    fits a 5 mm-wide step of value (inputs normalized by a 5 cm std, the insertion's scale)
    that the same critic without them blurs, at the same number of gradient steps."""
    spec = {"state": ((3,), np.float32)}
    cfg = dict(hidden_dims=(64, 64), num_critics=1, critic_subsample=None)
    a, b = (SACAgent(spec, 1, small_cfg(fourier_features=32, **cfg), seed=s) for s in (1, 2))
    torch.testing.assert_close(a.encoder.fourier, b.encoder.fourier)
    a.set_obs_normalization({"state": np.random.default_rng(0).normal(0.5, 0.05, (1000, 3))})
    x = torch.tensor([[0.52, 0.5, 0.45]])
    z = (x - a.encoder.mean_state) / a.encoder.std_state
    angle = 2 * math.pi * z @ a.encoder.fourier
    torch.testing.assert_close(a.encoder({"state": x}), torch.cat([z, angle.sin(), angle.cos()], -1),
                               rtol=1e-4, atol=1e-4)

    rng = np.random.default_rng(0)
    pos = rng.uniform(0.4, 0.6, (2048, 3)).astype(np.float32)
    value = torch.as_tensor((np.abs(pos[:, 0] - 0.5) < 0.0025 * 2).astype(np.float32))  # 5 mm wide
    errors = {}
    for ff in (0, 64):
        torch.manual_seed(0)
        agent = SACAgent(spec, 1, small_cfg(fourier_features=ff, fourier_scale=3.0, **cfg), seed=0)
        agent.set_obs_normalization({"state": rng.normal(0.5, 0.05, (1000, 3))})
        params = [*agent.encoder.parameters(), *agent.critic.parameters()]
        opt = torch.optim.Adam(params, lr=1e-3)
        obs, act = {"state": torch.as_tensor(pos)}, torch.zeros(len(pos), 1)
        for _ in range(600):
            loss = (agent.critic(agent.encoder(obs), act)[0] - value).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errors[ff] = loss.item()
    assert errors[64] < 0.5 * errors[0], errors  # measured: 7e-5 against 1.4e-3


def test_hl_gauss_target_distribution():
    """`hl_gauss_probs`: a Normal(target, 0.75 bin widths) integrated over each bin, so the
    bins' mean is the target wherever the Gaussian fits in the range, and a target outside the
    range is clipped to the outer bin edge, its mean then within half a bin of the range's end."""
    ens = CriticEnsemble(4, 1, num_critics=1, hidden_dims=(8,), value_bins=51, value_range=(-1.0, 2.0))
    centers, edges = ens.bin_centers, ens.bin_edges
    assert centers[0] == -1.0 and centers[-1] == 2.0 and len(edges) == 52
    assert ens.sigma == pytest.approx(0.75 * 3.0 / 50)
    target = torch.tensor([-0.5, 0.0, 0.37, 1.5, 7.0, -9.0])
    p = hl_gauss_probs(target, edges, ens.sigma)
    assert p.shape == (6, 51) and (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(6))
    mean = p @ centers
    torch.testing.assert_close(mean[:4], target[:4], rtol=0, atol=1e-4)
    # beyond the range: the target is clipped to the outer bin edge (half a bin past the end)
    torch.testing.assert_close(p[4:], hl_gauss_probs(edges[[-1, 0]], edges, ens.sigma))
    assert (mean[4:] - torch.tensor([2.0, -1.0])).abs().max() < 0.03  # measured: 0.011


def test_hl_gauss_critic_learns_values_and_the_agent_trains_with_it():
    """`agent.value_bins`: each critic outputs logits over value_bins values and its Q is
    their softmax mean. Fit by `td_loss` (cross-entropy to the HL-Gauss target) to noisy 0/1
    returns whose mean is a known function of the input, the Q it reports converges to that
    mean (what a sparse success reward's value is); a regression critic's `td_loss` is the
    squared error. The whole agent updates with it and keeps its values in the range."""
    torch.manual_seed(0)
    ens = CriticEnsemble(1, 1, num_critics=2, hidden_dims=(64, 64), value_bins=21, value_range=(0.0, 1.0))
    x = torch.rand(4096, 1) * 2 - 1
    p_success = 0.1 + 0.8 * (x[:, 0] > 0.2).float()  # the value the critic must learn
    act = torch.zeros(4096, 1)
    opt = torch.optim.Adam(ens.parameters(), lr=3e-3)
    for _ in range(400):
        y = torch.bernoulli(p_success)  # a fresh noisy 0/1 return each step
        loss, q = ens.td_loss(x, act, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert q.shape == (2, 4096)
    with torch.no_grad():
        err = (ens(x, act) - p_success).abs()
    far = (x[:, 0] - 0.2).abs() > 0.1  # away from the step
    assert err[:, far].mean() < 0.05, err[:, far].mean()

    reg = CriticEnsemble(1, 1, num_critics=2, hidden_dims=(8,))
    target = torch.rand(16)
    loss, q = reg.td_loss(x[:16], act[:16], target)
    torch.testing.assert_close(loss, (q - target).pow(2).mean())

    agent = SACAgent({"state": ((3,), np.float32)}, 2, small_cfg(value_bins=11, value_range=(0.0, 1.0)))
    assert agent.critic.out.out_dim == 11
    rng = np.random.default_rng(0)
    for i in range(4):
        m = agent.update(state_batch(rng))
        assert np.isfinite(m["critic_loss"]) and 0.0 <= m["q"] <= 1.0
    with pytest.raises(ValueError, match="value_bins >= 2"):
        SACAgent({"state": ((3,), np.float32)}, 2, small_cfg(value_bins=1))


def test_residual_critic_blocks_compute_the_bro_block():
    """`agent.critic_residual_blocks`: after the hidden layers, x + LN(W2 act(LN(W1 x))) per
    member, with every member's own weights (checked against the formula, member by member)."""
    torch.manual_seed(0)
    ens = CriticEnsemble(5, 2, num_critics=3, hidden_dims=(16,), residual_blocks=2)
    for p in ens.parameters():  # move LayerNorm affines off their (1, 0) init
        p.data.add_(0.1 * torch.randn_like(p))
    f, a = torch.randn(7, 5), torch.randn(7, 2)

    def ln(x, norm, m):
        return F.layer_norm(x, (x.shape[-1],)) * norm.weight[m] + norm.bias[m]

    def lin(x, layer, m):
        return x @ layer.weight[m] + layer.bias[m]

    for m in range(3):
        x = torch.relu(ln(lin(torch.cat([f, a], -1), ens.layers[0], m), ens.norms[0], m))
        for l1, n1, l2, n2 in ens.blocks:
            x = x + ln(lin(torch.relu(ln(lin(x, l1, m), n1, m)), l2, m), n2, m)
        torch.testing.assert_close(ens(f, a)[m], lin(x, ens.out, m).squeeze(-1))
    torch.testing.assert_close(ens(f, a, idx=torch.tensor([2, 0])), ens(f, a)[[2, 0]])


def test_image_agent_forward_backward_and_encoder_gets_critic_grads_only():
    rng = np.random.default_rng(0)
    cfg = small_cfg(conv_filters=(8, 8), conv_strides=(2, 2), image_feature_dim=16, utd_ratio=1)
    agent = SACAgent(image_spec(), 3, cfg)
    batch = image_batch(rng)
    enc0 = [p.detach().clone() for p in agent.encoder.parameters()]
    m = agent.update(batch)
    assert np.isfinite(m["critic_loss"]) and np.isfinite(m["actor_loss"])
    assert all(not torch.equal(a, b) for a, b in zip(enc0, agent.encoder.parameters()))  # critic trains encoder
    # actor loss never reaches the encoder (detached features) nor the critic weights
    for p in list(agent.encoder.parameters()) + list(agent.critic.parameters()) + list(agent.actor.parameters()):
        p.grad = None
    agent.actor_loss(batch).backward()
    assert all(p.grad is None for p in agent.encoder.parameters())
    assert all(p.grad is None for p in agent.critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    obs = {k: v[0] for k, v in batch["obs"].items()}
    a = agent.act(obs)
    assert a.shape == (3,) and np.all(np.abs(a) <= 1)
    assert np.allclose(agent.act(obs, deterministic=True), agent.act(obs, deterministic=True))


def test_pretrained_trunk_and_cached_features(tmp_path):
    trunk = PretrainedTrunk("resnet18", weights=None)
    assert trunk.out_dim == 512 and not any(p.requires_grad for p in trunk.parameters())
    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    f = trunk(x)
    assert f.shape == (2, 512)
    # local state_dict file path is loaded through the same code path
    path = tmp_path / "r18.pt"
    torch.save(trunk.model.state_dict(), path)
    trunk2 = PretrainedTrunk("resnet18", weights=str(path))
    torch.testing.assert_close(trunk2(x), f)
    torch.testing.assert_close(PretrainedTrunk(str(path))(x), f)

    rng = np.random.default_rng(0)
    spec = image_spec(32)
    cfg = small_cfg(image_encoder="pretrained", image_feature_dim=16, utd_ratio=1)
    agent = SACAgent(spec, 3, cfg)
    buf = ReplayBuffer(20, spec, 3, obs_transforms=agent.replay_transforms())
    assert buf.storage_spec["front"] == ((512,), np.dtype(np.float16))
    b = image_batch(rng, B=6, size=32)
    for i in range(6):
        buf.insert({k: v[i] for k, v in b["obs"].items()}, b["action"][i], 0.0,
                   {k: v[i] for k, v in b["next_obs"].items()}, terminated=True)
    cached = buf.get(buf.valid_ids())["obs"]["front"][0].astype(np.float32)
    ref = agent.trunk(torch.from_numpy(b["obs"]["front"][:1]))[0].numpy()
    np.testing.assert_allclose(cached, ref, rtol=1e-2, atol=1e-2)
    m = agent.update(buf.sample(8, rng))
    assert np.isfinite(m["critic_loss"])
    assert agent.act({k: v[0] for k, v in b["obs"].items()}).shape == (3,)  # raw images at act time


# ---------------------------------------------------------------------------
# grasp critic
# ---------------------------------------------------------------------------


def test_double_dqn_target_hand_computed():
    reward = torch.tensor([1.0, 0.0, 2.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    q_online = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, 1.0], [0.0, 0.0, 9.0]])  # argmax: 1, 0, 2
    q_target = torch.tensor([[10.0, 20.0, 30.0], [7.0, 8.0, 9.0], [1.0, 2.0, -3.0]])
    penalty = torch.tensor([-0.02, 0.0, -0.02])
    t = double_dqn_target(reward, terminated, q_online, q_target, 0.9, penalty)
    # [1 - 0.02 + 0.9*20, 0 (terminal), 2 - 0.02 + 0.9*(-3)]  (target value at the ONLINE argmax)
    torch.testing.assert_close(t, torch.tensor([18.98, 0.0, -0.72]))


def test_grasp_index_mapping():
    a = torch.tensor([-1.0, -0.7, -0.2, 0.0, 0.4, 0.6, 1.0, 3.0])
    np.testing.assert_array_equal(grasp_action_to_index(a).numpy(), [0, 0, 1, 1, 1, 2, 2, 2])
    assert (GRASP_CLOSE, GRASP_STAY, GRASP_OPEN) == (0, 1, 2)
    np.testing.assert_array_equal(grasp_index_to_action(np.array([0, 1, 2])), [-1.0, 0.0, 1.0])
    assert GripperCritic(4, (8,))(torch.randn(5, 4)).shape == (5, 3)


def test_grasp_critic_agent_learns_gripper_command():
    """Arm dims continuous, gripper from argmax of the grasp critic; reward favours 'close'."""
    rng = np.random.default_rng(0)
    spec = {"state": (2,)}
    cfg = small_cfg(grasp_critic=True, utd_ratio=1, hidden_dims=(32, 32))
    agent = SACAgent(spec, 3, cfg)
    assert agent.arm_dim == 2 and agent.actor.action_dim == 2 and agent.target_entropy == -1.0
    B = 64

    def sample(n):  # n stacked minibatches of B
        g = rng.integers(-1, 2, n * B).astype(np.float32)
        arm = rng.uniform(-1, 1, (n * B, 2)).astype(np.float32)
        return {
            "obs": {"state": np.zeros((n * B, 2), np.float32)},
            "next_obs": {"state": np.zeros((n * B, 2), np.float32)},
            "action": np.concatenate([arm, g[:, None]], 1),
            "reward": (g == -1).astype(np.float32),
            "terminated": np.ones(n * B, bool),
        }

    m = agent.update_many(sample, 150)
    assert "grasp_loss" in m and np.isfinite(m["grasp_loss"])
    a = agent.act({"state": np.zeros(2, np.float32)}, deterministic=True)
    assert a.shape == (3,) and a[-1] == -1.0
    with torch.no_grad():
        q = agent.grasp(torch.zeros(1, 2))[0]
    # Q(close) ~ 1 - 0.02, Q(stay) ~ 0, Q(open) ~ -0.02
    assert q[GRASP_CLOSE] > 0.8 and abs(q[GRASP_STAY]) < 0.2 and q[GRASP_OPEN] < q[GRASP_STAY] + 0.1


# ---------------------------------------------------------------------------
# checkpointing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("images", [False, True])
def test_state_dict_roundtrip_identical_continuation(images):
    rng = np.random.default_rng(0)
    if images:
        spec, A = image_spec(16), 3
        cfg = small_cfg(conv_filters=(4,), conv_strides=(2,), image_feature_dim=8, utd_ratio=2, grasp_critic=True)
        batches = [image_batch(rng, B=8, size=16) for _ in range(6)]
    else:
        spec, A = {"state": (3,)}, 2
        cfg = small_cfg(utd_ratio=2, backup_entropy=True)
        batches = [state_batch(rng) for _ in range(6)]
    a = SACAgent(spec, A, cfg, seed=0)
    for b in batches[:3]:
        a.update(b)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b_agent = SACAgent(spec, A, cfg, seed=123)  # different init + RNG, fully overwritten by the load
    b_agent.load_state_dict(torch.load(buf, weights_only=True))
    assert (b_agent.critic_steps, b_agent.actor_steps) == (a.critic_steps, a.actor_steps)
    obs = {k: v[0] for k, v in batches[0]["obs"].items()}
    for bt in batches[3:]:
        ma, mb = a.update(bt), b_agent.update(bt)
        assert ma == mb
        np.testing.assert_array_equal(a.act(obs), b_agent.act(obs))
    for k, m in a._modules().items():
        for (n1, p1), (n2, p2) in zip(m.state_dict().items(), b_agent._modules()[k].state_dict().items()):
            assert n1 == n2 and torch.equal(p1, p2), (k, n1)
    assert a.alpha == b_agent.alpha


def test_config_defaults_and_from_dict():
    c = SACConfig()
    assert c.num_critics == 2 and c.utd_ratio == 4 and c.init_temperature == 0.01 and c.critic_subsample == 2 and c.hidden_dims == (256, 256)
    assert c.gamma == 0.97 and c.tau == 0.005 and c.actor_lr == c.critic_lr == c.temp_lr == 3e-4
    assert c.batch_size == 256 and c.demo_ratio == 0.5 and c.drq_pad == 4 and c.compile is False
    c2 = SACConfig.from_dict({"hidden_dims": [64, 64], "num_critics": 3})
    assert c2.hidden_dims == (64, 64)
    with pytest.raises(ValueError):
        SACConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError):
        SACConfig(num_critics=2, critic_subsample=3)
    agent = SACAgent({"state": (5,)}, 4, SACConfig(hidden_dims=(16,)))
    assert agent.target_entropy == -2.0 and agent.actor_update_every == c.utd_ratio
    # the entropy target scales with the continuous action dims; an explicit one wins
    def entropy_target(**kw):
        return SACAgent({"state": (5,)}, 4, SACConfig(hidden_dims=(16,), **kw)).target_entropy
    assert entropy_target(target_entropy_per_dim=-1.0) == -4.0
    assert entropy_target(target_entropy_per_dim=-1.0, target_entropy=-0.5) == -0.5
    assert math.isclose(agent.alpha, c.init_temperature, rel_tol=1e-6)


def test_act_batch_matches_single_act():
    """One batched forward pass gives each row the action `act` gives that observation alone."""
    import gymnasium as gym
    from robot_rl.agents.sac import SACAgent, SACConfig
    space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (5,), np.float32)})
    agent = SACAgent(space, 4, SACConfig(grasp_critic=True), seed=0)
    obs = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    batch = agent.act_batch({"state": obs}, deterministic=True)
    assert batch.shape == (6, 4)
    for i in range(6):
        np.testing.assert_allclose(agent.act({"state": obs[i]}, deterministic=True), batch[i], atol=1e-6)


# ---------------------------------------------------------------------------
# compiled update
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("value_bins,blocks,bc_weight", [(0, 0, 0.0), (21, 1, 1.0)],
                         ids=["mlp", "hl_gauss_residual_bc"])
def test_compiled_update_matches_eager_and_shares_optimizer_state(value_bins, blocks, bc_weight):
    """`compile=True` runs each update as one torch.compile graph (torch.func gradients, then
    the eager path's own clipping and Adam step, and Polyak). It must give the eager update's numbers, step for
    step, and keep its Adam state in the torch.optim optimizers, so a checkpoint written by a
    compiled agent resumes an eager one exactly. Covers images (conv encoder, target encoder),
    the grasp critic, gradient clipping, critic subsampling, the Q-filtered BC term and both
    graph variants."""
    kw = dict(utd_ratio=2, use_target_encoder=True, conv_filters=(8, 8), conv_strides=(2, 2),
              image_feature_dim=16, grasp_critic=True, grad_clip_norm=0.5, value_bins=value_bins,
              critic_residual_blocks=blocks, bc_weight=bc_weight)
    eager, compiled = (SACAgent(image_spec(), 3, small_cfg(compile=c, **kw), seed=1) for c in (False, True))
    for i in range(4):  # critic-only and critic + actor updates, alternating
        batch = image_batch(np.random.default_rng(i))
        me, mc = eager.update(batch), compiled.update(batch)
        assert set(me) == set(mc)
        for k in me:
            assert mc[k] == pytest.approx(me[k], rel=1e-4, abs=1e-6), k
    assert (compiled.critic_steps, compiled.actor_steps) == (4, 2)

    def params(agent):
        return [p.detach() for m in agent._modules().values() for p in m.parameters()] + [agent.log_alpha.detach()]

    moved = [float((p - q).abs().max()) for p, q in zip(params(eager), params(SACAgent(
        image_spec(), 3, small_cfg(**kw), seed=1)))]
    assert max(moved) > 1e-3  # the updates changed the weights ...
    for p, q in zip(params(eager), params(compiled)):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)  # ... identically on both paths
    for name in ("critic_opt", "actor_opt", "temp_opt"):
        se, sc = getattr(eager, name).state_dict()["state"], getattr(compiled, name).state_dict()["state"]
        assert len(sc) == len(se) > 0
        for k in se:
            assert float(sc[k]["step"]) == float(se[k]["step"])
            torch.testing.assert_close(sc[k]["exp_avg_sq"], se[k]["exp_avg_sq"], rtol=1e-3, atol=1e-9)

    buf = io.BytesIO()
    torch.save(compiled.state_dict(), buf)
    buf.seek(0)
    resumed = SACAgent(image_spec(), 3, small_cfg(**kw), seed=5)  # eager, other init
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    batch = image_batch(np.random.default_rng(9))
    mr, mc = resumed.update(batch), compiled.update(batch)
    for k in mr:
        assert mc[k] == pytest.approx(mr[k], rel=1e-4, abs=1e-6), k
