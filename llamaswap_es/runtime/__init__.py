"""runtime package: the process executor, log streams and recovery building blocks.

(The run loop, timers and recovery driver live here too, written by their own modules.)
"""

from llamaswap_es.runtime.executor import ProcessExecutor, ProcessInfo, Tuning
from llamaswap_es.runtime.logs import ProxyLogHandler, UpstreamLogs
from llamaswap_es.runtime.orphans import (
    TaggedProcess,
    find_tagged_processes,
    kill_group,
    probe_health,
    process_matches,
)
from llamaswap_es.runtime.process_spec import ENV_TAG_VAR, ProcessSpec

__all__ = [
    "ENV_TAG_VAR",
    "ProcessExecutor",
    "ProcessInfo",
    "ProcessSpec",
    "ProxyLogHandler",
    "TaggedProcess",
    "Tuning",
    "UpstreamLogs",
    "find_tagged_processes",
    "kill_group",
    "probe_health",
    "process_matches",
]
