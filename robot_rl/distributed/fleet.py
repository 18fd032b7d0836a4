"""The learner's side of the transport: N env actors on Ray, each kept busy with at most
`max_inflight` requested batches (backpressure: an actor only steps when asked, so nothing
piles up when the learner is slow), results taken as they arrive (`ray.wait`), and every
transition counted end to end.

Counting rule. An actor numbers the transitions of its stream 0, 1, 2, ... and counts one as
*sent* when it returns it in a batch (each batch carries the stream's cumulative count). The
learner counts it *received* when it takes the batch and *stored* when it is in the replay
buffer. Results live in Ray's object store, not in the actor, so a batch an actor returned is
received even if the actor dies right after; batches are taken per actor in order and their
sequence numbers must continue exactly where the stream's last batch ended. Hence
sent == received == stored, per stream and in total. The only transitions ever lost are the
ones a dying actor had stepped but not yet returned: the batch in progress, fewer than
`transitions_per_message` (its requested-but-unstarted batches were never stepped at all).

A dead actor (process killed, env raised, or no batch for `actor_timeout_s`) is killed for
good and replaced in the same slot by a new actor on a new stream (new seeds).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from robot_rl.distributed.actor import EnvActor


@dataclass
class Incarnation:
    """One actor process in a slot. A replaced one stays until its last results are taken."""
    slot: int
    stream: int
    handle: Any
    inflight: deque = field(default_factory=deque)  # (ObjectRef, n) in submission order
    alive: bool = True
    delivered: int = 0
    last_progress: float = field(default_factory=time.perf_counter)


class TransportCounts:
    """Per-stream sent / received / stored transitions (checkpointed with the learner)."""

    def __init__(self, state: Optional[dict] = None):
        state = state or {}
        self.streams: dict[int, dict] = {int(k): dict(v) for k, v in state.get("streams", {}).items()}
        self.actor_restarts = state.get("actor_restarts", 0)
        self.lost_requests = state.get("lost_requests", 0)
        self.sequence_errors = state.get("sequence_errors", 0)

    def add_stream(self, stream: int, slot: int) -> None:
        self.streams[stream] = {"slot": slot, "sent": 0, "received": 0, "stored": 0}

    def totals(self) -> dict:
        s = self.streams.values()
        return {"sent": sum(x["sent"] for x in s), "received": sum(x["received"] for x in s),
                "stored": sum(x["stored"] for x in s), "actor_restarts": self.actor_restarts,
                "lost_requests": self.lost_requests, "sequence_errors": self.sequence_errors,
                "num_streams": len(self.streams)}

    def state(self) -> dict:
        return {"streams": {str(k): v for k, v in self.streams.items()},
                "actor_restarts": self.actor_restarts, "lost_requests": self.lost_requests,
                "sequence_errors": self.sequence_errors}


class ActorFleet:
    """`actors` env actors for the learner. `log(kind, **values)` records restarts."""

    def __init__(self, cfg, counts: TransportCounts, next_stream: int = 0,
                 log: Callable[..., None] = lambda kind, **v: None):
        import ray
        self.ray = ray
        self.cfg, self.rt = cfg, cfg.runtime
        self.counts, self.next_stream, self.log = counts, next_stream, log
        self.remote_cls = ray.remote(  # own supervision: a dead actor is replaced, not restarted
            num_cpus=self.rt.actor_cpus, resources=dict(self.rt.actor_resources) or None,
            max_restarts=0, max_task_retries=0,
            concurrency_groups={"stats": 1})(EnvActor)  # stats() answers while collect() runs
        self.slots: list[Incarnation] = []
        self.retired: list[Incarnation] = []  # dead, with results still to take
        self.weights_box: list = []
        self.version = -1
        self.failures_without_data = 0
        self.last_error = ""

    # ---- actors -------------------------------------------------------------------------
    def start(self, timeout_s: Optional[float] = None) -> None:
        """Start the actors and wait until each has built its env (fails fast on a bad
        config instead of restarting forever)."""
        self.slots = [self._spawn(i) for i in range(self.rt.actors)]
        ready = [inc.handle.ready.remote() for inc in self.slots]
        done, pending = self.ray.wait(ready, num_returns=len(ready),
                                      timeout=timeout_s or self.rt.actor_timeout_s)
        if pending:
            raise RuntimeError(
                f"{len(pending)} of {len(ready)} env actors did not start within "
                f"{timeout_s or self.rt.actor_timeout_s:.0f} s; each reserves "
                f"runtime.actor_cpus={self.rt.actor_cpus} CPUs and the cluster has "
                f"{self.ray.cluster_resources().get('CPU', 0):g}")
        for inc, where in zip(self.slots, self.ray.get(ready)):  # raises a construction error
            self.log("actor_start", slot=inc.slot, stream=inc.stream, **where)

    def _spawn(self, slot: int) -> Incarnation:
        stream = self.next_stream
        self.next_stream += 1
        self.counts.add_stream(stream, slot)
        handle = self.remote_cls.remote(self.cfg, stream)
        return Incarnation(slot, stream, handle)

    def _replace(self, inc: Incarnation, reason: str) -> None:
        inc.alive = False
        self.ray.kill(inc.handle, no_restart=True)
        self.retired.append(inc)
        self.counts.actor_restarts += 1
        self.failures_without_data = self.failures_without_data + 1 if inc.delivered == 0 else 0
        if self.counts.actor_restarts > self.rt.max_actor_restarts:
            raise RuntimeError(f"env actors died {self.counts.actor_restarts} times "
                               f"(runtime.max_actor_restarts={self.rt.max_actor_restarts}); "
                               f"last: {reason}")
        if self.failures_without_data >= 3:
            raise RuntimeError(f"env actors failed 3 times in a row before sending a batch; "
                               f"last: {reason}")
        new = self._spawn(inc.slot)
        self.slots[inc.slot] = new
        self.log("actor_restart", slot=inc.slot, dead_stream=inc.stream, new_stream=new.stream,
                 sent_by_dead=self.counts.streams[inc.stream]["sent"], reason=reason[:500])

    def handles(self) -> dict:
        return {inc.stream: inc.handle for inc in self.slots}

    def stats(self, timeout_s: float = 30.0) -> list[dict]:
        """Each live actor's own counters (answered while it is collecting). An actor that
        died since its last batch is reported as such: the run's final log must not be lost
        to it (its replacement would only be spawned by the next request)."""
        refs = [inc.handle.stats.options(concurrency_group="stats").remote() for inc in self.slots]
        out = []
        for inc, ref in zip(self.slots, refs):
            try:
                out.append(self.ray.get(ref, timeout=timeout_s))
            except self.ray.exceptions.RayActorError as exc:
                out.append({"stream": inc.stream, "dead": True, "error": str(exc)[:300]})
        return out

    def shutdown(self, close_timeout_s: float = 10.0) -> None:
        """Close the live actors' envs (a recording wrapper flushes its episode), then end
        every actor process."""
        closing = [inc.handle.close.remote() for inc in self.slots]
        self.ray.wait(closing, num_returns=len(closing), timeout=close_timeout_s)
        for inc in self.slots + self.retired:
            self.ray.kill(inc.handle, no_restart=True)
        self.slots, self.retired = [], []

    # ---- weights ------------------------------------------------------------------------
    def publish(self, policy: dict) -> None:
        """Put the policy in the object store once; every later request points at it and an
        actor fetches it only if newer than what it has."""
        self.version += 1
        self.weights_box = [self.ray.put(policy)]

    # ---- batches ------------------------------------------------------------------------
    def inflight_transitions(self) -> int:
        return sum(n for inc in self.slots + self.retired for _, n in inc.inflight)

    def request(self, limit: int, random_actions: bool, active: Optional[int] = None) -> None:
        """Keep each of the first `active` (default: all) actors at `max_inflight` requested
        batches, never asking for more than `limit` transitions in flight in total."""
        budget = limit - self.inflight_transitions()
        for inc in self.slots[:active]:
            while len(inc.inflight) < self.rt.max_inflight and budget > 0:
                n = min(self.rt.transitions_per_message, budget)
                ref = inc.handle.collect.remote(n, self.weights_box, self.version, random_actions)
                if not inc.inflight:
                    inc.last_progress = time.perf_counter()  # the clock runs from now
                inc.inflight.append((ref, n))
                budget -= n

    def poll(self, timeout: float) -> list[dict]:
        """Batches that arrived (waiting up to `timeout` s for the first one), each actor's in
        the order it sent them. Replaces actors that died or stalled."""
        incs = [inc for inc in self.slots + self.retired if inc.inflight]
        refs = [ref for inc in incs for ref, _ in inc.inflight]
        out: list[dict] = []
        if refs:
            self.ray.wait(refs, num_returns=1, timeout=timeout)
            ready = set(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0])
            for inc in incs:
                while inc.inflight and inc.inflight[0][0] in ready:
                    ref, n = inc.inflight.popleft()
                    try:
                        batch = self.ray.get(ref)
                    except self.ray.exceptions.RayError as exc:  # died, raised, or object lost
                        self.counts.lost_requests += n  # requested, never stepped or never sent
                        self.last_error = str(exc)
                        if inc.alive:
                            self._replace(inc, f"{type(exc).__name__}: {exc}")
                        continue
                    self._receive(inc, batch)
                    out.append(batch)
        elif timeout > 0:
            time.sleep(min(timeout, 0.05))
        now = time.perf_counter()
        for inc in list(self.slots):
            if inc.inflight and now - inc.last_progress > self.rt.actor_timeout_s:
                self._replace(inc, f"no batch for {self.rt.actor_timeout_s:.0f} s")
        self.retired = [inc for inc in self.retired if inc.inflight]
        return out

    def _receive(self, inc: Incarnation, batch: dict) -> None:
        c = self.counts.streams[inc.stream]
        if batch["stream"] != inc.stream or batch["first_seq"] != c["received"] or \
                batch["sent"] != batch["first_seq"] + batch["n"]:
            self.counts.sequence_errors += 1
            self.log("transport_error", stream=inc.stream, expected_seq=c["received"],
                     got_seq=batch["first_seq"])
        c["sent"] = max(c["sent"], batch["sent"])
        c["received"] += batch["n"]
        inc.delivered += 1
        inc.last_progress = time.perf_counter()
        self.failures_without_data = 0

    def count_stored(self, stream: int, n: int = 1) -> None:
        self.counts.streams[stream]["stored"] += n
