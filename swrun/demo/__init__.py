"""Demo projects bundled with swrun as package data.

``swrun.demo.smartwaste`` is the "Smart Waste AI" Alembic project used by the
tutorial, the tests and the benchmarks.
"""
