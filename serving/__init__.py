"""Serving the pushed models: REST server, version choice and hot swap, request log."""
