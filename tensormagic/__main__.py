"""python -m tensormagic: the command line (frontends/cli.py)."""
import sys

from .frontends.cli import main

sys.exit(main())
