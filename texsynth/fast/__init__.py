"""The feed-forward path: a network trained once per recipe, then an image in one forward pass.

The optimization path makes hundreds of passes through VGG19 per image; here a
network is trained once against the recipe's own loss graph and then makes a
texture from noise (Ulyanov et al. 2016/2017) in milliseconds, with
conditional instance normalization (Dumoulin et al. 2017) so one model holds
several styles and every blend of them.

- :mod:`.networks`: the texture generator and its conditional instance norm;
- :mod:`.data`: noise from seeds, the blends a batch trains on;
- :mod:`.train`: what a recipe trains, one iteration; :mod:`.loop`: checkpoints, resume, stopping;
- :mod:`.model_file`: model files (safetensors + JSON; loading never runs code);
- :mod:`.sample`: textures from a model, and folders of them like ``texsynth batch``;
- :mod:`.apply`: photos through a transfer network; :mod:`.export`: a transfer model as ONNX.

This package uses the core (targets, graph, losses, features, io); the core
never imports it.
"""

from .loop import Trained, TrainingReport
from .model_file import FastModel, load_model, save_model
from .networks import ConditionalInstanceNorm, TextureGenerator, TransferNetwork
from .sample import blend_weights, sample, sample_folder, sample_images
from .train import TrainingOptions, train

__all__ = [
    "ConditionalInstanceNorm",
    "FastModel",
    "TextureGenerator",
    "TransferNetwork",
    "Trained",
    "TrainingOptions",
    "TrainingReport",
    "blend_weights",
    "load_model",
    "sample",
    "sample_folder",
    "sample_images",
    "save_model",
    "train",
]
