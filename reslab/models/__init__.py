"""Model zoo. Importing this package registers every model family.

Families (one file each): ``resnet`` (the shared trunk, ``resnet18_cifar``, ``resnet110_sd``),
``drstn`` (seed 000), ``selu_resnet`` (seed 003), ``cbam`` (seed 004), ``pyramidnet``,
``densenet``, ``resattention``, ``wrn`` (survey, seed 002) and ``tv`` (torchvision / timm
wrappers: ResNet-18/50, SKNet-18, ConvNeXt-T, SqueezeNet 1.1, AlexNet, VGG-16, EfficientNet-B7).
"""

from .._env import require_torch

require_torch()  # a clear message on an older torch, before a model fails obscurely

from . import cbam, densenet, drstn, pyramidnet, resattention, resnet, selu_resnet, tv, wrn
from ._pretrained import PretrainedWeightsError, checkpoint_dir, load_weights_state_dict, weights_filename
from ._registry import count_params, create_model, is_model, list_models, model_info, register_model
from .tv import tv_weights

__all__ = [
    "PretrainedWeightsError",
    "cbam",
    "checkpoint_dir",
    "count_params",
    "create_model",
    "densenet",
    "drstn",
    "is_model",
    "list_models",
    "load_weights_state_dict",
    "model_info",
    "pyramidnet",
    "register_model",
    "resattention",
    "resnet",
    "selu_resnet",
    "tv",
    "tv_weights",
    "weights_filename",
    "wrn",
]
