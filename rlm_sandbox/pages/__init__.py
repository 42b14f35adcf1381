"""Self-contained HTML pages of a run: `rlm-sandbox view --html` and `report --html`.

Each page is one file with its own stylesheet, script and data, that opens offline
from disk; see `page.py` for how it stays safe with untrusted content.
"""

from .report import report_page, write_report_page
from .trajectory import trajectory_page, write_trajectory_page

__all__ = ["report_page", "trajectory_page", "write_report_page", "write_trajectory_page"]
