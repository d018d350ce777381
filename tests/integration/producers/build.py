"""Write tiny checkpoints with the real producers' own quantize + save paths (CPU, no hub).

Run as `python -m tests.integration.producers.build DEST PRODUCER:SCHEME ...`: one process per producer, so
the test process never imports torch or a producer. Each checkpoint lands in DEST/PRODUCER-SCHEME
with `producer.json` beside it: what the producer itself says it wrote for every quantized module
(the weight and scale tensor names, the block or group it used, the scale layout), read from the
producer's own objects, not re-derived from fp8doctor's conventions.

Tiny random models come from configs (`AutoModelForCausalLM.from_config`); nothing is fetched.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

SCHEMES: dict[str, tuple[str, ...]] = {
    # producer -> schemes (all run on CPU here)
    "llmcompressor": ("FP8_BLOCK", "FP8_DYNAMIC", "FP8", "NVFP4", "NVFP4A16", "MXFP4A16", "MXFP8A16", "W4A16"),
    "transformers": ("FP8", "FP8_BLOCK64", "FP8_UNALIGNED"),
    "torchao": ("mxfp8", "mxfp4", "nvfp4"),
    "modelopt": ("FP8", "FP8_PER_CHANNEL", "FP8_2D_BLOCKWISE", "MXFP8", "MXFP4", "NVFP4"),
}

VOCAB = 512


def _llama(hidden: int, inter: int, heads: int = 4, kv: int = 2, head_dim: int | None = None):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2, num_attention_heads=heads,
                       num_key_value_heads=kv, head_dim=head_dim or hidden // heads, vocab_size=VOCAB,
                       max_position_embeddings=128, architectures=["LlamaForCausalLM"], tie_word_embeddings=False)


def _base(dest: str, hidden: int, inter: int, **kw) -> str:
    """A bf16 base model saved to disk (the producers load from a path, as users do)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = os.path.join(dest, f".base-{hidden}x{inter}")
    if not os.path.exists(path):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_llama(hidden, inter, **kw), dtype=torch.bfloat16)
        # 32 all-zero output rows in a down_proj: real zero blocks must not look like corruption
        with torch.no_grad():
            model.model.layers[1].mlp.down_proj.weight[:32].zero_()
        tmp = f"{path}.{os.getpid()}"
        model.save_pretrained(tmp)
        try:  # producers build in parallel processes: the first complete copy wins
            os.rename(tmp, path)
        except OSError:
            import shutil

            shutil.rmtree(tmp)
    return path


def _tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(VOCAB)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
                                   unk_token="t0", pad_token="t1")


def _linear_modules(model):
    import torch

    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]


# ---------------------------------------------------------------------------------------------- llm-compressor
def build_llmcompressor(dest: str, scheme: str) -> dict:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM

    # 256 x 512: compressed-tensors' own loader cannot decompress partial 128-blocks (FP8_BLOCK at
    # 320 saves, then fails to load with "unflatten: sizes [3, 128] don't multiply up to 320")
    model = AutoModelForCausalLM.from_pretrained(_base(dest, 256, 512), dtype=torch.bfloat16)
    kwargs: dict = {}
    if scheme in ("FP8", "NVFP4"):  # static activation scales need calibration data
        g = torch.Generator().manual_seed(0)
        ids = [torch.randint(0, VOCAB, (32,), generator=g).tolist() for _ in range(4)]
        data = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * 32] * 4})
        kwargs = dict(processor=_tokenizer(), dataset=data, num_calibration_samples=4, max_seq_length=32)
    oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme=scheme, ignore=["lm_head"]), **kwargs)
    modules = []
    for name, m in _linear_modules(model):
        w = m.quantization_scheme.weights
        block = list(w.block_structure) if w.block_structure else None
        group = w.group_size
        strategy = str(getattr(w.strategy, "value", w.strategy))
        modules.append({"module": name, "shape": list(m.weight.shape), "strategy": strategy, "block": block,
                        "group": group, "num_bits": w.num_bits,
                        "static_input": bool(m.quantization_scheme.input_activations is not None
                                             and not m.quantization_scheme.input_activations.dynamic)})
    out = os.path.join(dest, f"llmcompressor-{scheme}")
    model.save_pretrained(out, save_compressed=True)
    return {"modules": modules}


