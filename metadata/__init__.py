"""Reading what happened: the ML Metadata connection, runs, lineage and the model registry.

The only package that walks MLMD events; everything above it asks here.
"""
