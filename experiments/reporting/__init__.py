"""Reading finished runs: the leaderboard (built, shown, at another threshold), charts and figures, the
report and thesis table, the per-pair results and gallery, runs side by side and the benchmark matrix.

What executes a run (the worker's engine, its tasks and the run use cases) is in `experiments.runs`.
"""
