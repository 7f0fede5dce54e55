"""torch.hub entry points: every trained model of the scouter zoo.

    model = torch.hub.load("<owner>/scouter", "scouter_pos_test_resnet_fashion_mnist")
    model = torch.hub.load("path/to/scouter", "<entry>", source="local")

Each entry is ``scouter.create_model(<entry>, pretrained=True, **overrides)``: the trained model
folder (shipped with the repository, weights checked against their SHA-256), with its class names,
its preprocessing (``model.transform``) and ``model.explain(images)``.
"""

from __future__ import annotations

dependencies = ["torch", "timm", "safetensors", "pytorch_lightning", "albumentations"]

from scouter.models.zoo import create_model as _create_model  # noqa: E402
from scouter.models.zoo import get_model_entry as _get_model_entry  # noqa: E402
from scouter.models.zoo import list_models as _list_models  # noqa: E402


def _hub_entry(name: str):
    def load(pretrained: bool = True, **overrides):
        return _create_model(name, pretrained=pretrained, **overrides)

    load.__name__ = load.__qualname__ = name
    load.__doc__ = (
        f"{_get_model_entry(name).description}\n\n"
        f"scouter.create_model({name!r}, pretrained=True); the model card is "
        f"scouter/pretrained/{name}/README.md."
    )
    return load


for _name in _list_models(trained=True):
    globals()[_name] = _hub_entry(_name)
