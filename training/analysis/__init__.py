"""Helpers of the evaluation-suite scripts (training/eval_suite.py, error_analysis.py,
fairness_analysis.py, fidelity_medline.py, plot_results.py): what the suite runs, paths, JSON.

The analysis itself (error kinds, attribution, groups) is in :mod:`bioprune.error_analysis` and
:mod:`bioprune.fairness`; the timing loop in :mod:`bioprune.timing`.
"""
