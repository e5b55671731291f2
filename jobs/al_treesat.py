"""Active learning on treesatai: `ray job submit --working-dir . -- python jobs/al_treesat.py [flags]`.

Also runs as plain `python jobs/al_treesat.py` (embedded local Ray). Flags: `--help`.
Only argument forwarding lives here; the work is `raydal run treesatai`.
"""

import sys

from raydal.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "treesatai", *sys.argv[1:]]))
