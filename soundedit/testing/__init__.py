"""Seeded tiny models in real checkpoint layouts, for tests (ours and users').

Nothing here downloads anything: each helper writes a small checkpoint in the
same file layout as the real third-party file, so it loads through the same
public loaders.  Submodules: ``generators`` (StyleGAN2 / IR-SE50), ``clip``
(CLIP in OpenAI's layout, audio encoders).
"""
