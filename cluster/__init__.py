"""cluster: replication of the storage state machine through pysyncobj (Raft).

Public names: RaftConfig, ReplicatedNode, EventBus, Subscription, ClusterEvent.
"""

from cluster.config import RaftConfig
from cluster.events import ClusterEvent, EventBus, Subscription
from cluster.replicated import ReplicatedNode

__all__ = ["ClusterEvent", "EventBus", "RaftConfig", "ReplicatedNode", "Subscription"]
