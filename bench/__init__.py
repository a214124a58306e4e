"""Benchmarks: large data sets (dataset.py) and the measurements each issue asks for (foundation.py …).

Run `make bench` (bench/run_all.py); figures and how they were taken are in docs/benchmarks.md.
"""
