"""The analysis behind the evaluation suite, kept out of the ``bioprune`` package (users never import it).

    common.py          paths, the command line a results file records, atomic JSON
    suite.py           what the evaluation suite runs (rows, ablations, Pareto front)
    frontier.py        the fidelity frontier tables
    error_analysis.py  error kinds and their attribution to pruning (training/error_analysis.py)
    fairness.py        per-group scores: type, length, seen/unseen, abbreviations (training/fairness_analysis.py)
    timing.py          the alternating warm-up timing loop every benchmark uses
"""
