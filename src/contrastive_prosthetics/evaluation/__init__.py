"""Stage 3, evaluation: the controller's decisions and votes, subset-size evaluation (sampled and exact), metrics
and summaries, stream evaluation, zero-shot evaluation, and the tables they write."""
