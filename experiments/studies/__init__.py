"""One-off studies: each answers one question and writes its committed result files
(``python -m experiments.studies.<study>``; the module docstrings say which files).

Kept apart from the command lines that users run again and again (``experiments.train``,
``table1``, ``algorithms``, ``sweep``, ``search``, ``equal_budget``, the benchmarks).
"""
