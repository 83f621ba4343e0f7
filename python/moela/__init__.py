"""moela from Python: DeepSeek-V2/V3 mixture-of-experts models on the CPU.

A pure-Python layer over the moela shared library (ctypes, no compiled extension). The
library is found through ``$MOELA_LIBRARY``, next to this package, or on the system's
library path.

>>> import moela
>>> model = moela.Model("model.gguf")
>>> session = moela.Session(model)
>>> for piece in session.generate("Once upon a time", max_tokens=32):
...     print(piece, end="", flush=True)

Errors from the library are raised as :class:`MoelaError`, with its status and message.
Threads: share one :class:`Model`; give each thread its own :class:`Session` and
:class:`Sampler` (the library releases the GIL while it computes).
"""

from __future__ import annotations

import array
import ctypes
import enum
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

from . import _ffi

__all__ = [
    "ABI_VERSION",
    "MAX_THREADS",
    "Model",
    "ModelInfo",
    "MoelaError",
    "Sampler",
    "Session",
    "Status",
    "abi_version",
    "generate",
    "get_n_threads",
    "set_n_threads",
    "version",
]

ABI_VERSION = _ffi.ABI_VERSION
#: The most worker threads :func:`set_n_threads` accepts (MOELA_MAX_THREADS).
MAX_THREADS = _ffi.MAX_THREADS

_lib: Optional[ctypes.CDLL] = None


def _l() -> ctypes.CDLL:
    """The library, opened on first use."""
    global _lib
    if _lib is None:
        _lib = _ffi.load()
    return _lib


class Status(enum.IntEnum):
    """moela_status values (never renumbered)."""

    OK = 0
    NULL_ARG = 1
    IO = 2
    BAD_FORMAT = 3
    UNSUPPORTED = 4
    OUT_OF_MEMORY = 5
    CONTEXT_FULL = 6
    INVALID_ARG = 7
    CANCELLED = 8
    PANIC = 9
    BUFFER_TOO_SMALL = 10
    TOKEN_OUT_OF_RANGE = 11
    INVALID_UTF8 = 12
    #: The session is in use by another call (another thread); nothing changed.
    BUSY = 13


class MoelaError(Exception):
    """A failed library call: ``status`` (a :class:`Status`, or the raw number if this package
    does not know it) and the library's message."""

    def __init__(self, status: int, message: str) -> None:
        try:
            self.status: Union[Status, int] = Status(status)
        except ValueError:
            self.status = status
        self.message = message
        super().__init__(f"{message} [{self.status_name}]")

    @property
    def status_name(self) -> str:
        return self.status.name if isinstance(self.status, Status) else f"status {self.status}"


def _check(status: int) -> None:
    if status != Status.OK:
        msg = _l().moela_last_error()
        raise MoelaError(status, msg.decode("utf-8", "replace") if msg else "")


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    return _l().moela_version().decode()


def abi_version() -> int:
    """The library's ABI version (equal to :data:`ABI_VERSION` once loaded)."""
    return int(_l().moela_abi_version())


def set_n_threads(n_threads: int) -> None:
    """Sets the size of the process-wide worker pool, 1 ..= :data:`MAX_THREADS`; only before
    the first evaluation. Anything else raises :class:`MoelaError` (INVALID_ARG) before a
    thread is started."""
    n = int(n_threads)
    if not 0 <= n <= 0xFFFFFFFF:
        # Outside uint32 ctypes would wrap it; the library's message, with the value as given.
        raise MoelaError(
            Status.INVALID_ARG, f"moela_set_n_threads: n_threads is {n}: must be 1 ..= {MAX_THREADS}"
        )
    _check(_l().moela_set_n_threads(n))


def get_n_threads() -> int:
    """The size of the process-wide worker pool."""
    return int(_l().moela_get_n_threads())


def _defaults(struct: type, fn: str) -> ctypes.Structure:
    p = struct()
    _check(getattr(_l(), fn)(ctypes.byref(p), ctypes.sizeof(p)))
    return p


def _u32_array(tokens: Iterable[int]) -> "ctypes.Array[ctypes.c_uint32]":
    ids = list(tokens)
    for t in ids:
        if not 0 <= t <= 0xFFFFFFFF:
            raise MoelaError(Status.TOKEN_OUT_OF_RANGE, f"token id {t} is not a uint32")
    return (ctypes.c_uint32 * len(ids))(*ids)


def _read_sized(call) -> bytes:  # type: ignore[no-untyped-def]
    """Runs a C function that fills (buf, size, &n) and reports the needed size."""
    n = ctypes.c_size_t(0)
    st = call(None, 0, ctypes.byref(n))
    if st != Status.BUFFER_TOO_SMALL:
        _check(st)
    buf = ctypes.create_string_buffer(n.value + 1)
    _check(call(buf, len(buf), ctypes.byref(n)))
    return buf.raw[: n.value]


