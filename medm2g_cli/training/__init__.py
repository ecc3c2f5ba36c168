"""Training of MedM2G: losses, augmentations, manifest datasets, flows, stages, the Accelerate loop,
fine-tuning task presets and the run API behind ``medm2g pretrain`` / ``medm2g finetune``.

Modules import torch; import them lazily from command bodies (``medm2g --help`` stays torch-free).
"""
