"""Scoring service: load a registered scikit-learn model once, score it over HTTP."""
