"""Stage 2, learning: the DB23 tensor API and its sampling, the models and their file, training, AdaBN adaptation,
the LDA baseline, hand-pose prototypes, folds, and the logits every trained model writes."""
