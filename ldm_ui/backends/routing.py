"""Strict model affinity: a job for a model goes to a replica that holds it, whenever one does.

Ray Serve's own router treats the multiplexed model id as a preference: it gives up on the replicas that hold the
model after a short timeout, or at once on a retry, and then picks any replica, which loads the model a second time
(evicting its own: each replica holds one). This router plugs into Serve through its public request-router API
(`RequestRouterConfig(request_router_class=...)`, `ray.serve.request_router.RequestRouter`) and keeps the rule
strict. It runs in the front process, inside the DeploymentHandle the front sends every job through, so it sees
every routing decision as it is made, and does not wait for the controller to learn where models were loaded:

- every replica starts holding the start-up model (a replacement for a dead one too: it loads it before Serve
  counts it as running);
- a job for model X routed to a replica makes that replica the holder of X (its `run` loads X first);
- a job for X goes only to the replicas holding X, waiting for one of them to be free; only when no replica holds X
  does it go to the least loaded replica (Serve's queue-length probes pick it), which then holds X.
"""

from __future__ import annotations

from typing import List, Optional

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica


class ModelAffinityRouter(RequestRouter):
    """Serve's request router for the engine deployment (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._startup_model = ""
        self._holding: dict[ReplicaID, str] = {}  # the model each replica holds, once a job changed it

    def initialize_state(self, startup_model: str = "", **_) -> None:
        """Serve passes RequestRouterConfig.request_router_kwargs: the model every replica loads when it starts."""
        self._startup_model = startup_model

    def holds(self, replica: RunningReplica) -> str:
        return self._holding.get(replica.replica_id, self._startup_model)

    async def choose_replicas(self, candidate_replicas: List[RunningReplica],
                              pending_request: Optional[PendingRequest] = None) -> List[List[RunningReplica]]:
        model = pending_request.metadata.multiplexed_model_id if pending_request is not None else ""
        if model:
            holders = [replica for replica in candidate_replicas if self.holds(replica) == model]
            if holders:
                return [holders]  # only these: when all are busy, Serve retries them (with backoff) until one is free
        return [candidate_replicas]  # nobody holds it (or no model): the least loaded of all

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result) -> None:
        model = pending_request.metadata.multiplexed_model_id
        if model:
            self._holding[replica_id] = model

    def update_replicas(self, replicas: List[RunningReplica]) -> None:
        super().update_replicas(replicas)
        live = {replica.replica_id for replica in replicas}
        self._holding = {replica: model for replica, model in self._holding.items() if replica in live}

    @property
    def max_num_routing_tasks(self) -> int:
        # Serve routes at most 2 x replicas requests at once, in arrival order. With strict affinity the first ones
        # may all wait for one busy holder while another replica, idle, holds the model of a later job: give every
        # waiting job its own routing task (up to Serve's cap), so that later job is routed at once.
        return self.max_num_routing_tasks_cap
