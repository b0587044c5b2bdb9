"""Page views split by area; `experiments.views` holds the original pages."""
