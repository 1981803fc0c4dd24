"""srdeploy.quantize (see the project's issues for its scope)."""
