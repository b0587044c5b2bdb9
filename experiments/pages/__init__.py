"""Page views, one module per area (datasets, experiments, runs, training, ...); thin callers of services and selectors."""