@dataclass(frozen=True)
class ModelInfo:
    """What :attr:`Model.info` reports (moela_model_info)."""

    n_vocab: int
    n_ctx_train: int
    n_layers: int
    n_dense_layers: int
    n_embd: int
    n_heads: int
    kv_lora_rank: int
    n_experts: int
    n_experts_used: int
    n_shared_experts: int
    bos_token: Optional[int]
    eos_token: Optional[int]
    n_params: int
    n_params_active: int
    kv_bytes_per_token: int
    architecture: str
    has_tokenizer: bool
    is_gguf: bool


class Model:
    """A loaded model (a ``.gguf`` file or a Hugging Face directory). Immutable; share it
    between threads and sessions. Freed by :meth:`close`, ``with``, or garbage collection."""

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        expert_budget_bytes: Optional[int] = None,
        prefetch: bool = True,
    ) -> None:
        """``expert_budget_bytes``: memory for routed experts (None: unlimited, every expert
        stays in the file mapping; 0 streams each through one slot); the logits are the same
        at every budget. ``prefetch``: with a budget, read the next layers' predicted experts
        ahead."""
        self._h = ctypes.c_void_p()
        params = _defaults(_ffi.ModelParams, "moela_model_default_params")
        if expert_budget_bytes is not None:
            if expert_budget_bytes < 0:
                raise MoelaError(Status.INVALID_ARG, "expert_budget_bytes must be >= 0")
            params.expert_budget_bytes = expert_budget_bytes
        if not prefetch:
            params.flags |= _ffi.MODEL_NO_PREFETCH
        _check(_l().moela_model_load(os.fsencode(path), ctypes.byref(params), ctypes.byref(self._h)))
        self.info: ModelInfo = self._read_info()

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            raise MoelaError(Status.NULL_ARG, "the model is closed")
        return self._h

    def close(self) -> None:
        """Frees the model now (sessions made from it keep working)."""
        if getattr(self, "_h", None):
            _l().moela_model_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _read_info(self) -> ModelInfo:
        i = _ffi.ModelInfo()
        _check(_l().moela_model_get_info(self._handle(), ctypes.byref(i), ctypes.sizeof(i)))
        return ModelInfo(
            n_vocab=i.n_vocab,
            n_ctx_train=i.n_ctx_train,
            n_layers=i.n_layers,
            n_dense_layers=i.n_dense_layers,
            n_embd=i.n_embd,
            n_heads=i.n_heads,
            kv_lora_rank=i.kv_lora_rank,
            n_experts=i.n_experts,
            n_experts_used=i.n_experts_used,
            n_shared_experts=i.n_shared_experts,
            bos_token=None if i.bos_token < 0 else i.bos_token,
            eos_token=None if i.eos_token < 0 else i.eos_token,
            n_params=i.n_params,
            n_params_active=i.n_params_active,
            kv_bytes_per_token=i.kv_bytes_per_token,
            architecture=i.architecture.decode(),
            has_tokenizer=bool(i.flags & _ffi.MODEL_INFO_HAS_TOKENIZER),
            is_gguf=bool(i.flags & _ffi.MODEL_INFO_GGUF),
        )

    @property
    def n_vocab(self) -> int:
        return self.info.n_vocab

    def expert_cache_stats(self) -> dict:
        """The routed-expert cache counters (moela_expert_cache_stats) as a dict."""
        s = _ffi.ExpertCacheStats()
        _check(
            _l().moela_model_expert_cache_stats(self._handle(), ctypes.byref(s), ctypes.sizeof(s))
        )
        return {name: getattr(s, name) for name, _ in s._fields_ if name != "struct_size"}

    def tokenize(self, text: str, add_bos: bool = False, parse_special: bool = False) -> list:
        """Text to token ids. ``parse_special`` recognises special tokens written in the text
        (leave it off for user input)."""
        data = text.encode("utf-8")
        flags = (_ffi.TOKENIZE_ADD_BOS if add_bos else 0) | (
            _ffi.TOKENIZE_PARSE_SPECIAL if parse_special else 0
        )
        n = ctypes.c_size_t(0)
        st = _l().moela_tokenize(self._handle(), data, len(data), flags, None, 0, ctypes.byref(n))
        if st != Status.BUFFER_TOO_SMALL:
            _check(st)
            return []
        out = (ctypes.c_uint32 * n.value)()
        _check(_l().moela_tokenize(self._handle(), data, len(data), flags, out, n.value, ctypes.byref(n)))
        return list(out)

    def token_to_bytes(self, token: int) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character)."""
        h = self._handle()
        return _read_sized(lambda buf, size, n: _l().moela_token_to_piece(h, token, buf, size, n))

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Token ids to text (invalid UTF-8 becomes U+FFFD)."""
        ids = _u32_array(tokens)
        h = self._handle()
        raw = _read_sized(lambda buf, size, n: _l().moela_detokenize(h, ids, len(ids), buf, size, n))
        return raw.decode("utf-8")

    def apply_chat_template(
        self,
        messages: Sequence[Union[Mapping[str, str], Tuple[str, str]]],
        add_generation_prompt: bool = True,
    ) -> str:
        """Renders ``[{"role": ..., "content": ...}, ...]`` (or ``(role, content)`` pairs)
        with the model's chat template. Roles are "system", "user", "assistant" and "tool";
        any other raises :class:`MoelaError` (INVALID_ARG) naming it."""
        pairs = [(m["role"], m["content"]) if isinstance(m, Mapping) else m for m in messages]
        keep = [(r.encode(), c.encode()) for r, c in pairs]
        arr = (_ffi.ChatMessage * len(keep))(*[_ffi.ChatMessage(r, c) for r, c in keep])
        flags = _ffi.CHAT_ADD_GENERATION_PROMPT if add_generation_prompt else 0
        h = self._handle()
        raw = _read_sized(
            lambda buf, size, n: _l().moela_chat_apply_template(h, arr, len(keep), flags, buf, size, n)
        )
        return raw.decode("utf-8")


