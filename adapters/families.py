"""The diffusers model zoo as a table: one row per model family, one mechanism for all of them.

Each row names a family as users know it, the diffusers classes it covers and their modality; the
block stacks, components and timestep argument are found by structure
(:mod:`smoothcache.builtin.structure`), so a row states only what structure cannot tell. The
``diffusers`` adapter at the end serves any other diffusers transformer whose structure is found,
and is chosen only when no other adapter matches the model.

Families with their own file: ``dit`` (also facebookresearch DiT), ``stable-audio`` (also
stable-audio-tools and Stable Audio 3), ``opensora`` (re-implementations).
"""

from __future__ import annotations

from torch import nn

from smoothcache.plugins import hookimpl
from smoothcache_core import class_names

from .structure import Layout, StructuralAdapter, discover_components, timestep_argument

_PLAIN = Layout()


def _family(name: str, family: str, modality: str, *classes: str, layout: Layout = _PLAIN) -> StructuralAdapter:
    return StructuralAdapter(name=name, classes=classes, layout=layout, family=family, modality=modality)


FAMILIES: tuple[StructuralAdapter, ...] = (
    # -- image --------------------------------------------------------------------------------------
    _family("flux", "FLUX.1", "image", "FluxTransformer2DModel"),
    _family("flux2", "FLUX.2", "image", "Flux2Transformer2DModel"),
    _family("flux3", "FLUX.3", "image", "Flux3Transformer2DModel"),
    _family("chroma", "Chroma", "image", "ChromaTransformer2DModel"),
    _family("bria", "Bria / FIBO", "image", "BriaTransformer2DModel", "BriaFiboTransformer2DModel", "BriaFibo2Transformer2DModel"),
    _family("sd3", "Stable Diffusion 3 / 3.5", "image", "SD3Transformer2DModel"),
    _family("qwen-image", "Qwen-Image", "image", "QwenImageTransformer2DModel", "QwenImage21Transformer2DModel"),
    _family("pixart", "PixArt-α / Σ", "image", "PixArtTransformer2DModel"),
    _family("sana", "Sana", "image", "SanaTransformer2DModel"),
    _family("auraflow", "AuraFlow", "image", "AuraFlowTransformer2DModel"),
    _family("lumina", "Lumina-Next / Lumina 2", "image", "LuminaNextDiT2DModel", "Lumina2Transformer2DModel"),
    _family("hunyuan-dit", "Hunyuan-DiT", "image", "HunyuanDiT2DModel"),
    _family("cogview", "CogView 3 Plus / 4", "image", "CogView3PlusTransformer2DModel", "CogView4Transformer2DModel"),
    _family("glm-image", "GLM-Image", "image", "GlmImageTransformer2DModel"),
    _family("hidream", "HiDream-I1", "image", "HiDreamImageTransformer2DModel"),
    _family("z-image", "Z-Image", "image", "ZImageTransformer2DModel"),
    _family("hunyuan-image", "HunyuanImage 2.1", "image", "HunyuanImageTransformer2DModel"),
    _family("ideogram", "Ideogram 4", "image", "Ideogram4Transformer2DModel"),
    _family("krea", "Krea 2", "image", "Krea2Transformer2DModel"),
    _family("longcat-image", "LongCat-Image", "image", "LongCatImageTransformer2DModel"),
    _family("ovis-image", "Ovis-Image", "image", "OvisImageTransformer2DModel"),
    _family("nucleus-image", "Nucleus-Image (MoE)", "image", "NucleusMoEImageTransformer2DModel"),
    _family("omnigen", "OmniGen", "image", "OmniGenTransformer2DModel"),
    _family("prx", "PRX", "image", "PRXTransformer2DModel"),
    _family("ernie-image", "ERNIE-Image", "image", "ErnieImageTransformer2DModel"),
    _family("transformer-2d", "Transformer2DModel (VQ-Diffusion, PixArt-style)", "image", "Transformer2DModel"),
    _family("cosmos3", "Cosmos 3 Omni", "image", "Cosmos3OmniTransformer"),
    # -- video --------------------------------------------------------------------------------------
    _family(
        "wan",
        "Wan 2.1 / 2.2 (VACE, Animate)",
        "video",
        "WanTransformer3DModel",
        "WanVACETransformer3DModel",
        "WanAnimateTransformer3DModel",
        "WanAnimate2Transformer3DModel",
    ),
    _family("skyreels-v2", "SkyReels-V2", "video", "SkyReelsV2Transformer3DModel"),
    _family("chronoedit", "ChronoEdit", "video", "ChronoEditTransformer3DModel"),
    _family("anyflow", "AnyFlow", "video", "AnyFlowTransformer3DModel", "AnyFlowFARTransformer3DModel"),
    _family("helios", "Helios", "video", "HeliosTransformer3DModel"),
    _family(
        "hunyuan-video",
        "HunyuanVideo / 1.5 / FramePack",
        "video",
        "HunyuanVideoTransformer3DModel",
        "HunyuanVideo15Transformer3DModel",
        "HunyuanVideoFramepackTransformer3DModel",
    ),
    _family("ltx-video", "LTX-Video", "video", "LTXVideoTransformer3DModel"),
    _family("ltx2", "LTX-2 (audio + video)", "video", "LTX2VideoTransformer3DModel"),
    _family("cogvideox", "CogVideoX / ConsisID", "video", "CogVideoXTransformer3DModel", "ConsisIDTransformer3DModel"),
    _family("mochi", "Mochi 1", "video", "MochiTransformer3DModel"),
    _family("latte", "Latte", "video", "LatteTransformer3DModel"),
    _family("allegro", "Allegro", "video", "AllegroTransformer3DModel"),
    _family("cosmos", "Cosmos Predict", "video", "CosmosTransformer3DModel"),
    _family("easyanimate", "EasyAnimate", "video", "EasyAnimateTransformer3DModel"),
    _family("joyimage", "JoyImage Edit", "image", "JoyImageEditTransformer3DModel", "JoyImageEditPlusTransformer3DModel"),
    _family(
        "kandinsky",
        "Kandinsky 5 / 6",
        "video",
        "Kandinsky5Transformer3DModel",
        "Kandinsky6Transformer3DModel",
        "Kandinsky6SRTransformer3DModel",
    ),
    _family("minimax-video", "MiniMax H3 (audio + video)", "video", "MiniMaxH3Transformer3DModel"),
    _family("motif-video", "Motif-Video", "video", "MotifVideoTransformer3DModel"),
    _family(
        "sana-video",
        "Sana-Video / SANA-WM",
        "video",
        "SanaVideoTransformer3DModel",
        "SanaWMTransformer3DModel",
        "SanaWMLTX2RefinerTransformer3DModel",
    ),
    # -- audio and other ------------------------------------------------------------------------------
    _family("ace-step", "ACE-Step", "audio", "AceStepTransformer1DModel"),
    _family("longcat-audio", "LongCat-Audio-DiT", "audio", "LongCatAudioDiTTransformer"),
    _family("minimax-music", "MiniMax Music 3", "audio", "MiniMaxMusic3Transformer1DModel"),
    _family("spectrogram-diffusion", "Spectrogram Diffusion (T5 FiLM)", "audio", "T5FilmDecoder"),
    _family("prior", "unCLIP / Kandinsky prior", "other", "PriorTransformer"),
    _family("proteina", "RFdiffusion-4 Proteina", "other", "RFD4ProteinaTransformer"),
)


class DiffusersAdapter(StructuralAdapter):
    """Adapter ``diffusers``: any diffusers model with a timestep argument whose block stacks and
    components are found by structure (a class newer than this table). A fallback: detection chooses
    it only when no family's (or a third party's) adapter matches."""

    fallback = True

    def matches(self, model: nn.Module) -> bool:
        return "ModelMixin" in class_names(model) and timestep_argument(model) is not None and bool(discover_components(model))


GENERIC = DiffusersAdapter(name="diffusers", classes=(), family="any diffusers transformer", modality="any")


@hookimpl
def smoothcache_adapters() -> list[StructuralAdapter]:
    return [*FAMILIES, GENERIC]
