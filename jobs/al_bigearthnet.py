"""Active learning on bigearthnet: `ray job submit --working-dir . -- python jobs/al_bigearthnet.py [flags]`.

Also runs as plain `python jobs/al_bigearthnet.py` (embedded local Ray). Flags: `--help`.
Only argument forwarding lives here; the work is `raydal run bigearthnet`.
"""

import sys

from raydal.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "bigearthnet", *sys.argv[1:]]))
