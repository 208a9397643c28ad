"""The other CPU runtimes of ``make bench-embed`` (ONNX Runtime, OpenVINO) on xl's tokens, batches and pooling."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

Forward = Callable[[np.ndarray, np.ndarray], Any]


def peer_forward(variant: str, model_path: str) -> tuple[Forward, str]:
    """``forward(input_ids, attention_mask) -> last_hidden_state`` of the ONNX file on ONNX Runtime (``ort-*``)
    or OpenVINO (bf16 where the CPU has it, else f32) on all the cores this process may use; and its dtype."""
    from xl.models.inference import cpu_supports_bf16

    threads = len(os.sched_getaffinity(0))
    if variant.startswith("ort"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        runner = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

        def run_ort(input_ids: np.ndarray, mask: np.ndarray) -> Any:
            return runner.run(["last_hidden_state"], {"input_ids": input_ids, "attention_mask": mask})[0]

        return run_ort, "int8" if variant == "ort-int8" else "float32"
    import openvino as ov

    core = ov.Core()
    precision = "bf16" if cpu_supports_bf16() else "f32"
    compiled = core.compile_model(core.read_model(model_path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                  "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})  # fmt: skip
    request = compiled.create_infer_request()

    def run_openvino(input_ids: np.ndarray, mask: np.ndarray) -> Any:
        return request.infer({"input_ids": input_ids, "attention_mask": mask})[compiled.output(0)]

    return run_openvino, "bfloat16" if precision == "bf16" else "float32"


class PeerEncoder:
    """Sentences -> (n, hidden) float32 through a peer's ``forward``, with ``xl embed``'s windows, tokens,
    token-budget batches of at most ``batch_size`` rows and mean pooling over the mask (in numpy)."""

    def __init__(self, forward: Forward, batch_size: int) -> None:
        from xl.embed import EmbedOptions
        from xl.models.inference import load_tokenizer, pad_id_of, resolve_max_length
        from xl.models.registry import resolve_model

        self.ref = resolve_model("default")
        assert self.ref.path is not None
        self.config = SimpleNamespace(**json.loads((self.ref.path / "config.json").read_text()))
        self.tokenizer = load_tokenizer(str(self.ref.path))
        self.max_length, self.pad_id = resolve_max_length(None, self.ref, 512, self.config), pad_id_of(self.config)
        self.options, self.forward, self.batch_size = EmbedOptions(), forward, batch_size
        self.shapes: list[list[int]] = []  # (rows, padded length) of every batch: the FLOP count

    def encode(self, texts: list[str]) -> np.ndarray:
        from xl.core.batching import plan_batches
        from xl.models.inference import tokenize_texts

        out = np.zeros((len(texts), int(self.config.hidden_size)), np.float32)
        for first in range(0, len(texts), self.options.window):
            ids = tokenize_texts(self.tokenizer, texts[first : first + self.options.window], prefix=self.ref.prefix,
                                 max_length=self.max_length).ids  # fmt: skip
            lengths = [len(row) for row in ids]
            for batch in plan_batches(lengths, max_tokens=self.options.max_tokens, max_rows=self.batch_size):
                longest = max(lengths[i] for i in batch)
                input_ids = np.full((len(batch), longest), self.pad_id, dtype=np.int64)
                mask = np.zeros((len(batch), longest), dtype=np.int64)
                for row, i in enumerate(batch):
                    input_ids[row, : lengths[i]], mask[row, : lengths[i]] = ids[i], 1
                states = np.asarray(self.forward(input_ids, mask), dtype=np.float32)
                weights = mask[:, :, None].astype(np.float32)
                pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
                out[[first + i for i in batch]] = pooled
                self.shapes.append([len(batch), longest])
        return out
