"""The front door: the `conveyor` command, local runs and their report, viewers, Kubeflow compile/submit."""
