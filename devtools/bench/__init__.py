"""Benchmarks of the delivery-status pipeline (issue 8): `make bench` / `python -m devtools.bench`.

Every scenario runs in a scratch database of its own, times the pipeline and its baseline side by side
in the same run (alternating which goes first), and reports medians and their ratio. See
`python -m devtools.bench --help`.
"""
