"""Comparing runs of ``gac-analyze energy`` (and ``observe``): one table, per-site firing rates, energy by role.

Torch-free: it reads the runs' reports (:mod:`gac_analysis.compare.runs`), builds the comparison from
their own numbers (:mod:`gac_analysis.compare.table`) and writes it (:mod:`gac_analysis.compare.write`).
"""

from gac_analysis.compare.runs import Run, read_run, read_runs
from gac_analysis.compare.table import Comparison, build_comparison, energy_by_role, firing_rates_by_site
from gac_analysis.compare.write import render_markdown, write_comparison, write_comparison_files

__all__ = [
    "Comparison",
    "Run",
    "build_comparison",
    "energy_by_role",
    "firing_rates_by_site",
    "read_run",
    "read_runs",
    "render_markdown",
    "write_comparison",
    "write_comparison_files",
]
