"""cluster: replication of the storage state machine through pysyncobj (Raft).

Public names: RaftConfig, ReplicatedNode, EventBus, Subscription, ClusterEvent, ClusterError,
ClusterCode.
"""

from cluster.config import RaftConfig
from cluster.errors import ClusterCode, ClusterError
from cluster.events import ClusterEvent, EventBus, Subscription
from cluster.replicated import ReplicatedNode

__all__ = [
    "ClusterCode",
    "ClusterError",
    "ClusterEvent",
    "EventBus",
    "RaftConfig",
    "ReplicatedNode",
    "Subscription",
]
