"""Batched decoding for the hf backend on a GPU: a static KV cache, each prompt prefilled once for
all its n samples (and the prompts' shared few-shot prefix once for all of them), and every decode
step replayed from one captured CUDA graph, its attention and sampling Triton kernels where Triton
is installed (engine/models/triton_decode.py; SDPA and pick_tokens otherwise, the reference).

Why not transformers' own fast paths: `generate_batch` (paged cache) reached 521 tokens/s on an
H100 where plain `generate` gives 2,201 (issue 12); `generate` expands each prompt to its n samples
before the prefill, its SDPA attention repeats the key/value heads of grouped-query attention
whenever a padding mask is given (`use_gqa_in_sdpa`: 7x the cache bytes on Qwen2.5-0.5B), and its
compiled static-cache decoding compiles again for every new batch shape. Here the decode step runs
the model's own modules (embedding, norms, projections, rotary embedding, MLPs, head) over a cache
it owns: the query heads of each key/value group go to SDPA as one short query block, so the cache
is read once per step and accumulated in fp32. Llama-layout models (Llama, Qwen2) with full
attention in every layer are supported; others decode with `generate`.

Decoding is what `generate` does with the same settings: greedy (argmax) at temperature 0, else
a draw from softmax(logits / temperature) with no truncation (the exponential-race form, as vLLM
draws: argmax(p / E), E ~ Exp(1); with the Triton kernels its Gumbel-max twin, other draws of the
same distribution), from torch's global generator, so a caller's seed fixes the draws on one
machine; tokens after an end-of-sequence id are padding. Prompts are sorted by length
and cut into sub-batches that fit the GPU's memory beside the weights (a token budget, not a prompt
count)."""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Optional

import torch
import torch.nn.functional as F

SUPPORTED = ("llama", "qwen2")
PAD_TO = 8  # prompt block length multiple (SDPA's memory-efficient kernel wants aligned masks)
CACHE_TO = 128  # cache length multiple, so that batches of similar prompts reuse one graph
CHECK_EVERY = 32  # decode steps between checks whether every sequence has finished
KV_SHARE = 0.7  # share of the GPU memory beside the weights that a sub-batch's cache and sampling may take
PREFILL_TOKENS = 32768  # prompt tokens per prefill forward pass


def supports(model) -> bool:
    """Whether `model` has the layout this decoder runs: a Llama-style stack, full attention only."""
    cfg = model.config
    return cfg.model_type in SUPPORTED and all(t == "full_attention" for t in (getattr(cfg, "layer_types", None) or ()))


