"""Model catalogue: the architecture numbers a performance model needs.

Values are copied from each model's public Hugging Face ``config.json`` (named in ``source``).
Parameter counts are derived from the shapes, so they can be checked against the published
totals (Llama-3.1-8B: 8.03e9, Mixtral-8x7B: 46.7e9, DeepSeek-V3: 671e9 without the MTP module).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sim_engine.errors import SpecError
from sim_engine.hardware import lookup_preset, replace_fields
from sim_engine.preset_names import model_aliases, unknown_hint

MODEL_KINDS = ("decoder", "embedding", "reranker")


@dataclass(frozen=True)
class ModelArch:
    """Shapes of one transformer; MoE and MLA (DeepSeek) fields are zero when unused."""

    name: str
    kind: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int  # query/key head dim (MLA: nope + rope part)
    ffn_dim: int  # intermediate size of dense FFN layers
    vocab: int
    gated_ffn: bool
    max_context: int
    source: str
    n_experts: int = 0  # routed experts per MoE layer; 0 = dense model
    top_k: int = 0
    n_shared_experts: int = 0
    moe_ffn_dim: int = 0
    first_dense_layers: int = 0  # leading layers with a dense FFN (DeepSeek first_k_dense_replace)
    weight_bytes_per_param: float = 2.0
    # embedding table and LM head, which quantised checkpoints keep at 16 bits (0: weight_bytes_per_param):
    # vLLM's Fp8Config quantises only linear and MoE layers (VocabParallelEmbedding and ParallelLMHead stay
    # unquantised), ModelOpt's FP8 recipe for TensorRT-LLM excludes "*lm_head*", and the DeepSeek-V3 FP8
    # checkpoint stores embed_tokens and lm_head in BF16
    embed_bytes_per_param: float = 0.0
    kv_bytes_per_elem: float = 2.0
    act_bytes: float = 2.0
    causal: bool = True  # False for bidirectional encoders (BERT-style embedding / re-rank models)
    tied_embeddings: bool = False
    attn_bias: bool = False  # bias on the QKV projection (Qwen2.5, BERT)
    mlp_bias: bool = False  # biases on FFN and output projections (BERT)
    layernorm: bool = False  # LayerNorm (weight + bias) instead of RMSNorm
    qk_norm: bool = False  # per-head RMSNorm on q and k (Qwen3)
    learned_pos_emb: int = 0  # rows of a learned position table (BERT); 0 = rotary
    extra_params: int = 0  # token-type table, pooler or classifier head
    v_head_dim: int = 0  # MLA value head dim; 0 = head_dim
    q_lora_rank: int = 0  # MLA query compression rank; 0 = no MLA
    kv_lora_rank: int = 0  # MLA latent KV width
    qk_rope_head_dim: int = 0  # MLA decoupled rotary key width
    parallel_block: bool = False  # attention and MLP read one norm's output in parallel (GPT-J, GPT-NeoX)
    rotary_dim: int = 0  # rotary dims per head when only part of the head is rotated (GPT-J: 64); 0 = all
    lm_head_bias: bool = False  # bias on the LM head (GPT-J)

    # ---- derived shapes -------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def v_dim(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.first_dense_layers if self.is_moe else 0

    @property
    def has_lm_head(self) -> bool:
        return self.kind == "decoder"

    def attn_in_params(self) -> tuple[int, int]:
        """(params replicated across TP ranks, params sharded by TP) of the attention input side."""
        d, h = self.hidden, self.n_heads
        if self.is_mla:
            rope, nope = self.qk_rope_head_dim, self.head_dim - self.qk_rope_head_dim
            replicated = d * self.q_lora_rank + self.q_lora_rank + d * (self.kv_lora_rank + rope) + self.kv_lora_rank
            sharded = self.q_lora_rank * h * self.head_dim + self.kv_lora_rank * h * (nope + self.v_dim)
            return replicated, sharded
        width = (h + 2 * self.n_kv_heads) * self.head_dim
        return 0, d * width + (width if self.attn_bias else 0)

    def attn_out_params(self) -> int:
        return self.n_heads * self.v_dim * self.hidden + (self.hidden if self.mlp_bias else 0)

    def ffn_params(self, inner: int) -> int:
        """One dense FFN (or one expert) of intermediate size ``inner``."""
        mats = 3 if self.gated_ffn else 2
        bias = ((mats - 1) * inner + self.hidden) if self.mlp_bias else 0
        return mats * self.hidden * inner + bias

    def _norm_params(self) -> int:
        return 2 * self.hidden if self.layernorm else self.hidden

    def layer_params(self, moe: bool) -> int:
        rep, sh = self.attn_in_params()
        n = rep + sh + self.attn_out_params() + (1 if self.parallel_block else 2) * self._norm_params()
        if self.qk_norm:
            n += 2 * self.head_dim
        if moe:
            n += self.n_experts * self.ffn_params(self.moe_ffn_dim)
            n += self.n_shared_experts * self.ffn_params(self.moe_ffn_dim)
            n += self.hidden * self.n_experts  # router
        else:
            n += self.ffn_params(self.ffn_dim)
        return n

    def embedding_params(self) -> int:
        return (self.vocab + self.learned_pos_emb) * self.hidden + self.extra_params

    def lm_head_params(self) -> int:
        if not self.has_lm_head or self.tied_embeddings:
            return 0
        return self.vocab * self.hidden + (self.vocab if self.lm_head_bias else 0)

    def param_count(self) -> int:
        dense = self.n_layers - self.n_moe_layers
        n = dense * self.layer_params(False) + self.n_moe_layers * self.layer_params(True)
        n += self.embedding_params() + self.lm_head_params()
        return n + self._norm_params()  # final norm (pre-norm stacks) or embedding LayerNorm (BERT)

    def active_params_per_token(self) -> int:
        """Parameters a token is multiplied by: all but the routed experts it is not sent to."""
        idle = (self.n_experts - self.top_k) * self.ffn_params(self.moe_ffn_dim) if self.is_moe else 0
        return self.param_count() - self.n_moe_layers * idle

    @property
    def embed_bytes(self) -> float:
        """Bytes per parameter of the embedding table and the LM head."""
        return self.embed_bytes_per_param or self.weight_bytes_per_param

    def weight_bytes(self) -> float:
        """Bytes of all weights: the transformer layers at weight_bytes_per_param, embedding and head at embed_bytes."""
        table = self.embedding_params() + self.lm_head_params()
        return (self.param_count() - table) * self.weight_bytes_per_param + table * self.embed_bytes

    def kv_elems_per_token_layer(self) -> int:
        """Cached elements per token per layer, whole model (all KV heads).

        MLA (DeepSeek-V3) caches its compressed latent plus the decoupled rope key,
        kv_lora_rank + qk_rope_head_dim elements shared by all heads, as vLLM and SGLang do.
        """
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.n_kv_heads * self.head_dim

    def kv_bytes_per_token(self) -> float:
        return self.n_layers * self.kv_elems_per_token_layer() * self.kv_bytes_per_elem

    def attn_dims(self, decode: bool) -> tuple[int, int]:
        """(score dim, value dim) per head of the attention kernel.

        MLA decode runs in the absorbed form over the latent (kv_lora + rope for scores,
        kv_lora for values); MLA prefill decompresses to head_dim / v_head_dim.
        """
        if self.is_mla and decode:
            return self.kv_lora_rank + self.qk_rope_head_dim, self.kv_lora_rank
        return self.head_dim, self.v_dim

    def validate(self, where: str = "model") -> None:
        if self.kind not in MODEL_KINDS:
            raise SpecError(f"{where}.kind", f"must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}")
        for name in ("n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "vocab", "max_context"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{where}.{name}", "must be positive")
        for name in ("weight_bytes_per_param", "kv_bytes_per_elem", "act_bytes"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{where}.{name}", "must be positive")
        if self.embed_bytes_per_param < 0:
            raise SpecError(f"{where}.embed_bytes_per_param", "must not be negative (0: weight_bytes_per_param)")
        if self.n_heads % self.n_kv_heads:
            raise SpecError(f"{where}.n_kv_heads", f"{self.n_kv_heads} does not divide n_heads {self.n_heads}")
        if self.is_moe:
            if not 0 < self.top_k <= self.n_experts:
                raise SpecError(f"{where}.top_k", f"must be in 1..n_experts ({self.n_experts})")
            if self.moe_ffn_dim <= 0:
                raise SpecError(f"{where}.moe_ffn_dim", "must be positive for an MoE model")
        if self.first_dense_layers > self.n_layers:
            raise SpecError(f"{where}.first_dense_layers", "exceeds n_layers")
        if self.rotary_dim > self.head_dim:
            raise SpecError(f"{where}.rotary_dim", f"exceeds head_dim {self.head_dim}")


def _llama(name: str, layers: int, hidden: int, heads: int, kv: int, ffn: int, vocab: int, ctx: int,
           src: str, **kw: Any) -> ModelArch:
    return ModelArch(name=name, kind=kw.pop("kind", "decoder"), n_layers=layers, hidden=hidden,
                     n_heads=heads, n_kv_heads=kv, head_dim=kw.pop("head_dim", hidden // heads), ffn_dim=ffn,
                     vocab=vocab, gated_ffn=True, max_context=ctx, source=f"huggingface.co/{src} config.json",
                     **kw)


def _bert(name: str, layers: int, hidden: int, heads: int, ffn: int, vocab: int, pos: int, extra: int,
          kind: str, src: str) -> ModelArch:
    return ModelArch(name=name, kind=kind, n_layers=layers, hidden=hidden, n_heads=heads, n_kv_heads=heads,
                     head_dim=hidden // heads, ffn_dim=ffn, vocab=vocab, gated_ffn=False, max_context=512,
                     source=f"huggingface.co/{src} config.json", causal=False, tied_embeddings=True,
                     attn_bias=True, mlp_bias=True, layernorm=True, learned_pos_emb=pos, extra_params=extra)


# FP8 checkpoint; MLA with the latent cached at bf16; the MTP module (14B) is not counted
_DEEPSEEK_V3 = _llama("DeepSeek-V3", 61, 7168, 128, 128, 18432, 129280, 163840, "deepseek-ai/DeepSeek-V3",
                      head_dim=192, v_head_dim=128, q_lora_rank=1536, kv_lora_rank=512, qk_rope_head_dim=64,
                      n_experts=256, top_k=8, n_shared_experts=1, moe_ffn_dim=2048, first_dense_layers=3,
                      weight_bytes_per_param=1.0, embed_bytes_per_param=2.0)

MODELS: dict[str, ModelArch] = {
    m.name: m
    for m in (
        _llama("Llama-2-7B", 32, 4096, 32, 32, 11008, 32000, 4096, "meta-llama/Llama-2-7b-hf"),
        _llama("Llama-2-13B", 40, 5120, 40, 40, 13824, 32000, 4096, "meta-llama/Llama-2-13b-hf"),
        _llama("Llama-2-70B", 80, 8192, 64, 8, 28672, 32000, 4096, "meta-llama/Llama-2-70b-hf"),
        # Llama 3 (April 2024): the shapes of 3.1 with an 8K context
        _llama("Llama-3-8B", 32, 4096, 32, 8, 14336, 128256, 8192, "meta-llama/Meta-Llama-3-8B"),
        _llama("Llama-3-70B", 80, 8192, 64, 8, 28672, 128256, 8192, "meta-llama/Meta-Llama-3-70B"),
        _llama("Llama-3.1-8B", 32, 4096, 32, 8, 14336, 128256, 131072, "meta-llama/Llama-3.1-8B"),
        _llama("Llama-3.1-70B", 80, 8192, 64, 8, 28672, 128256, 131072, "meta-llama/Llama-3.1-70B"),
        # 3.3 is a post-training update of 3.1 70B: same architecture and config shapes
        _llama("Llama-3.3-70B", 80, 8192, 64, 8, 28672, 128256, 131072, "meta-llama/Llama-3.3-70B-Instruct"),
        _llama("Llama-3.1-405B", 126, 16384, 128, 8, 53248, 128256, 131072, "meta-llama/Llama-3.1-405B"),
        # v0.1 (vocab 32000); its 4096-token sliding window is not modelled: attention spans the whole context
        _llama("Mistral-7B", 32, 4096, 32, 8, 14336, 32000, 32768, "mistralai/Mistral-7B-v0.1"),
        _llama("Mixtral-8x7B", 32, 4096, 32, 8, 14336, 32000, 32768, "mistralai/Mixtral-8x7B-v0.1",
               n_experts=8, top_k=2, moe_ffn_dim=14336),
        # the served Instruct checkpoint (vocab 32768; the base v0.1 has 32000)
        _llama("Mixtral-8x22B", 56, 6144, 48, 8, 16384, 32768, 65536, "mistralai/Mixtral-8x22B-Instruct-v0.1",
               n_experts=8, top_k=2, moe_ffn_dim=16384),
        _llama("Qwen2.5-7B", 28, 3584, 28, 4, 18944, 152064, 131072, "Qwen/Qwen2.5-7B", attn_bias=True),
        _llama("Qwen2.5-72B", 80, 8192, 64, 8, 29568, 152064, 131072, "Qwen/Qwen2.5-72B", attn_bias=True),
        _llama("Qwen3-8B", 36, 4096, 32, 8, 12288, 151936, 40960, "Qwen/Qwen3-8B", head_dim=128, qk_norm=True),
        _llama("Qwen3-14B", 40, 5120, 40, 8, 17408, 151936, 40960, "Qwen/Qwen3-14B", head_dim=128, qk_norm=True),
        _llama("Qwen3-32B", 64, 5120, 64, 8, 25600, 151936, 40960, "Qwen/Qwen3-32B", head_dim=128, qk_norm=True),
        _DEEPSEEK_V3,
        # R1 is a post-training of V3: the same config.json shapes and FP8 checkpoint
        replace(_DEEPSEEK_V3, name="DeepSeek-R1", source="huggingface.co/deepseek-ai/DeepSeek-R1 config.json"),
        # GPT-J: parallel attention/MLP block (one LayerNorm per layer), rotary on 64 of 256 head dims,
        # GELU MLP with biases, no QKV bias, untied LM head with a bias
        ModelArch(name="GPT-J-6B", kind="decoder", n_layers=28, hidden=4096, n_heads=16, n_kv_heads=16,
                  head_dim=256, ffn_dim=16384, vocab=50400, gated_ffn=False, max_context=2048,
                  source="huggingface.co/EleutherAI/gpt-j-6b config.json", mlp_bias=True, layernorm=True,
                  parallel_block=True, rotary_dim=64, lm_head_bias=True),
        # decoder-based embedding model: causal attention, last-token pooling, no LM head
        _llama("e5-mistral-7b", 32, 4096, 32, 8, 14336, 32000, 32768, "intfloat/e5-mistral-7b-instruct",
               kind="embedding"),
        # BERT-base/large encoders: pooler + 2-row token-type table as extra params
        _bert("e5-base", 12, 768, 12, 3072, 30522, 512, 768 * 768 + 768 + 2 * 768, "embedding",
              "intfloat/e5-base-v2"),
        _bert("e5-large", 24, 1024, 16, 4096, 30522, 512, 1024 * 1024 + 1024 + 2 * 1024, "embedding",
              "intfloat/e5-large-v2"),
        _bert("bge-large", 24, 1024, 16, 4096, 30522, 512, 1024 * 1024 + 1024 + 2 * 1024, "embedding",
              "BAAI/bge-large-en-v1.5"),
        # XLM-RoBERTa-large cross-encoder: 514 position rows, 1 token type, classification head
        _bert("bge-reranker-large", 24, 1024, 16, 4096, 250002, 514, 1024 + 1024 * 1024 + 1024 + 1024 + 1,
              "reranker", "BAAI/bge-reranker-large"),
    )
}


_ALIASES = model_aliases(list(MODELS))

DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class Precision:
    """Number formats of one client: weights, KV cache, and the tensor-core rate the GEMMs run at."""

    weights: str
    kv: str
    compute: str

    def apply(self, model: ModelArch) -> ModelArch:
        """The model with its weight and KV element sizes set to this precision.

        Weights below 16 bits quantise the transformer layers only: the embedding table and the LM
        head stay at 16 bits (``ModelArch.embed_bytes_per_param``), as every FP8/INT8/INT4 checkpoint
        format the engines load keeps them.
        """
        wb = DTYPE_BYTES[self.weights]
        return replace(model, weight_bytes_per_param=wb, embed_bytes_per_param=2.0 if wb < 2 else 0.0,
                       kv_bytes_per_elem=DTYPE_BYTES[self.kv])


def parse_dtype(value: Any, where: str = "dtype", quantised_kv: bool = True) -> Precision | None:
    """``bf16`` / ``fp8`` (all three), or ``{weights: fp8, kv: bf16, compute: fp8}``; None: the model's own.

    ``compute`` defaults to fp8 when the weights are 8-bit, else bf16; an int4 weight format computes
    in bf16 (weight-only quantisation). ``quantised_kv=False`` (the engine's KV cache dtype follows
    the 16-bit model dtype, see ``EngineProfile.quantised_kv``): a name like ``fp8`` keeps a bf16 KV.
    """
    if value is None:
        return None
    known = tuple(DTYPE_BYTES)
    if isinstance(value, str):
        if value not in known:
            raise SpecError(where, f"unknown dtype {value!r}; expected one of {', '.join(known)} or a mapping "
                                   "{weights, kv, compute}")
        compute = value if value in ("fp8", "int8", "fp32") else "bf16"
        kv = value if value != "int4" and (quantised_kv or DTYPE_BYTES[value] >= 2) else "bf16"
        return Precision(value, kv, compute)
    from .fields import Fields

    f = Fields(value, where)
    weights = f.str("weights", "bf16", known)
    kv = f.str("kv", "bf16", tuple(k for k in known if k != "int4"))
    compute = f.str("compute", "fp8" if weights in ("fp8", "int8") else "bf16", ("fp32", "bf16", "fp16", "fp8", "int8"))
    f.done()
    return Precision(weights, kv, compute)


def get_model(name: str, overrides: Mapping[str, Any] | None = None, field: str = "model") -> ModelArch:
    """The preset ``name`` (case-insensitive) with ``overrides`` applied and validated."""
    hint = unknown_hint(name[:200]) if isinstance(name, str) else ""
    model = replace_fields(lookup_preset(MODELS, name, "model", field, _ALIASES, hint), overrides, field)
    model.validate(field)
    return model
