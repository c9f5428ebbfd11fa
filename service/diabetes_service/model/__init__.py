"""Everything about getting a model ready to serve that is not the scoring itself."""
