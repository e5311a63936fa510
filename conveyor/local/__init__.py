"""A pipeline run on this machine: the runner, its progress lines, its summary and its HTML report."""
