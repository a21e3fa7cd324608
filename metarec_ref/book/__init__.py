"""Helpers for the book's chapters: glue, plots, the article's sketch. Nothing in the library imports them."""

from metarec_ref.book.article_sketch import (
    article_outer_step,
    ArticleMAML,
    DeepCopyPatch,
    max_change,
    parameter_grads,
    ShallowCopyPatch,
    snapshot,
)
from metarec_ref.book.build import (
    book_config,
    notebooks_missing_data,
)
from metarec_ref.book.errors import (
    DEMO_ERRORS,
    show_error,
)
from metarec_ref.book.glue import (
    glue,
    plain_value,
)
from metarec_ref.book.plotting import (
    plot_history,
    plot_metric_vs_inner_steps,
    plot_metric_vs_k,
)

__all__ = [
    "article_outer_step",
    "ArticleMAML",
    "book_config",
    "DeepCopyPatch",
    "DEMO_ERRORS",
    "glue",
    "max_change",
    "notebooks_missing_data",
    "parameter_grads",
    "plain_value",
    "plot_history",
    "plot_metric_vs_inner_steps",
    "plot_metric_vs_k",
    "ShallowCopyPatch",
    "show_error",
    "snapshot",
]
