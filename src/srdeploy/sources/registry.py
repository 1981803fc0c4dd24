"""A registry model by name (``--model NAME``): the nine networks srdeploy ships, with their weights."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SrDeployError
from ..models import check_scale, create_model, get_spec
from ..models.weights import resolve_weights, sha256_file
from .base import TorchSource

__all__ = ["RegistrySource"]


class RegistrySource(TorchSource):
    kind = "registry"
    quality_label = "pytorch_fp32"

    def __init__(self, name: str, scale: int | None = None, weights: str | None = None,
                 random_weights: bool = False, seed: int = 0) -> None:
        self.spec = spec = get_spec(name)
        self.name, self.description, self.scale_note = spec.name, spec.description, spec.scale_note
        self.scale = check_scale(spec, scale)
        self.default_size, self.size_multiple, self.min_size = spec.default_size, spec.size_multiple, spec.min_size
        self._weights_path, self._random = weights, random_weights
        self._weights_info = self._resolve_weights(seed)
        torch.manual_seed(seed)
        self.model = create_model(spec.name, self.scale, pretrained=not random_weights, weights=weights)

    def _resolve_weights(self, seed: int) -> dict:
        spec = self.spec
        if self._weights_path and self._random:
            raise SrDeployError("--weights and --random-weights exclude each other")
        if self._weights_path:
            p = Path(self._weights_path).expanduser()
            if not p.is_file():
                raise SrDeployError(f"weights file not found: {p}")
            return {"source": "file", "file": str(p), "sha256": sha256_file(p)}
        if self._random:
            return {"source": "random", "seed": seed}
        if self.scale not in spec.weights:
            raise SrDeployError(
                f"{spec.name} x{self.scale} has no public weights: pass --weights PATH, "
                f"or --random-weights to export a randomly initialised network (for timing only)")
        ws = spec.weights[self.scale]
        resolve_weights(ws)
        if ws.embedded:
            return {"source": "embedded", "file": ws.file, "sha256": ws.sha256, "origin": ws.source,
                    "training": ws.training, "metrics": ws.metrics}
        return {"source": "official", "file": ws.file, "sha256": ws.sha256, "url": ws.url, "origin": ws.source}

    @property
    def weights_info(self) -> dict:
        return self._weights_info

    @property
    def parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def predictor(self, size, overlap):
        """PyTorch on the whole image, as the registry's published figures are measured."""
        from ..benchmark.evaluate import make_predictor

        if self.spec.scales == (1,):
            return None
        return make_predictor(self.spec.name, self.scale, None, self._weights_path, overlap=overlap)[0]

    def original(self, size, overlap):
        """A variant (``variant_of``) is judged against its original's official weights too, when they are
        on this machine (the variant's own weights are embedded: its export never needs them)."""
        from ..benchmark.evaluate import make_predictor

        name = self.spec.variant_of
        if name is None or self.scale not in get_spec(name).weights:
            return None
        try:
            resolve_weights(get_spec(name).weights[self.scale])
        except SrDeployError:
            return None
        return f"{name}_pytorch_fp32", make_predictor(name, self.scale, None, overlap=overlap)[0]

    def describe(self) -> dict:
        return {"kind": self.kind, "model": self.name, "convention": self.convention.to_json(), "added_to_graph": []}
