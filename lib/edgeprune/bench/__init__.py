"""Benchmarks that print the project's performance targets (never asserted in timed tests).

``python -m edgeprune.bench NAME`` runs ``edgeprune.bench.NAME.main``.
"""
