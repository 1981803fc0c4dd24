"""srdeploy.benchmark (see the project's issues for its scope)."""
