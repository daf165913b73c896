"""``soundedit weights convert``: StyleGAN2 checkpoints to soundedit's self-describing safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from soundedit.cli._common import JsonOpt, check_weights, emit_json, path_arg, stdout
from soundedit.cli.weights import weights_app


@weights_app.command("convert")
def convert(
    src: Annotated[str, typer.Argument(metavar="IN", show_default=False,
                                       help="Generator to convert: rosinality .pt, NVIDIA .pkl or a weights.lock name.")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", show_default=False, parser=path_arg,
                                        help="Output .safetensors file (weights + JSON config; loads fastest).")],
    json_out: JsonOpt = False,
) -> None:
    """Convert a StyleGAN2 generator to soundedit's .safetensors format.

    NVIDIA pickles are read without running any code they contain.

    Example: soundedit weights convert stylegan2-church-config-f.pkl church-256.safetensors
    """
    from soundedit.fileio import check_output_file
    from soundedit.models.stylegan2.convert import convert_generator

    check_output_file(dst, "OUT", "a .safetensors file path")  # before a minute of reading the input
    check_weights(("IN", src))
    info = convert_generator(src, dst)
    if json_out:
        emit_json(info)
    else:
        stdout.print(f"{info['input']} -> {info['output']}: {info['resolution']} px, n_latent {info['n_latent']}, "
                     f"style_dim {info['style_dim']}, latent_avg {info['latent_avg']}, "
                     f"{info['bytes'] / 1e6:,.1f} MB", highlight=False)
