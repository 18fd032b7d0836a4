"""`robot-rl reward eval | train-classifier` and `robot-rl gvl filter | relabel`.

Registered on the main parser with `add_cli(subparsers)`; every command prints one JSON object
(and writes it to `--json` if given)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from robot_rl.config import parse_key_values  # noqa: E402  (yaml only)




def _emit(result: dict, json_path: str | None) -> None:
    text = json.dumps(result, indent=2, default=_json_default)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text)
    print(text)


def _json_default(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _client_kwargs(args) -> dict:
    kw = {"timeout": args.timeout, "max_retries": args.retries}
    if args.base_url:
        kw["base_url"] = args.base_url
    if args.model:
        kw["model"] = args.model
    return kw


# ---------------------------------------------------------------------------- commands
def _cmd_reward_eval(args) -> int:
    from robot_rl.rewards.base import evaluate_reward_model, make_reward_model
    kwargs = parse_key_values(args.kwarg)
    if args.kwargs_json:
        kwargs.update(json.loads(args.kwargs_json))
    model = make_reward_model(args.model, **kwargs)
    episodes = list(range(args.episodes)) if args.episodes is not None else None
    res = evaluate_reward_model(model, args.dataset, target_key=args.target_key,
                                align=args.align, episodes=episodes,
                                batch_size=args.batch_size, progress=True)
    _emit({"model": args.model, "kwargs": kwargs, "dataset": args.dataset, **res}, args.json)
    return 0


def _cmd_train_classifier(args) -> int:
    from robot_rl.rewards.classifier import train_classifier_from_dataset
    cams = tuple(c for c in args.cameras.split(",") if c) if args.cameras else None
    kw = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
              target_fpr=args.target_fpr, min_threshold=args.min_threshold,
              calib_fraction=args.calib_fraction, test_fraction=args.test_fraction,
              seed=args.seed, trunk=args.trunk, shift_pad=args.shift_pad)
    if args.pretrained_weights:
        kw["pretrained_weights"] = args.pretrained_weights
    report = train_classifier_from_dataset(args.dataset, args.out, image_keys=cams,
                                           label_key=args.label_key, **kw)
    test = report.get("test") or {}
    print(f"held-out test: accuracy {test.get('accuracy', float('nan')):.3f}, "
          f"FPR {test.get('fpr', float('nan')):.3f}, TPR {test.get('tpr', float('nan')):.3f} "
          f"at threshold {report['threshold']:.3f} -> {args.out}", file=sys.stderr)
    _emit(report, args.json)
    return 0


def _gvl(args):
    from robot_rl.rewards.gvl import GVL
    return GVL(num_frames=args.num_frames, image_format=args.image_format, seed=args.seed,
               **_client_kwargs(args))


def _cmd_gvl_filter(args) -> int:
    from robot_rl.rewards.gvl import filter_dataset
    res = filter_dataset(args.dataset, args.out, _gvl(args), args.min_voc,
                         image_key=args.camera, task=args.task, seed=args.seed, progress=True)
    print(f"kept {len(res['kept'])} of {len(res['episodes'])} episodes (VOC >= {args.min_voc}); "
          f"{len(res['unscored'])} unscored -> {res['out']}", file=sys.stderr)
    _emit(res, args.json)
    return 0


def _cmd_gvl_relabel(args) -> int:
    from robot_rl.rewards.gvl import relabel_dataset
    res = relabel_dataset(args.dataset, args.out, _gvl(args), image_key=args.camera,
                          task=args.task, reward=args.reward, seed=args.seed)
    _emit(res, args.json)
    return 0


# ---------------------------------------------------------------------------- parsers
def _add_vlm_args(p) -> None:
    p.add_argument("--camera", default="front", help="camera whose frames the VLM sees")
    p.add_argument("--task", default=None, help="task description (default: the dataset's)")
    p.add_argument("--num-frames", type=int, default=30, help="frames per episode query")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint (default: $ROBOT_RL_VLM_BASE_URL)")
    p.add_argument("--model", default=None, help="VLM model name (default: $ROBOT_RL_VLM_MODEL)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=2, help="retries on timeouts / 429 / 5xx")
    p.add_argument("--image-format", choices=["png", "jpeg"], default="png")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (episode i uses seed + i)")
    p.add_argument("--json", default=None, help="also write the result here")


def add_cli(subparsers) -> None:
    """Register `reward eval`, `reward train-classifier`, `gvl filter` and `gvl relabel`."""
    r = subparsers.add_parser("reward", help="reward models: evaluate, train a success classifier")
    rs = r.add_subparsers(dest="reward_command", required=True)

    e = rs.add_parser("eval", help="score a reward model against a dataset's ground-truth reward "
                                   "(Pearson, Spearman, EPIC distance)")
    e.add_argument("dataset", help="LeRobotDataset directory")
    e.add_argument("--model", required=True, help="clip | classifier | perceptual | vlm_success")
    e.add_argument("--kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="model option (YAML value), e.g. target_prompts='[a lifted red cube]'")
    e.add_argument("--kwargs-json", default=None, help="model options as one JSON object")
    e.add_argument("--target-key", default="next.reward")
    e.add_argument("--align", choices=["next", "same"], default="next",
                   help="next: the target is a step outcome (reward of the next observation)")
    e.add_argument("--episodes", type=int, default=None, help="only the first N episodes")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--json", default=None)
    e.set_defaults(func=_cmd_reward_eval)

    t = rs.add_parser("train-classifier", help="train a success classifier on labelled frames")
    t.add_argument("dataset", help="LeRobotDataset with label.success (robot-rl collect) or "
                                   "next.success")
    t.add_argument("--out", required=True, help="classifier file to write")
    t.add_argument("--cameras", default=None, help="comma-separated cameras (default: all)")
    t.add_argument("--label-key", default=None)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--target-fpr", type=float, default=0.01)
    t.add_argument("--min-threshold", type=float, default=0.5)
    t.add_argument("--calib-fraction", type=float, default=0.15)
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--trunk", choices=["conv", "pretrained"], default="conv")
    t.add_argument("--pretrained-weights", default=None,
                   help="torchvision weights id or local state_dict (with --trunk pretrained)")
    t.add_argument("--shift-pad", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", default=None)
    t.set_defaults(func=_cmd_train_classifier)

    g = subparsers.add_parser("gvl", help="GVL progress values from a VLM")
    gs = g.add_subparsers(dest="gvl_command", required=True)
    f = gs.add_parser("filter", help="drop demos whose value-order correlation is below --min-voc")
    f.add_argument("dataset")
    f.add_argument("--out", required=True, help="filtered dataset directory (must not exist)")
    f.add_argument("--min-voc", type=float, required=True)
    _add_vlm_args(f)
    f.set_defaults(func=_cmd_gvl_filter)

    rl = gs.add_parser("relabel", help="write a copy with GVL progress as the reward")
    rl.add_argument("dataset")
    rl.add_argument("--out", required=True)
    rl.add_argument("--reward", choices=["progress", "delta"], default="progress")
    _add_vlm_args(rl)
    rl.set_defaults(func=_cmd_gvl_relabel)
