"""Checkpoint-based evaluation: the papers' closed-set and open-set tables, and the embedding
studies, from restored models (`psm_jax.inference`). One job per module:

    pairs       the (test image, observer) pairs of a protocol (`EvaluationSet`)
    methods     each table row's predicted PSMs, with a stable id (`Row`, `predict_rows`)
    priors      the per-observer statistics of the baselines without learning
    report      scores, tables with significance marks and every row against the ground-truth
                USM (paired Wilcoxon, information gain), markdown / JSON, figures, report.md
    embeddings  precision@1 versus m, embedding-versus-preference alignment

Settings (protocols, the USM floor, m) come from `psm_jax.configs.evaluation`.
"""
