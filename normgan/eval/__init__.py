"""Evaluation of trained runs: scores of every task (evaluation, paired), what each metric means
(metric_info, torch-free), runs compared at equal N (compare) and training-stability diagnostics
(diagnostics). Import the modules; this package imports nothing."""
