"""srdeploy: lightweight super-resolution networks from PyTorch to phones, with numbers."""
__version__ = "0.1.0"
