"""Trainer: the worked example, tracked and registered in MLflow."""
