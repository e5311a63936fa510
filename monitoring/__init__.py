"""Monitoring the served model: statistics, skew and drift of the request log, live metrics."""
