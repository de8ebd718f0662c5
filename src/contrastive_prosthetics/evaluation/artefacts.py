"""Names of the run's artefacts that the workflow's rules and the package share (no heavy imports: the workflow
reads them while it is parsed)."""

# Tables each evaluate job writes into results/eval/{model}/{fold}/ and aggregate concatenates into results/eval/.
EVALUATION_TABLES = ("subset_accuracy", "subset_exact", "voting", "metrics", "confusion")
# Tables aggregate writes beside the concatenated ones: the run's summaries (summary.py).
SUMMARY_TABLES = ("summary", "subset_summary")
# Tables of the continuous-stream evaluation (rule stream, per network × fold × window; then aggregate_stream).
STREAM_TABLES = ("stream_metrics", "stream_tradeoff", "stream_timing")
# The stream table of zero-shot folds, written by rule stream beside its tables (its header only outside zero-shot
# folds) and concatenated by aggregate_stream: the unseen, seen and all gestures' stream metrics beside the oracle's.
ZERO_SHOT_STREAM_TABLES = ("zero_shot_stream",)
# The stream metrics over users and the rest promise user by user (rule stream_summary, stream_summary.py).
STREAM_SUMMARY_TABLES = ("stream_summary",)
# Tables of zero-shot folds (rule zero_shot, per model × zero-shot fold × window; then aggregate_zero_shot).
ZERO_SHOT_TABLES = ("zero_shot", "zero_shot_subsets", "zero_shot_confusion")
# The decoded pose against the glove (rule pose_decoding, per pose-decoding model × fold × window; then
# aggregate_pose_decoding).
POSE_DECODING_TABLES = ("pose_decoding",)
# Run-level tables that stay files beside the report instead of being embedded in it: one row per random subset
# or per confusion cell, tens of MB at full scale. subset_summary, metrics and the figures summarise them.
FULL_TABLES = ("subset_accuracy", "confusion")
# Figures written into results/figures/ as <name>.svg and <name>.png, each with workflow/report/<name>.rst.
FIGURES = (
    "subset_size",
    "voting",
    "confusion",
    "per_subject",
    "training_curves",
    "search",
    "windows",
    "per_class_recall",
    "stream",
    "stream_tradeoff",
    "zero_shot",
)
# The gesture sets a zero-shot fold is scored on (evaluation/zero_shot.py), in the figure's order.
ZERO_SHOT_SETS = ("unseen", "seen", "all")
