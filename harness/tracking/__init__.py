"""MLflow tracking: the one place that talks to MLflow (see `store`)."""
