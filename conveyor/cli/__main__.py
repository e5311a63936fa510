"""`python -m conveyor.cli`: the same as the installed `conveyor` command."""
import sys

from conveyor.cli import main

sys.exit(main())
