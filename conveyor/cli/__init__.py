"""The `conveyor` command: dispatch.py builds the parser and runs a command with one error style;
each other module is one command group (a new command is one new module, listed in dispatch.GROUPS)."""
from conveyor.cli.dispatch import main

__all__ = ["main"]