class Sampler:
    """Chooses tokens: greedy when ``temperature`` is 0, else seeded sampling with top-k,
    top-p and min-p. Parameters left as None keep the library's defaults (temperature 0.8,
    top_k 40, top_p 0.95, min_p 0.05, as the CLI; :meth:`greedy` and the generate functions
    without a sampler are greedy). The library checks the values (moela_sampler_new): NaN or
    infinite values, temperature < 0, top_p outside (0, 1], min_p outside [0, 1], top_k < 0
    and repeat_penalty <= 0 raise :class:`MoelaError` (INVALID_ARG) stating the range."""

    def __init__(
        self,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        seed: Optional[int] = None,
    ) -> None:
        p = _defaults(_ffi.SamplingParams, "moela_sampling_default_params")
        for name, value in [
            ("temperature", temperature),
            ("top_k", top_k),
            ("top_p", top_p),
            ("min_p", min_p),
            ("repeat_penalty", repeat_penalty),
            ("seed", seed),
        ]:
            if value is None:
                continue
            if name == "top_k" and not 0 <= value <= 0xFFFFFFFF:
                # ctypes would wrap it into a uint32: the library's message instead.
                raise MoelaError(
                    Status.INVALID_ARG,
                    f"moela_sampler_new: top_k is {value}: must be >= 0 (0 = all tokens)"
                    if value < 0
                    else f"moela_sampler_new: top_k is {value}: must be at most 4294967295",
                )
            setattr(p, name, value)
        self._h = ctypes.c_void_p()
        _check(_l().moela_sampler_new(ctypes.byref(p), ctypes.byref(self._h)))

    @classmethod
    def greedy(cls) -> "Sampler":
        return cls(temperature=0.0)

    def reset(self) -> None:
        """Restarts the random stream from the seed."""
        _check(_l().moela_sampler_reset(self._h))

    def sample_logits(self, logits: Sequence[float], history: Sequence[int] = ()) -> int:
        """Chooses from the given logits (history feeds the repetition penalty)."""
        lg = (ctypes.c_float * len(logits))(*logits)
        hist = _u32_array(history)
        out = ctypes.c_uint32()
        _check(
            _l().moela_sample_logits(
                self._h, lg, len(lg), hist if len(hist) else None, len(hist), ctypes.byref(out)
            )
        )
        return out.value

    def __del__(self) -> None:
        h = getattr(self, "_h", None)
        if h and _lib is not None:
            _lib.moela_sampler_free(h)
            self._h = ctypes.c_void_p()


