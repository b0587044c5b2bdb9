"""Executing runs: the use cases (services, selectors, validation), the Celery tasks and the worker's
engine with what it writes (progress, records, result cache and pictures, measurements).

What is read from a finished run (leaderboard, reports, charts, gallery) is in `experiments.reporting`.
"""
