"""metarec_ref: the tested meta-learning library behind the metarec book."""

from metarec_ref.batch import FeatureSpec, Features, TaskBatch
from metarec_ref.nb import default_device, glue, resolve_device, seed_everything

__version__ = "0.1.0"

__all__ = [
    "FeatureSpec",
    "Features",
    "TaskBatch",
    "default_device",
    "glue",
    "resolve_device",
    "seed_everything",
]
