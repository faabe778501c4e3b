"""The pure scheduler: `reduce(state, envelope) -> (state, decisions)` and what it needs.

Imports only `llamaswap_es.events.types`, `llamaswap_es.config.schedule` and pure parts of the
standard library (tests/test_architecture.py enforces it).
"""

from llamaswap_es.core.reducer import REDUCER_VERSION, reduce
from llamaswap_es.core.snapshot import SnapshotError, digest, restore, snapshot
from llamaswap_es.core.state import SchedulerState, new_state
from llamaswap_es.core.views import (
    EMPTY_VIEW,
    ModelView,
    RequestView,
    SchedulerView,
    ViewPublisher,
    is_shutting_down,
    model_view,
    model_views,
    queue_view,
    request_view,
    running_models,
    scheduler_view,
)

__all__ = [
    "EMPTY_VIEW",
    "REDUCER_VERSION",
    "ModelView",
    "RequestView",
    "SchedulerState",
    "SchedulerView",
    "SnapshotError",
    "ViewPublisher",
    "digest",
    "is_shutting_down",
    "model_view",
    "model_views",
    "new_state",
    "queue_view",
    "reduce",
    "request_view",
    "restore",
    "running_models",
    "scheduler_view",
    "snapshot",
]
