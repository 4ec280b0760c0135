"""``python -m sps.launch``: the same as the ``sps-launch`` command."""
import sys

from sps.launch import main

sys.exit(main())
