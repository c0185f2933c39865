"""ImageNet weights by timm's name: ``--pretrained hrnet_w32.ms_in1k`` finds ``timm/hrnet_w32.ms_in1k``'s
``model.safetensors`` in the Hugging Face cache (offline), else downloads it (online), with ``huggingface_hub`` (an
optional extra: ``pip install "cephalo[hub]"``). Without it, or offline without the file, one error says which file
to fetch and that ``--pretrained PATH`` takes it. ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE`` are read when a name is
resolved, as huggingface_hub reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

from cephalo.checks import looks_like_timm_name

WEIGHTS_FILE = "model.safetensors"


def file_url(name: str) -> str:
    return f"https://huggingface.co/timm/{name}/resolve/main/{WEIGHTS_FILE}"


def resolve_pretrained(source: str | Path) -> Path:
    """The weight file ``source`` names: itself when it is a path, else timm's ``model.safetensors`` for that
    name from the Hugging Face cache or the hub; ``ValueError`` with what to do where neither works."""
    source = str(source)
    if not looks_like_timm_name(source):
        return Path(source)
    fetch = (f"download {file_url(source)} and give its path (--pretrained /path/to/{WEIGHTS_FILE})")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ValueError(f"--pretrained {source}: a timm model name, fetched with huggingface_hub: pip install "
                         f"\"cephalo[hub]\"; or {fetch}") from None
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    try:
        return Path(hf_hub_download(f"timm/{source}", WEIGHTS_FILE, cache_dir=cache_dir, local_files_only=True))
    except Exception:  # noqa: BLE001 -- not in the cache (huggingface_hub's own error types)
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ValueError(f"--pretrained {source}: not in the Hugging Face cache ({cache_dir or 'the default'}) and "
                         f"HF_HUB_OFFLINE is set: {fetch}")
    try:
        return Path(hf_hub_download(f"timm/{source}", WEIGHTS_FILE, cache_dir=cache_dir))
    except Exception as e:  # noqa: BLE001 -- no network, no such model on the hub
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ValueError(f"--pretrained {source}: could not fetch timm/{source} ({first}): {fetch}") from None
