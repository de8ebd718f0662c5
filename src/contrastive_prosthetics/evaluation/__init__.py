"""Stage 3, evaluation: windows and majority votes of test frames, subset-size evaluation (sampled and exact),
metrics and summaries, stream evaluation, zero-shot evaluation, and the tables they write. The decision rule they
score (each frame's most similar allowed class, the vote and its tie rule) lives in :mod:`..learning.decisions`, the
controller's own."""
