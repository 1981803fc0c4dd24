"""srdeploy.train (see the project's issues for its scope)."""
