"""Benchmarks of forkjoin against its peers and the physical floor (``python -m bench``).

See bench/run.py for the method and bench/RESULTS.md for the latest figures.
"""
