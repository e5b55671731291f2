"""Active learning on ucmerced: `ray job submit --working-dir . -- python jobs/al_ucmerced.py [flags]`.

Also runs as plain `python jobs/al_ucmerced.py` (embedded local Ray). Flags: `--help`.
Only argument forwarding lives here; the work is `raydal run ucmerced`.
"""

import sys

from raydal.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "ucmerced", *sys.argv[1:]]))
