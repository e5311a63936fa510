"""Kubeflow Pipelines v2 and Vertex AI: compile and submit (compiler), one run per span on a cluster
(cluster_runs), CT against a cluster home (cluster_ct), and executing a compiled spec here
(local_check, spec_harness, warm_start)."""
