"""Load a checkpoint with its producer's own loader and run one forward pass (CPU, no hub).

`python -m tests.integration.producers.load PRODUCER DIR...` prints one line per DIR: `RESULT DIR {"ok": true,
"logits": sha256 of the logits' bytes, "finite": bool}` or `RESULT DIR {"ok": false, "error": ...}`.
Tests run it on a clean export and on the same export after `fp8doctor fix`: the producer must still load it, and the
logits must be the same bytes (fix changed padding only, which no loader reads as data).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys


def _forward(model) -> dict:
    import torch

    ids = torch.arange(16).reshape(1, 16) * 7 % 512
    with torch.no_grad():
        logits = model(ids).logits.float()
    return {"ok": True, "logits": hashlib.sha256(logits.numpy().tobytes()).hexdigest(),
            "finite": bool(torch.isfinite(logits).all())}


def load(path: str, producer: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    if producer == "modelopt":
        # A ModelOpt HF export is read by its deployment runtimes (TensorRT-LLM, vLLM, SGLang), none
        # of which run on this CPU; ModelOpt itself ships no HF-checkpoint loader. Its own reader of
        # the export format is the safetensors state dict plus hf_quant_config.json, which is what is
        # exercised here: every tensor reads back, with the dtypes and shapes the export wrote.
        from safetensors.torch import load_file

        with open(os.path.join(path, "hf_quant_config.json")) as f:
            json.load(f)
        state = {}
        for name in sorted(os.listdir(path)):
            if name.endswith(".safetensors"):
                state.update(load_file(os.path.join(path, name)))
        digest = hashlib.sha256()
        for k in sorted(state):
            t = state[k]
            if t.dim() == 0:
                t = t.reshape(1)
            if not t.is_floating_point() or t.dtype.itemsize == 1:
                data = t.contiguous().view(torch.uint8)
            else:
                data = t.contiguous().float().view(torch.uint8)
            digest.update(k.encode() + data.numpy().tobytes())
        return {"ok": True, "logits": digest.hexdigest(), "finite": True}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    if producer == "torchao":
        # torchao's MX matmuls need Blackwell kernels, not on this CPU: its own `dequantize` (which
        # un-swizzles the scales with `from_blocked`) is the loader's read of the data.
        digest, finite = hashlib.sha256(), True
        for name, p in sorted(model.named_parameters()):
            if hasattr(p, "qdata"):
                w = p.dequantize(torch.bfloat16).float()
                finite &= bool(torch.isfinite(w).all())
                digest.update(name.encode() + w.numpy().tobytes())
        return {"ok": True, "logits": digest.hexdigest(), "finite": finite}
    return _forward(model)


def main(argv: list[str]) -> int:
    producer, paths = argv[0], argv[1:]
    for path in paths:
        try:
            out = load(path, producer)
        except Exception as e:  # the verdict is the output: the test reports the producer's error
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        print(f"RESULT {path} {json.dumps(out)}", flush=True)
    return 0


if __name__ == "__main__":
    from tests.integration.producers.build import offline

    offline()
    sys.exit(main(sys.argv[1:]))
