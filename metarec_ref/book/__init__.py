"""Helpers for the book's chapters: glue, plots, the article's sketch. Nothing in the library imports them."""

from metarec_ref.book.article_sketch import (
    article_outer_step,
    ArticleMAML,
    ArticleRecommendationModel,
    copy_gradients,
    DeepCopyPatch,
    fit_mse,
    max_change,
    parameter_grads,
    ShallowCopyPatch,
    sketch_meta_gradient,
    snapshot,
)
from metarec_ref.book.build import book_config
from metarec_ref.book.errors import show_error
from metarec_ref.book.figures import draw_maml_loops, draw_meta_gradient_graph, draw_tasks_timeline
from metarec_ref.book.glue import below, glue, glued_values
from metarec_ref.book.metric_figures import plot_attention, plot_prototypes
from metarec_ref.book.plotting import (
    plot_history,
    plot_metric_vs_inner_steps,
    plot_metric_vs_k,
)
from metarec_ref.book.split_figure import plot_temporal_split
from metarec_ref.book.stats_figure import plot_reading_a_comparison, read_comparison
from metarec_ref.book.sparse_figure import plot_row_gather
from metarec_ref.book.when_figure import plot_when_it_helps, real_log_points

__all__ = [
    "article_outer_step",
    "ArticleMAML",
    "ArticleRecommendationModel",
    "copy_gradients",
    "fit_mse",
    "sketch_meta_gradient",
    "below",
    "book_config",
    "DeepCopyPatch",
    "draw_maml_loops",
    "draw_meta_gradient_graph",
    "draw_tasks_timeline",
    "glue",
    "glued_values",
    "max_change",
    "parameter_grads",
    "plot_attention",
    "plot_history",
    "plot_metric_vs_inner_steps",
    "plot_metric_vs_k",
    "plot_prototypes",
    "plot_reading_a_comparison",
    "plot_row_gather",
    "plot_temporal_split",
    "plot_when_it_helps",
    "read_comparison",
    "real_log_points",
    "ShallowCopyPatch",
    "show_error",
    "snapshot",
]
