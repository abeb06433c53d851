"""Write every report page: `python -m reports [--out-dir data/reports] [--snapshot ID]`.

Prints the path of each page written. A page whose inputs are missing is skipped with one line
saying what to run first, and the exit status is then 2. The command line is
`reports.cli.main_pages` (also the console script `dc-taxi-report`).
"""

from __future__ import annotations

import sys

from reports.cli import main_pages as main

if __name__ == "__main__":
    sys.exit(main())
