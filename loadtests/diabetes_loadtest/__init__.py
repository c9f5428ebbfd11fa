"""Locust load tests of the diabetes scoring service.

The modules Locust loads at run time (settings, data, checks, invalid, users, probe, workers,
saturation) need only the standard library and Locust, so that they run unchanged in the stock
Locust image on Kubernetes; `preflight` (the key check `diabetes loadtest` runs first) needs only
the standard library; `slo` (read by `diabetes loadtest`) also needs PyYAML.
"""