# ---------------------------------------------------------------------------------------------- transformers
def build_transformers(dest: str, scheme: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, FineGrainedFP8Config
    from transformers.quantizers import quantizer_finegrained_fp8 as qf

    # FineGrainedFP8 refuses to run without a GPU in validate_environment only; its quantizer and
    # writer are plain torch. Patch that one check (as FORMATS.md records).
    qf.FineGrainedFP8HfQuantizer.validate_environment = lambda self, *a, **k: None
    # FP8_UNALIGNED: dims that are not multiples of 128, the path that saves torch.empty scales
    hidden, inter, kw = (700, 1000, {"head_dim": 175}) if scheme == "FP8_UNALIGNED" else (256, 512, {})
    block = (64, 64) if scheme == "FP8_BLOCK64" else (128, 128)
    model = AutoModelForCausalLM.from_pretrained(_base(dest, hidden, inter, **kw), dtype=torch.bfloat16,
                                                 quantization_config=FineGrainedFP8Config(weight_block_size=block))
    out = os.path.join(dest, f"transformers-{scheme}")
    model.save_pretrained(out)
    # ground truth: does weight x scale give back the bf16 base? (a torch.empty scale does not)
    base = AutoModelForCausalLM.from_pretrained(_base(dest, hidden, inter, **kw), dtype=torch.bfloat16)
    ref = dict(base.named_parameters())
    modules = []
    for n, m in model.named_modules():
        if type(m).__name__ != "FP8Linear":
            continue
        bn, bk = m.block_size
        scale = m.weight_scale_inv.detach().float()
        full = scale.repeat_interleave(bn, 0).repeat_interleave(bk, 1)[: m.out_features, : m.in_features]
        deq = m.weight.detach().float() * full
        want = ref[n + ".weight"].float()
        ok = bool(torch.isfinite(deq).all() and ((deq - want).abs() <= 0.25 * want.abs().max() + 1e-6).all())
        modules.append({"module": n, "shape": [m.out_features, m.in_features], "block": [bn, bk],
                        "scale_matches_base": ok})
    return {"modules": modules}


# ---------------------------------------------------------------------------------------------- torchao
def build_torchao(dest: str, scheme: str) -> dict:
    import torch
    from torchao.prototype.mx_formats.inference_workflow import MXDynamicActivationMXWeightConfig, NVFP4WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig

    cfg = {"mxfp8": lambda: MXDynamicActivationMXWeightConfig(),
           "mxfp4": lambda: MXDynamicActivationMXWeightConfig(activation_dtype=torch.float4_e2m1fn_x2,
                                                              weight_dtype=torch.float4_e2m1fn_x2),
           "nvfp4": lambda: NVFP4WeightOnlyConfig()}[scheme]()
    # hidden 320: N = 320 rows is not a multiple of 128 and K/32 = 10 groups not a multiple of 4,
    # so the swizzled scales carry padding in both directions
    model = AutoModelForCausalLM.from_pretrained(_base(dest, 320, 640), dtype=torch.bfloat16,
                                                 quantization_config=TorchAoConfig(cfg))
    from torchao.prototype.mx_formats.utils import to_blocked

    modules = []
    for name, m in _linear_modules(model):
        w = m.weight
        n, k, group = m.out_features, m.in_features, int(w.block_size)
        # where the producer's own swizzle puts the real entries: to_blocked of an all-ones grid
        # leaves zeros exactly on the padding
        real = to_blocked(torch.ones(n, k // group, dtype=torch.uint8)).reshape(-1)
        modules.append({"module": name, "shape": [n, k], "type": type(w).__name__, "group": group,
                        "swizzled": bool(getattr(w, "is_swizzled_scales", False)), "scale_shape": list(w.scale.shape),
                        "padding": torch.nonzero(real == 0).reshape(-1).tolist()})
    out = os.path.join(dest, f"torchao-{scheme}")
    model.save_pretrained(out, safe_serialization=True)
    return {"modules": modules}


# ---------------------------------------------------------------------------------------------- modelopt
_MODELOPT_CFG = {"FP8": "FP8_DEFAULT_CFG", "FP8_PER_CHANNEL": "FP8_PER_CHANNEL_PER_TOKEN_CFG",
                 "FP8_2D_BLOCKWISE": "FP8_2D_BLOCKWISE_WEIGHT_ONLY_CFG", "MXFP8": "MXFP8_DEFAULT_CFG",
                 "MXFP4": "MXFP4_DEFAULT_CFG", "NVFP4": "NVFP4_DEFAULT_CFG"}


def build_modelopt(dest: str, scheme: str) -> dict:
    import modelopt.torch.quantization as mtq
    import torch
    from modelopt.torch.export import export_hf_checkpoint
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(_base(dest, 256, 512), dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(0)

    def forward_loop(m):
        for _ in range(2):
            m(torch.randint(0, VOCAB, (1, 32), generator=g))

    mtq.quantize(model, getattr(mtq, _MODELOPT_CFG[scheme]), forward_loop)
    modules = []
    for name, m in _linear_modules(model):
        q = m.weight_quantizer
        bs = q.block_sizes or {}
        modules.append({"module": name, "shape": list(m.weight.shape), "num_bits": str(q.num_bits),
                        "axis": q.axis, "block_sizes": {str(k): v for k, v in bs.items() if isinstance(k, int)},
                        "static_input": bool(m.input_quantizer.is_enabled
                                             and not getattr(m.input_quantizer, "_dynamic", False))})
    out = os.path.join(dest, f"modelopt-{scheme}")
    export_hf_checkpoint(model, export_dir=out)
    return {"modules": modules}


BUILDERS: dict[str, Callable[[str, str], dict]] = {
    "llmcompressor": build_llmcompressor, "transformers": build_transformers,
    "torchao": build_torchao, "modelopt": build_modelopt,
}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "compressed-tensors", "llmcompressor", "torchao",
                                      "nvidia-modelopt")}


def main(argv: list[str]) -> int:
    dest, jobs = argv[0], argv[1:]
    os.makedirs(dest, exist_ok=True)
    vers = versions()
    for job in jobs:
        producer, scheme = job.split(":")
        t0 = time.perf_counter()
        info = BUILDERS[producer](dest, scheme)
        info.update(producer=producer, scheme=scheme, versions=vers, seconds=round(time.perf_counter() - t0, 2))
        with open(os.path.join(dest, f"{producer}-{scheme}", "producer.json"), "w") as f:
            json.dump(info, f, indent=1)
        print(f"built {producer}-{scheme} in {info['seconds']} s", flush=True)
    return 0


def offline() -> None:
    """Nothing is fetched from a hub (set here, in the producer's process only: never in the test
    process, whose remote tests need the variables unset)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":
    offline()
    sys.exit(main(sys.argv[1:]))
