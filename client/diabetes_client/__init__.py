"""Typed Python client for the diabetes scoring service."""
