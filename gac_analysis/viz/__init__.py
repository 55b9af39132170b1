"""viz: figures and the Markdown report of an energy run folder (``gac-analyze report``).

Importing this package is cheap: matplotlib, seaborn and pandas are imported when a figure is drawn.
"""

from gac_analysis.viz.energy_figures import DPI, FIGURE_FILES, FIGURE_SIZES, RunData, load_run, write_energy_figures
from gac_analysis.viz.report_md import read_observer, render_report_md, write_report_md

__all__ = [
    "DPI",
    "FIGURE_FILES",
    "FIGURE_SIZES",
    "RunData",
    "load_run",
    "read_observer",
    "render_report_md",
    "write_energy_figures",
    "write_report_md",
]
