"""Alignment training: teach an audio encoder to speak CLIP (the paper's first stage).

- :mod:`~soundedit.training.manifest`: the manifest format, reading/writing, missing-file reports
- :mod:`~soundedit.training.importers`: manifests from ESC-50, UrbanSound8K, VGGSound, AudioSet, class folders
- :mod:`~soundedit.training.data`: clip -> log-mel dataset, memory-mapped mel cache, resumable sampler
- :mod:`~soundedit.training.losses`: symmetric InfoNCE and the summed alignment loss
- :mod:`~soundedit.training.targets`: frozen CLIP text/image targets, cached per unique text/frame
- :mod:`~soundedit.training.loop`: :func:`~soundedit.training.loop.train_alignment`
- :mod:`~soundedit.training.distributed`: torchrun set-up and gradient-preserving gathers

Submodules import torch; this package itself imports nothing heavy.
"""
