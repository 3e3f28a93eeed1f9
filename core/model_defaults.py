"""The model catalog offered when ``config.yaml`` names none (the checked-in ``config.yaml`` repeats it with
comments; a test keeps the two equal)."""

from __future__ import annotations

from decimal import Decimal

from core.catalog_settings import ModelSpec, ProviderCost


def _costs(**per_provider: dict[str, str]) -> dict[str, ProviderCost]:
    return {name: ProviderCost(**{k: Decimal(v) for k, v in cost.items()}) for name, cost in per_provider.items()}


def default_models() -> dict[str, ModelSpec]:
    """The models offered when ``config.yaml`` names none (``config.yaml`` repeats them, with comments)."""
    flux_ratios = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]
    sdxl_ratios = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"]
    sdxl_ref = "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
    return {
        "flux_schnell": ModelSpec(
            ref="black-forest-labs/flux-schnell", price=1, family="flux", aspect_ratios=flux_ratios,
            description="FLUX.1 [schnell]: fastest, good for live calls",
            providers={"replicate": "black-forest-labs/flux-schnell", "hf": "black-forest-labs/FLUX.1-schnell"},
            costs=_costs(replicate={"per_output": "0.003"}, hf={"per_output": "0.002"}),
        ),
        "flux_dev": ModelSpec(
            ref="black-forest-labs/flux-dev", price=2, family="flux", aspect_ratios=flux_ratios,
            description="FLUX.1 [dev]: higher quality, slower",
            providers={"replicate": "black-forest-labs/flux-dev", "hf": "black-forest-labs/FLUX.1-dev"},
            costs=_costs(replicate={"per_output": "0.025"}, hf={"per_output": "0.012"}),
        ),
        "flux_pro": ModelSpec(
            ref="black-forest-labs/flux-1.1-pro", price=5, family="flux_pro", max_outputs=1,
            aspect_ratios=["1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"],
            description="FLUX 1.1 [pro]: best quality, one image per request",
            costs=_costs(replicate={"per_output": "0.04"}),
        ),
        "sdxl": ModelSpec(
            ref=sdxl_ref, price=1, family="sdxl", aspect_ratios=sdxl_ratios, description="Stable Diffusion XL",
            providers={"replicate": sdxl_ref, "hf": "stabilityai/stable-diffusion-xl-base-1.0"},
            costs=_costs(replicate={"per_second": "0.000975"}, hf={"per_output": "0.004"}),
        ),
        **default_fast_models(sdxl_ratios),
        **default_video_and_edit_models(),
    }  # fmt: skip


def default_fast_models(sdxl_ratios: list[str]) -> dict[str, ModelSpec]:
    """SDXL-Lightning (4 steps: about a second), Playground v2.5 (aesthetic, 1024 px), Ideogram v2 Turbo
    (legible text in pictures)."""
    return {
        "sdxl_lightning": ModelSpec(
            ref="bytedance/sdxl-lightning-4step:5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",
            price=1, family="sdxl", aspect_ratios=sdxl_ratios,
            input_defaults={"num_inference_steps": 4, "guidance_scale": 0, "scheduler": "K_EULER"},
            description="SDXL-Lightning: 4 steps, about a second", costs=_costs(replicate={"per_second": "0.000975"}),
        ),
        "playground": ModelSpec(
            ref="playgroundai/playground-v2.5-1024px-aesthetic:"
            "a45f82a1382bed5c7aeb861dac7c7d191b0fdf74d8d57c4a0e6ed7d4d0bf7d24",
            price=1, family="sdxl", aspect_ratios=sdxl_ratios,
            input_defaults={"guidance_scale": 3, "num_inference_steps": 25},
            description="Playground v2.5: aesthetic pictures, 1024 px",
            costs=_costs(replicate={"per_second": "0.000975"}),
        ),
        "ideogram": ModelSpec(
            ref="ideogram-ai/ideogram-v2-turbo", price=3, family="ideogram", max_outputs=1,
            aspect_ratios=["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "16:10", "10:16", "3:1", "1:3"],
            description="Ideogram v2 Turbo: legible text in pictures (signs, labels, menus)",
            costs=_costs(replicate={"per_output": "0.05"}),
        ),
    }  # fmt: skip


# Replicate models for videos and edits, chosen for being maintained and widely used:
# - Seedance 1 Lite (ByteDance, an official model: no version to pin) makes 5 or 10 s clips from a prompt, or
#   from a prompt and a first-frame image, at 480p-1080p; 480p keeps a 5 s clip near a minute.
# - Real-ESRGAN (nightmareai) is the standard 2-10x upscaler; CodeFormer (sczhou) the standard face restorer;
#   rembg (cjwbw) returns a PNG with alpha. Community models must be pinned to a version.
SEEDANCE_RATIOS = ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21"]


def default_video_and_edit_models() -> dict[str, ModelSpec]:
    """The video and edit models offered when ``config.yaml`` names none."""
    return {
        "seedance_lite": ModelSpec(
            ref="bytedance/seedance-1-lite", price=5, kind="video", family="seedance", aspect_ratios=SEEDANCE_RATIOS,
            input_defaults={"duration": 5, "resolution": "480p"}, description="Seedance 1 Lite: 5 s video, 480p",
            costs=_costs(replicate={"per_output": "0.09"}),
        ),
        "seedance_animate": ModelSpec(
            ref="bytedance/seedance-1-lite", price=5, kind="image_to_video", family="seedance",
            input_defaults={"duration": 5, "resolution": "480p"},
            description="Seedance 1 Lite: animates a picture into a 5 s video",
            costs=_costs(replicate={"per_output": "0.09"}),
        ),
        "real_esrgan": ModelSpec(
            ref="nightmareai/real-esrgan:f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa",
            price=2, kind="upscale", family="real_esrgan", input_defaults={"scale": 4},
            description="Real-ESRGAN: 4x upscale", costs=_costs(replicate={"per_second": "0.000225"}),
        ),
        "rembg": ModelSpec(
            ref="cjwbw/rembg:fb8af171cfa1616ddcf1242c093f9c46bcada5ad4cf6f2fbe8b81b330ec5c003",
            price=1, kind="remove_background", family="rembg",
            description="rembg: removes the background (transparent PNG)",
            costs=_costs(replicate={"per_second": "0.000225"}),
        ),
        "codeformer": ModelSpec(
            ref="sczhou/codeformer:7de2ea26c616d5bf2245ad0d5e24f0ff9a6204578a5c876db53142edd9d2cd56",
            price=2, kind="restore_face", family="codeformer",
            input_defaults={
                "upscale": 2, "codeformer_fidelity": 0.7, "face_upsample": True, "background_enhance": True,
            },
            description="CodeFormer: restores faces", costs=_costs(replicate={"per_second": "0.000225"}),
        ),
    }  # fmt: skip
