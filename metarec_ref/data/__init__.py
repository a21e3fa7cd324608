"""Event logs to tasks: schema and validation, encoders, loaders (and user samples of logs larger than
memory), fetching Online Retail, synthetic shops, splits, protocols, tasks and negatives, sessions, task
files, log statistics and profiles.

This face holds what a chapter, a benchmark or a reader uses; the modules hold the rest
(``data.schema``: validation's helpers; ``data.fetch``: the Online Retail cache; ``data.evidence``:
the counts behind a protocol's choice).
"""

from metarec_ref.data.encoders import Encoders
from metarec_ref.data.evidence import EvidenceNeeds
from metarec_ref.data.fetch import fetch_online_retail, find_online_retail
from metarec_ref.data.loaders import load_events, load_online_retail
from metarec_ref.data.log_profile import profile_log
from metarec_ref.data.logstats import (
    activity_summary,
    arrivals,
    events_per_user,
    popularity_curve,
    top_share,
)
from metarec_ref.data.negatives import NegativeSampling
from metarec_ref.data.out_of_core import load_user_sample
from metarec_ref.data.protocols import (
    PROTOCOLS,
    ProtocolSplit,
    choose_protocol,
    protocol_parts,
)
from metarec_ref.data.reading import read_table
from metarec_ref.data.schema import validate_events
from metarec_ref.data.sessions import (
    build_basket_tasks,
    build_next_session_tasks,
)
from metarec_ref.data.splits import (
    ColdStartSplit,
    split_users,
    temporal_cold_start_split,
)
from metarec_ref.data.synthetic import (
    SyntheticConfig,
    generate,
)
from metarec_ref.data.task_files import (
    load_tasks,
    save_tasks,
)
from metarec_ref.data.tasks import (
    Tasks,
    build_item_tasks,
    build_scenario_tasks,
    build_tasks,
    build_user_tasks,
    build_window_tasks,
    ranking_targets,
    to_task_batch,
)
from metarec_ref.data.toy import (
    ToyConfig,
    ToyOracle,
    preference_tasks,
)

__all__ = [
    "PROTOCOLS",
    "ColdStartSplit",
    "Encoders",
    "EvidenceNeeds",
    "NegativeSampling",
    "ProtocolSplit",
    "SyntheticConfig",
    "Tasks",
    "ToyConfig",
    "ToyOracle",
    "activity_summary",
    "arrivals",
    "build_basket_tasks",
    "build_item_tasks",
    "build_next_session_tasks",
    "build_scenario_tasks",
    "build_tasks",
    "build_user_tasks",
    "build_window_tasks",
    "choose_protocol",
    "events_per_user",
    "fetch_online_retail",
    "find_online_retail",
    "generate",
    "load_events",
    "load_online_retail",
    "load_tasks",
    "load_user_sample",
    "popularity_curve",
    "preference_tasks",
    "profile_log",
    "protocol_parts",
    "ranking_targets",
    "read_table",
    "save_tasks",
    "split_users",
    "temporal_cold_start_split",
    "to_task_batch",
    "top_share",
    "validate_events",
]
