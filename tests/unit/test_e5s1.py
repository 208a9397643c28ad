"""Our E5S1 reader: Q4_0 decoding on a hand-made block, refusal of foreign files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from xl.errors import ModelError
from xl.models.e5s1 import E5S1File, dequantize_q4_0


def test_q4_0_block_decodes_low_then_high_nibbles() -> None:
    scale = np.float16(0.5).tobytes()
    qs = bytes((j % 16) | (((15 - j) % 16) << 4) for j in range(16))
    values = dequantize_q4_0(scale + qs, 32)
    expected_low = [((j % 16) - 8) * 0.5 for j in range(16)]
    expected_high = [(((15 - j) % 16) - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(values, np.array(expected_low + expected_high, dtype=np.float32))


def test_foreign_files_are_refused() -> None:
    with pytest.raises(ModelError, match="magic"):
        E5S1File(b"GGUF" + bytes(60))
    header = b"E5S1" + struct.pack("<I7ifi", 1, 384, 12, 12, 1536, 250037, 512, 2, 1e-12, 64)
    with pytest.raises(ModelError, match="block size"):
        E5S1File(header)
