"""One module per fault; each `run(models, workdir)` starts its own service and returns a Report."""
