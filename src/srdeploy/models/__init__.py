"""Model zoo: ``create_model(name, scale=..., pretrained=..., weights=..., form=...)``."""
from .registry import MODELS, ModelSpec, check_scale, create_model, get_spec, init_from_deploy, list_models
from .reparam import RepConv, reparameterize

__all__ = ["MODELS", "ModelSpec", "RepConv", "check_scale", "create_model", "get_spec",
           "init_from_deploy", "list_models", "reparameterize"]