class Session:
    """One sequence on a model: its KV cache, position and logits. Use it from one thread at
    a time."""

    def __init__(
        self, model: Model, n_ctx: int = 0, kv_type: str = "f32", attn_path: str = "auto"
    ) -> None:
        p = _defaults(_ffi.SessionParams, "moela_session_default_params")
        p.n_ctx = n_ctx
        p.kv_type = _ffi.KV_TYPES.get(kv_type, 0xFFFFFFFF)
        p.attn_path = _ffi.ATTN_PATHS.get(attn_path, 0xFFFFFFFF)
        self.model = model
        self._n_vocab = model.n_vocab
        self._h = ctypes.c_void_p()
        _check(_l().moela_session_new(model._handle(), ctypes.byref(p), ctypes.byref(self._h)))

    def __del__(self) -> None:
        h = getattr(self, "_h", None)
        if h and _lib is not None:
            _lib.moela_session_free(h)
            self._h = ctypes.c_void_p()

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluates a batch of token ids after those already in the session."""
        ids = _u32_array(tokens)
        _check(_l().moela_session_eval(self._h, ids, len(ids)))

    def eval_all_logits(self, tokens: Sequence[int]) -> list:
        """Evaluates a batch and returns the logits after each of its tokens (a list of
        ``array('f')`` rows)."""
        ids = _u32_array(tokens)
        out = (ctypes.c_float * (len(ids) * self._n_vocab))()
        _check(_l().moela_session_eval_all_logits(self._h, ids, len(ids), out, len(out), None))
        v = self._n_vocab
        flat = array.array("f", bytes(out))
        return [flat[i * v : (i + 1) * v] for i in range(len(ids))]

    def logits(self) -> "array.array[float]":
        """The logits after the last evaluated token, as ``array('f')`` of n_vocab floats."""
        out = (ctypes.c_float * self._n_vocab)()
        _check(_l().moela_session_logits(self._h, out, len(out), None))
        return array.array("f", bytes(out))

    def reset(self) -> None:
        """Forgets the sequence (keeps the allocated cache)."""
        _check(_l().moela_session_reset(self._h))

    @property
    def position(self) -> int:
        """Tokens in the session."""
        v = ctypes.c_uint32()
        _check(_l().moela_session_position(self._h, ctypes.byref(v)))
        return v.value

    @property
    def n_ctx(self) -> int:
        """The most tokens the session can hold."""
        v = ctypes.c_uint32()
        _check(_l().moela_session_n_ctx(self._h, ctypes.byref(v)))
        return v.value

    def sample(self, sampler: Sampler) -> int:
        """Chooses the next token from the last logits."""
        out = ctypes.c_uint32()
        _check(_l().moela_sample(self._h, sampler._h, ctypes.byref(out)))
        return out.value

    def generate_tokens(
        self,
        prompt: Sequence[int],
        max_tokens: int = 128,
        sampler: Optional[Sampler] = None,
        ignore_eos: bool = False,
    ) -> Iterator[int]:
        """Evaluates ``prompt`` (may be empty to continue), then yields up to ``max_tokens``
        sampled ids, each evaluated before the next is chosen, ending after the model's EOS
        unless ``ignore_eos``. The same rules as ``moela_generate_tokens``: a token whose
        consumer stopped iterating is not evaluated. Greedy when no sampler is given."""
        smp = sampler or Sampler.greedy()
        if len(prompt):
            self.eval(prompt)
        eos = None if ignore_eos else self.model.info.eos_token
        for _ in range(max_tokens):
            tok = self.sample(smp)
            yield tok
            self.eval([tok])
            if tok == eos:
                return

    def generate(
        self,
        prompt: str,
        max_tokens: int = 128,
        sampler: Optional[Sampler] = None,
        add_bos: bool = False,
        parse_special: bool = False,
        ignore_eos: bool = False,
    ) -> Iterator[str]:
        """Tokenizes ``prompt`` and yields the generated text in pieces that never split a
        UTF-8 character (the EOS token's text is left out). Needs a model with a tokenizer."""
        ids = self.model.tokenize(prompt, add_bos=add_bos, parse_special=parse_special)
        eos = None if ignore_eos else self.model.info.eos_token
        detok = _Detokenizer(self.model)
        for tok in self.generate_tokens(ids, max_tokens, sampler, ignore_eos):
            if tok == eos:
                continue
            piece = detok.feed(tok)
            if piece:
                yield piece
        rest = detok.flush()
        if rest:
            yield rest


class _Detokenizer:
    """moela_detokenizer: ids in, whole UTF-8 characters out."""

    def __init__(self, model: Model) -> None:
        self._h = ctypes.c_void_p()
        _check(_l().moela_detokenizer_new(model._handle(), ctypes.byref(self._h)))

    def _take(self, st: int, p: "ctypes._Pointer[ctypes.c_char]", n: ctypes.c_size_t) -> str:
        _check(st)
        return ctypes.string_at(p, n.value).decode("utf-8")

    def feed(self, token: int) -> str:
        p, n = _ffi.c_buf(), ctypes.c_size_t()
        return self._take(
            _l().moela_detokenizer_feed(self._h, token, ctypes.byref(p), ctypes.byref(n)), p, n
        )

    def flush(self) -> str:
        p, n = _ffi.c_buf(), ctypes.c_size_t()
        return self._take(_l().moela_detokenizer_flush(self._h, ctypes.byref(p), ctypes.byref(n)), p, n)

    def __del__(self) -> None:
        h = getattr(self, "_h", None)
        if h and _lib is not None:
            _lib.moela_detokenizer_free(h)
            self._h = ctypes.c_void_p()


def generate(session: Session, prompt: str, **kwargs: object) -> Iterator[str]:
    """Generated text pieces: the same as ``session.generate(prompt, ...)``."""
    return session.generate(prompt, **kwargs)  # type: ignore[arg-type]
