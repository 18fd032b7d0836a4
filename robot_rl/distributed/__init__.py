"""Distributed actor/learner runtime on Ray (optional: needs the `ray` extra).

`robot-rl train CONFIG runtime=ray [runtime.actors=N] [runtime.address=HOST:PORT]`:

- `runtime.py`: the driver. Starts a local Ray bound to loopback (or joins a cluster), starts
  the learner as a Ray actor on this node, shows progress, rides out learner restarts.
- `learner.py`: `DistributedTrainer`, the single-process `Trainer` (same replay, agent,
  checkpoints, metrics, evaluation) fed by the actor fleet instead of its own env.
- `fleet.py`: the transport: N env actors with bounded in-flight requests (backpressure),
  policy broadcast through the object store, replacement of dead actors, end-to-end counts.
- `actor.py`: `EnvActor`, one env process acting with a CPU copy of the policy.

Ray is imported lazily inside these modules, never by `import robot_rl`.
"""
