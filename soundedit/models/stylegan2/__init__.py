"""StyleGAN2 for soundedit: generator (:mod:`.generator`), layers (:mod:`.layers`), file formats
(:mod:`.loading`: rosinality ``.pt``, NVIDIA ``.pkl`` via :mod:`.pickle_safe` + :mod:`.convert`,
our ``.safetensors``) and the hot ops (:mod:`.ops`: CUDA kernels with a pure-PyTorch path).

Use :func:`soundedit.models.load_generator`; nothing heavy is imported here.
"""
