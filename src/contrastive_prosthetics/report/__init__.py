"""Stage 4, report: the plotting style and every figure of the run."""