class StaticDecoder:
    def __init__(self, model, pad_id: int, max_sequences: Optional[int] = None):
        """max_sequences: sequences decoded together at most (None: as many as fit the GPU's memory)."""
        cfg = model.config
        self.max_sequences = max_sequences
        self.model, self.pad_id = model, pad_id
        attn = model.model.layers[0].self_attn
        self.rope = importlib.import_module(type(attn).__module__).apply_rotary_pos_emb
        self.head_dim, self.scaling = attn.head_dim, attn.scaling
        self.n_kv = cfg.num_key_value_heads
        self.n_layers, self.vocab = cfg.num_hidden_layers, cfg.vocab_size
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.graphed = self.device.type == "cuda"
        # the step's attention and sampling: "triton" (engine/models/triton_decode.py; on CUDA
        # where Triton is installed) or "torch" (SDPA and pick_tokens: the reference and fallback)
        self.kernels = "triton" if self.graphed and importlib.util.find_spec("triton") else "torch"
        self.kv_bytes_per_token = 2 * self.n_layers * self.n_kv * self.head_dim * first.element_size()
        self.shape: Optional[tuple[int, int]] = None  # (sequences, cache length) of the buffers below
        self.shared_prefix = 0  # prompt tokens the last sub-batch's prompts shared (prefilled once)
        self.room = None  # bytes for caches and sampling: the card's memory less the weights (CUDA only)
        if self.graphed:
            total = torch.cuda.get_device_properties(self.device).total_memory
            self.room = total - torch.cuda.memory_allocated(self.device)
        self.release()  # no buffers yet

    # ------------------------------------------------------------------ planning
    def _max_sequences(self, cache_len: int) -> int:
        """Sequences whose cache of `cache_len` positions and sampling buffers fit KV_SHARE of the
        card's memory less what was allocated when the decoder was made (the weights), and at most
        max_sequences (the only bound on the CPU). Not the free memory of the moment: the same
        prompts and seed must give the same sub-batches, hence the same draws, every time."""
        limit = self.max_sequences or 1 << 30
        if self.room is None:
            return limit
        per_sequence = cache_len * self.kv_bytes_per_token + self.vocab * 16  # logits, probabilities, draws
        return max(1, min(int(self.room * KV_SHARE) // per_sequence, limit))

    def generate(self, prompts: list[list[int]], n: int, temperature: float, max_new_tokens: int,
                 eos_ids: list[int], finished: Optional[Callable[[list[list[int]]], bool]] = None) -> list[list[int]]:
        """n rows of new token ids per prompt (prompt i's at i*n .. i*n+n-1), each ending at its first
        end-of-sequence id. `finished(rows)`, asked every CHECK_EVERY steps with the rows so far of
        the sequences still running, may end decoding early (all of them hit a stop string)."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        rows: list[list[int]] = [[] for _ in range(len(prompts) * n)]
        i = 0
        while i < len(order):
            cache_len = _round_up(_round_up(len(prompts[order[i]]), PAD_TO) + max_new_tokens, CACHE_TO)
            left = len(order) - i
            fit = max(1, self._max_sequences(cache_len) // n)
            size = -(-left // -(-left // fit))  # the sub-batches of what is left, evenly sized
            part = order[i : i + size]
            for j, row in zip(part, self._sub_batch([prompts[j] for j in part], n, temperature, max_new_tokens,
                                                   eos_ids, cache_len, finished)):
                rows[j * n : j * n + n] = row
            i += size
        return rows

    # ------------------------------------------------------------------ one sub-batch
    def _sub_batch(self, prompts, n, temperature, max_new_tokens, eos_ids, cache_len, finished):
        B, T = len(prompts) * n, _round_up(max(len(p) for p in prompts), PAD_TO)
        with torch.inference_mode():
            self._buffers(B, cache_len)
            lengths = torch.tensor([len(p) for p in prompts], device=self.device)
            logits = self._prefill(prompts, T, n)
            # decode state: the cache slot written next, each sequence's next position, which keys count
            self.slot.fill_(T)
            self.pos.copy_(lengths.repeat_interleave(n)[:, None])
            self.first.copy_(T - lengths.repeat_interleave(n))
            keep = torch.arange(cache_len, device=self.device)[None, :] >= self.first[:, None]
            keep[:, T:] = False
            self.bias.copy_(torch.where(keep, 0.0, float("-inf"))[:, None, None, :])
            eos = torch.tensor(eos_ids, dtype=torch.long, device=self.device)
            out = torch.full((B, max_new_tokens), self.pad_id, dtype=torch.long, device=self.device)
            done = torch.zeros(B, dtype=torch.bool, device=self.device)
            steps = max_new_tokens
            for t in range(max_new_tokens):
                if t:
                    logits = self._step_replay()
                token = torch.where(done, self.pad_id, self._pick(logits, temperature))
                out[:, t] = token
                done |= torch.isin(token, eos)
                if t + 1 == max_new_tokens:
                    break
                self.tok.copy_(token[:, None])
                if t == 0:  # the step is captured at the prompt's end; later steps move on by one
                    self._capture()
                else:
                    self.pos.add_(1)
                    self.slot.add_(1)
                if (t + 1) % CHECK_EVERY == 0 and self._all_finished(out[:, : t + 1], done, finished):
                    steps = t + 1
                    break
            new = out[:, :steps].tolist()
        return [[_until_eos(new[b * n + k], eos_ids) for k in range(n)] for b in range(len(prompts))]

    def _all_finished(self, out, done, finished) -> bool:
        if bool(done.all()):
            return True
        if finished is None:
            return False
        running = (~done).nonzero().flatten().tolist()
        return finished(out[running].tolist())

    def _buffers(self, B: int, cache_len: int) -> None:
        """The cache, the decode step's inputs and the rotary tables for B sequences of cache_len
        positions; kept (with the captured step) while the shape stays the same."""
        if self.shape == (B, cache_len):
            return
        self.release()
        shape = (B, self.n_kv, cache_len, self.head_dim)
        self.k_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        self.v_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        self.tok = torch.zeros((B, 1), dtype=torch.long, device=self.device)
        self.pos = torch.zeros((B, 1), dtype=torch.long, device=self.device)
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)
        self.first = torch.zeros(B, dtype=torch.long, device=self.device)  # each row's first filled slot
        self.splits = triton_decode().splits_for(B, self.n_kv, cache_len) if self.kernels == "triton" else 1
        self.bias = torch.zeros((B, 1, 1, cache_len), dtype=self.dtype, device=self.device)
        positions = torch.arange(cache_len, device=self.device)[None]
        cos, sin = self.model.model.rotary_emb(self.bias, positions)
        self.cos, self.sin = cos[0], sin[0]
        self.shape = (B, cache_len)

    def release(self) -> None:
        """Drop the cache, the step's buffers and its graph (their memory goes back to torch's pool)."""
        self.shape = self.graph = self.logits = None
        self.k_cache = self.v_cache = []

    # ------------------------------------------------------------------ the model, in two passes
    def _layers(self, ids, cos, sin, attend) -> torch.Tensor:
        """The model on ids (B, T), rotary tables cos/sin (B, T, head_dim), attention by
        attend(layer, q, k, v) -> (B, heads, T, head_dim); the logits of the last position (model dtype)."""
        inner = self.model.model
        B, T = ids.shape
        x = inner.embed_tokens(ids)
        for i, layer in enumerate(inner.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_proj(h).view(B, T, -1, self.head_dim).transpose(1, 2)
            k = a.k_proj(h).view(B, T, -1, self.head_dim).transpose(1, 2)
            v = a.v_proj(h).view(B, T, -1, self.head_dim).transpose(1, 2)
            q, k = self.rope(q, k, cos, sin)
            x = x + a.o_proj(attend(i, q, k, v).transpose(1, 2).reshape(B, T, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.model.lm_head(inner.norm(x[:, -1]))

    def _prefill(self, prompts: list[list[int]], T: int, n: int) -> torch.Tensor:
        """Write each prompt's keys and values into the cache rows of its n samples, right-aligned
        at slot T; return the next-token logits, n rows a prompt. The prompts' shared prefix (the
        few-shot exemplars) runs once (`_prefix`); the rest of each prompt, left-padded, in chunks
        of PREFILL_TOKENS, attending to that prefix's keys and values and to its own."""
        shared = self._prefix(prompts)
        P = shared[0][0].shape[2] if shared else 0
        self.shared_prefix = P
        out = []
        step = max(1, PREFILL_TOKENS // T)
        for s in range(0, len(prompts), step):
            part = [p[P:] for p in prompts[s : s + step]]
            S = _round_up(max(map(len, part)), PAD_TO)
            lens = torch.tensor([len(p) for p in part], device=self.device)
            ids = torch.full((len(part), S), self.pad_id, dtype=torch.long)
            for b, p in enumerate(part):
                ids[b, S - len(p):] = torch.tensor(p, dtype=torch.long)
            pad = (S - lens)[:, None]
            real = torch.arange(S, device=self.device)[None, :] >= pad  # (p, S)
            positions = P + (torch.arange(S, device=self.device)[None, :] - pad).clamp(min=0)
            causal = torch.ones(S, S, dtype=torch.bool, device=self.device).tril()
            # padded query rows see themselves only, so that no row is fully masked (NaN)
            own = (causal[None] & real[:, None, :]) | torch.eye(S, dtype=torch.bool, device=self.device)
            mask = torch.cat([own.new_ones(len(part), S, P), own], 2)[:, None]  # every query sees the prefix
            # cache slot t of a row holds key j of [prefix, left-padded rest]: the rest's real
            # tokens end at slot T, the prefix just before them (slots before it stay masked)
            slot = torch.arange(T, device=self.device)[None, :]
            src = torch.where(slot >= T - lens[:, None], slot - T + P + S, (slot - T + lens[:, None] + P).clamp(min=0))
            rows = slice(s * n, (s * n + len(part) * n))

            def attend(i, q, k, v):
                if shared:
                    k = torch.cat([shared[i][0].expand(len(part), -1, -1, -1), k], 2)
                    v = torch.cat([shared[i][1].expand(len(part), -1, -1, -1), v], 2)
                index = src[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
                self.k_cache[i][rows, :, :T] = k.gather(2, index).repeat_interleave(n, 0)
                self.v_cache[i][rows, :, :T] = v.gather(2, index).repeat_interleave(n, 0)
                g = q.shape[1] // k.shape[1]
                return F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1),
                                                      attn_mask=mask, scale=self.scaling)

            out.append(self._layers(ids.to(self.device), self.cos[positions], self.sin[positions], attend))
        return torch.cat(out).repeat_interleave(n, 0)

    def _prefix(self, prompts: list[list[int]]) -> list:
        """The keys and values, (1, kv heads, P, head_dim) per layer, of the prompts' longest shared
        prefix P (at most the shortest prompt less one token); [] when under PAD_TO tokens."""
        first, P = prompts[0], min(map(len, prompts)) - 1
        for p in prompts[1:]:
            P = next((j for j in range(P) if p[j] != first[j]), P)
        if len(prompts) < 2 or P < PAD_TO:
            return []
        kv = []

        def attend(i, q, k, v):
            kv.append((k, v))
            g = q.shape[1] // k.shape[1]
            return F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1),
                                                  is_causal=True, scale=self.scaling)

        ids = torch.tensor([first[:P]], device=self.device)
        self._layers(ids, self.cos[None, :P], self.sin[None, :P], attend)
        return kv

    def _step(self) -> torch.Tensor:
        """One decode step for every sequence: self.tok at self.pos, written to cache slot self.slot."""
        self.bias.index_fill_(3, self.slot, 0.0)

        def attend(i, q, k, v):
            kc, vc = self.k_cache[i], self.v_cache[i]
            kc.index_copy_(2, self.slot, k)
            vc.index_copy_(2, self.slot, v)
            B, H = q.shape[:2]
            # the query heads of each key/value group as one query block: the cache is read once
            q = q.reshape(B, self.n_kv, -1, self.head_dim)
            if self.kernels == "triton":  # over the filled slots only
                o = triton_decode().decode_attention(q, kc, vc, self.first, self.slot, self.scaling, self.splits)
            else:
                o = F.scaled_dot_product_attention(q, kc, vc, attn_mask=self.bias, scale=self.scaling)
            return o.reshape(B, H, 1, self.head_dim)

        return self._layers(self.tok, self.cos[self.pos], self.sin[self.pos], attend)

    def _capture(self) -> None:
        """On CUDA, capture the step once per buffer shape (its inputs are updated in place between
        replays); on the CPU the step runs as it is."""
        if not self.graphed or self.graph is not None:
            return
        # Warm-up on a side stream, as graph capture requires; the step is idempotent at a fixed slot.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._step()

    def _step_replay(self) -> torch.Tensor:
        if self.graph is None:
            return self._step()
        self.graph.replay()
        return self.logits


    def _pick(self, logits, temperature: float) -> torch.Tensor:
        if temperature and self.kernels == "triton":
            return triton_decode().sample_tokens(logits, temperature)
        return pick_tokens(logits, temperature)


def triton_decode():
    """engine.models.triton_decode, imported on first use (it imports Triton)."""
    return importlib.import_module("engine.models.triton_decode")


def pick_tokens(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The next token of each row of logits: argmax at temperature 0, else one draw from
    softmax(logits / temperature) in fp32 (argmax of p / E with E ~ Exp(1), which is a draw from p)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    return probs.div_(torch.empty_like(probs).exponential_()).argmax(-1)


def _until_eos(row: list[int], eos_ids: list[int]) -> list[int]:
    for i, token in enumerate(row):
        if token in eos_ids:
            return row[: i + 1]
    return row


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m
