"""moela from Python: DeepSeek-V2/V3 mixture-of-experts models on the CPU.

A pure-Python layer over the moela shared library (ctypes, no compiled extension). The
library is ``$MOELA_LIBRARY`` when set, else the one bundled in this package (``pip install
./python`` builds it with cargo), else the system's library path.

>>> import moela
>>> model = moela.Model("model.gguf")
>>> session = moela.Session(model)
>>> for piece in session.generate("Once upon a time", max_tokens=32):
...     print(piece, end="", flush=True)

Logits come back as ``numpy.ndarray`` (float32) when numpy can be imported, else as
``array.array('f')``; :func:`set_logits_type` chooses one for good.

Errors from the library are raised as :class:`MoelaError`, with its status and message.
Arguments are checked before they reach the library: a wrong type is a TypeError naming the
parameter; an integer outside its C type or its documented range, a string with a NUL where
the library takes NUL-terminated strings, or an unknown name is a :class:`MoelaValueError`
(both a MoelaError and a ValueError) naming the parameter, its value and the range. Nothing
is wrapped or cut silently.
Threads: share one :class:`Model`; give each thread its own :class:`Session` and
:class:`Sampler` (the library releases the GIL while it computes). A session used by two
threads at once refuses the second call with status BUSY.
"""

from __future__ import annotations

import array
import ctypes
import enum
import math
import numbers
import operator
import os
import sys
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
)

from . import _ffi

if TYPE_CHECKING:
    import numpy
    import numpy.typing

    #: What :meth:`Session.logits` returns: a float32 numpy array of n_vocab values when
    #: numpy is there (the default), else an ``array('f')``.
    Logits = Union[numpy.typing.NDArray[numpy.float32], "array.array[float]"]
    #: What :meth:`Session.eval_all_logits` returns: a (tokens, n_vocab) float32 numpy array,
    #: else a list of ``array('f')`` rows.
    LogitsRows = Union[numpy.typing.NDArray[numpy.float32], List["array.array[float]"]]

__all__ = [
    "ABI_VERSION",
    "MAX_CTX",
    "MAX_THREADS",
    "Model",
    "ModelInfo",
    "MoelaError",
    "MoelaValueError",
    "Sampler",
    "Session",
    "SpecStats",
    "Status",
    "abi_version",
    "generate",
    "get_n_threads",
    "set_logits_type",
    "set_n_threads",
    "version",
]

ABI_VERSION = _ffi.ABI_VERSION
#: The most worker threads :func:`set_n_threads` accepts (MOELA_MAX_THREADS).
MAX_THREADS = _ffi.MAX_THREADS

_lib: Optional[ctypes.CDLL] = None

#: "auto", "numpy" or "array": see :func:`set_logits_type`.
_logits_type = "auto"
#: numpy once imported for logits; False when it cannot be imported; None before trying.
_numpy_module: Any = None


def set_logits_type(kind: str) -> None:
    """Chooses what :meth:`Session.logits` and :meth:`Session.eval_all_logits` return:
    ``"auto"`` (the default): float32 ``numpy.ndarray`` when numpy can be imported, else
    ``array.array('f')`` (a list of them from eval_all_logits); ``"numpy"``: always numpy
    (ImportError now when numpy cannot be imported); ``"array"``: always ``array('f')``, as
    the package returned before numpy support, whether numpy is installed or not."""
    global _logits_type
    if not isinstance(kind, str):
        raise TypeError(f"set_logits_type: kind must be a str, not {_type_name(kind)}")
    if kind not in ("auto", "numpy", "array"):
        raise MoelaValueError(
            Status.INVALID_ARG,
            f"set_logits_type: kind is {kind!r}: must be one of 'auto', 'numpy', 'array'",
        )
    if kind == "numpy" and _import_numpy() is None:
        raise ImportError("set_logits_type('numpy'): numpy cannot be imported (pip install numpy)")
    _logits_type = kind


def _import_numpy() -> Any:
    global _numpy_module
    if _numpy_module is None:
        try:
            import numpy
        except ImportError:
            _numpy_module = False
        else:
            _numpy_module = numpy
    return _numpy_module or None


def _logits_numpy() -> Any:
    """numpy when logits are to be numpy arrays, else None."""
    return None if _logits_type == "array" else _import_numpy()


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
    #: A saved session state of another model or KV cache type.
    STATE_MISMATCH = 14


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


class MoelaValueError(MoelaError, ValueError):
    """An argument with a value outside its range: a :class:`MoelaError` (status INVALID_ARG,
    TOKEN_OUT_OF_RANGE or INVALID_UTF8) that is also a :class:`ValueError`. Raised by this
    package before the library is called (an integer outside its C type or its documented
    range, a string with a NUL, an unknown name) and for the library's own refusals with
    those statuses. The message names the parameter, its value and the accepted range."""


#: Statuses that mean "a bad argument value": raised as MoelaValueError.
_VALUE_STATUSES = (Status.INVALID_ARG, Status.TOKEN_OUT_OF_RANGE, Status.INVALID_UTF8)


def _error(status: int, message: str) -> MoelaError:
    cls = MoelaValueError if status in _VALUE_STATUSES else MoelaError
    return cls(status, message)


def _check(status: int) -> None:
    if status != Status.OK:
        msg = _l().moela_last_error()
        raise _error(status, msg.decode("utf-8", "replace") if msg else "")


# --- The validation layer: every argument is checked here before it reaches ctypes, which
# would otherwise wrap integers into their C type, cut strings at a NUL and raise
# AttributeError or ctypes.ArgumentError for wrong types.

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
#: The longest context a session can have (moela_session_params.n_ctx).
MAX_CTX = 1 << 24


def _type_name(value: object) -> str:
    return type(value).__name__


def _int(
    where: str,
    name: str,
    value: object,
    lo: int,
    hi: int,
    note: str = "",
    status: int = Status.INVALID_ARG,
) -> int:
    """``value`` as an int in lo ..= hi: TypeError for a non-integer (a bool or float too),
    MoelaValueError naming ``name`` outside the range."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{where}: {name} must be an int, not {_type_name(value)}")
    v = operator.index(value)  # type: ignore[arg-type]
    if not lo <= v <= hi:
        raise _error(status, f"{where}: {name} is {v}: must be {lo} ..= {hi}{note}")
    return v


def _float(where: str, name: str, value: object) -> float:
    """``value`` as a float that a C float can hold (the library checks the range)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a float, not {_type_name(value)}")
    v = float(value)
    if math.isfinite(v) and not math.isfinite(ctypes.c_float(v).value):
        raise MoelaValueError(
            Status.INVALID_ARG, f"{where}: {name} is {v!r}: too large for a C float"
        )
    return v


def _bool(where: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a bool, not {_type_name(value)}")
    return value


def _encode(where: str, name: str, value: object, nul_ok: bool = False) -> bytes:
    """The UTF-8 bytes of a str argument: TypeError for anything else (bytes included),
    MoelaValueError for lone surrogates and, unless ``nul_ok`` (the C function takes a
    length), for a NUL, which the C side would take as the end of the string."""
    if not isinstance(value, str):
        hint = " (decode it first)" if isinstance(value, (bytes, bytearray)) else ""
        raise TypeError(f"{where}: {name} must be a str, not {_type_name(value)}{hint}")
    if not nul_ok and "\0" in value:
        raise MoelaValueError(
            Status.INVALID_ARG,
            f"{where}: {name} contains a NUL character at index {value.index(chr(0))}; "
            "the library takes NUL-terminated strings",
        )
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MoelaValueError(
            Status.INVALID_UTF8, f"{where}: {name} is not encodable as UTF-8 ({e.reason})"
        ) from None


def _path(where: str, name: str, value: object) -> bytes:
    """A file-system path (str, bytes or os.PathLike) as the bytes the C side gets."""
    try:
        raw = os.fspath(cast(Any, value))
    except TypeError:
        raise TypeError(
            f"{where}: {name} must be a str, bytes or os.PathLike, not {_type_name(value)}"
        ) from None
    data = os.fsencode(raw)
    if b"\0" in data:
        raise MoelaValueError(
            Status.INVALID_ARG,
            f"{where}: {name} contains a NUL byte at index {data.index(0)}; "
            "the library takes NUL-terminated paths",
        )
    return data


def _u32_array(where: str, name: str, tokens: object) -> "ctypes.Array[ctypes.c_uint32]":
    """Token ids (any iterable of ints, not a str or bytes) as a uint32 array."""
    if isinstance(tokens, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"{where}: {name} must be a sequence of int token ids, not {_type_name(tokens)}"
        )
    try:
        ids = list(tokens)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"{where}: {name} must be a sequence of int token ids, not {_type_name(tokens)}"
        ) from None
    out = (ctypes.c_uint32 * len(ids))()
    for i, t in enumerate(ids):
        out[i] = _int(
            where,
            f"{name}[{i}]",
            t,
            0,
            _U32_MAX,
            " (a token id, below the vocabulary size)",
            Status.TOKEN_OUT_OF_RANGE,
        )
    return out


def _max_tokens(where: str, value: object) -> int:
    return _int(where, "max_tokens", value, 0, _U32_MAX, " (0 = only evaluate the prompt)")


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    v: bytes = _l().moela_version()
    return v.decode()


def abi_version() -> int:
    """The library's ABI version (equal to :data:`ABI_VERSION` once loaded)."""
    return int(_l().moela_abi_version())


def set_n_threads(n_threads: int) -> None:
    """Sets the size of the process-wide worker pool: ``n_threads`` is an int in
    1 ..= :data:`MAX_THREADS` (512); only before the first evaluation. A value outside the
    range raises :class:`MoelaValueError` (INVALID_ARG) before anything reaches the library,
    a non-int TypeError, a second call once the pool exists :class:`MoelaError`."""
    n = _int("moela_set_n_threads", "n_threads", n_threads, 1, MAX_THREADS)
    _check(_l().moela_set_n_threads(n))


def get_n_threads() -> int:
    """The size of the process-wide worker pool."""
    return int(_l().moela_get_n_threads())


_S = TypeVar("_S", bound=ctypes.Structure)


def _defaults(struct: Type[_S], fn: str) -> _S:
    p = struct()
    _check(getattr(_l(), fn)(ctypes.byref(p), ctypes.sizeof(p)))
    return p


def _read_sized(call) -> bytes:  # type: ignore[no-untyped-def]
    """Runs a C function that fills (buf, size, &n) and reports the needed size."""
    n = ctypes.c_size_t(0)
    st = call(None, 0, ctypes.byref(n))
    if st != Status.BUFFER_TOO_SMALL:
        _check(st)
    buf = ctypes.create_string_buffer(n.value + 1)
    _check(call(buf, len(buf), ctypes.byref(n)))
    return buf.raw[: n.value]


class _ModelHandle:
    """The library's model handle, freed when nothing holds it any more: the :class:`Model`
    until its :meth:`~Model.close`, and each :class:`Session` made from it until its own
    close (sessions tokenize and detokenize through it)."""

    __slots__ = ("ptr",)

    def __init__(self) -> None:
        self.ptr = ctypes.c_void_p()

    def __del__(self) -> None:
        if self.ptr and _lib is not None:
            _lib.moela_model_free(self.ptr)
            self.ptr = ctypes.c_void_p()


def _tokenize(
    h: ctypes.c_void_p, where: str, name: str, text: object, add_bos: object, parse_special: object
) -> List[int]:
    # The C function takes a length: a NUL is an ordinary character here.
    data = _encode(where, name, text, nul_ok=True)
    flags = (_ffi.TOKENIZE_ADD_BOS if _bool(where, "add_bos", add_bos) else 0) | (
        _ffi.TOKENIZE_PARSE_SPECIAL if _bool(where, "parse_special", parse_special) else 0
    )
    n = ctypes.c_size_t(0)
    st = _l().moela_tokenize(h, data, len(data), flags, None, 0, ctypes.byref(n))
    if st != Status.BUFFER_TOO_SMALL:
        _check(st)
        return []
    out = (ctypes.c_uint32 * n.value)()
    _check(_l().moela_tokenize(h, data, len(data), flags, out, n.value, ctypes.byref(n)))
    return list(out)


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
    #: The model has a multi-token-prediction module (``spec="mtp"`` works).
    has_mtp: bool


class Model:
    """A loaded model (a ``.gguf`` file or a Hugging Face directory). Immutable; share it
    between threads and sessions. Freed by :meth:`close`, ``with``, or garbage collection."""

    def __init__(
        self,
        path: Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"],
        expert_budget_bytes: Union[int, str, None] = None,
        prefetch: bool = True,
        keep_file_layout: bool = False,
        page_cache: bool = True,
    ) -> None:
        """``path``: a str, bytes or os.PathLike without NUL characters.
        ``expert_budget_bytes``: memory for routed experts, an int in 0 ..= 2**64 - 1 (None or
        2**64 - 1: unlimited, every expert stays in the file mapping; 0 streams each through
        one slot), or ``"auto"`` (no budget when the model fits in 3/4 of the memory
        available, else what is left of that beside the other weights); the logits are the
        same at every budget. ``prefetch`` (bool): with a
        budget, read the next layers' predicted experts ahead. ``keep_file_layout`` (bool):
        keep every weight in the file mapping as the file lays it out (by default, on CPUs
        whose kernels are faster on it, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS weights are
        interleaved into memory at load). ``page_cache`` (bool): with a budget, run a missed expert that the page
        cache holds straight from the file mapping (its pages counted against the budget) instead of
        reading it into the budget's slots.

        Raises TypeError for a wrong type, :class:`MoelaValueError` for a value out of range or
        a NUL in the path, :class:`MoelaError` when the library cannot load the model."""
        self._mh: Optional[_ModelHandle] = None
        where = "Model"
        data = _path(where, "path", path)
        params = _defaults(_ffi.ModelParams, "moela_model_default_params")
        if isinstance(expert_budget_bytes, str):
            if expert_budget_bytes != "auto":
                raise MoelaValueError(
                    Status.INVALID_ARG,
                    f'{where}: expert_budget_bytes must be an int, None or "auto", '
                    f"not {expert_budget_bytes!r}",
                )
            params.expert_budget_bytes = _U64_MAX - 1
        elif expert_budget_bytes is not None:
            params.expert_budget_bytes = _int(
                where,
                "expert_budget_bytes",
                expert_budget_bytes,
                0,
                _U64_MAX,
                " (None or 2**64 - 1 = unlimited)",
            )
        if not _bool(where, "prefetch", prefetch):
            params.flags |= _ffi.MODEL_NO_PREFETCH
        if _bool(where, "keep_file_layout", keep_file_layout):
            params.flags |= _ffi.MODEL_KEEP_FILE_LAYOUT
        if not _bool(where, "page_cache", page_cache):
            params.flags |= _ffi.MODEL_EXPERTS_NO_PAGE_CACHE
        mh = _ModelHandle()
        _check(_l().moela_model_load(data, ctypes.byref(params), ctypes.byref(mh.ptr)))
        self._mh = mh
        self.info: ModelInfo = self._read_info()

    def _handle(self) -> ctypes.c_void_p:
        mh: Optional[_ModelHandle] = getattr(self, "_mh", None)
        if mh is None or not mh.ptr:
            raise MoelaError(Status.NULL_ARG, "the model is closed")
        return mh.ptr

    def close(self) -> None:
        """Closes the model: its own methods raise :class:`MoelaError` afterwards and new
        sessions cannot be made from it. Sessions made from it keep working, text generation
        included; the library frees the model when the last of them is closed too."""
        self._mh = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            has_mtp=bool(i.flags & _ffi.MODEL_INFO_HAS_MTP),
        )

    @property
    def n_vocab(self) -> int:
        return self.info.n_vocab

    def expert_cache_stats(self) -> Dict[str, int]:
        """The routed-expert cache counters (moela_expert_cache_stats) as a dict."""
        s = _ffi.ExpertCacheStats()
        _check(
            _l().moela_model_expert_cache_stats(self._handle(), ctypes.byref(s), ctypes.sizeof(s))
        )
        names = [f[0] for f in s._fields_]
        return {name: int(getattr(s, name)) for name in names if name != "struct_size"}

    def tokenize(self, text: str, add_bos: bool = False, parse_special: bool = False) -> List[int]:
        """Text (a str; NUL characters are ordinary text here) to token ids. ``add_bos``
        (bool) puts the model's BOS first; ``parse_special`` (bool) recognises special tokens
        written in the text (leave it off for user input)."""
        return _tokenize(self._handle(), "Model.tokenize", "text", text, add_bos, parse_special)

    def token_to_bytes(self, token: int) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character); ``token`` is an int
        in 0 ..= n_vocab - 1 (outside it :class:`MoelaValueError`, TOKEN_OUT_OF_RANGE)."""
        t = _int(
            "Model.token_to_bytes",
            "token",
            token,
            0,
            _U32_MAX,
            " (a token id, below the vocabulary size)",
            Status.TOKEN_OUT_OF_RANGE,
        )
        h = self._handle()
        return _read_sized(lambda buf, size, n: _l().moela_token_to_piece(h, t, buf, size, n))

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Token ids (ints in 0 ..= n_vocab - 1) to text (invalid UTF-8 becomes U+FFFD)."""
        ids = _u32_array("Model.detokenize", "tokens", tokens)
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
        any other raises :class:`MoelaValueError` (INVALID_ARG) naming it. Roles and contents
        are str without NUL characters (a NUL raises :class:`MoelaValueError` naming the
        message); anything else is a TypeError."""
        where = "Model.apply_chat_template"
        if isinstance(messages, (str, bytes, bytearray)) or not isinstance(messages, Iterable):
            raise TypeError(
                f"{where}: messages must be a sequence of messages, not {_type_name(messages)}"
            )
        keep = []
        for i, m in enumerate(messages):
            if isinstance(m, Mapping):
                if "role" not in m or "content" not in m:
                    raise TypeError(f"{where}: messages[{i}] has no 'role' or no 'content'")
                role, content = m["role"], m["content"]
                names = (f"messages[{i}]['role']", f"messages[{i}]['content']")
            elif isinstance(m, (tuple, list)) and len(m) == 2:
                role, content = m
                names = (f"messages[{i}][0] (role)", f"messages[{i}][1] (content)")
            else:
                raise TypeError(
                    f"{where}: messages[{i}] must be a mapping with 'role' and 'content' or a "
                    f"(role, content) pair, not {_type_name(m)}"
                )
            keep.append((_encode(where, names[0], role), _encode(where, names[1], content)))
        flags = (
            _ffi.CHAT_ADD_GENERATION_PROMPT
            if _bool(where, "add_generation_prompt", add_generation_prompt)
            else 0
        )
        arr = (_ffi.ChatMessage * len(keep))(*[_ffi.ChatMessage(r, c) for r, c in keep])
        h = self._handle()
        raw = _read_sized(
            lambda buf, size, n: _l().moela_chat_apply_template(h, arr, len(keep), flags, buf, size, n)
        )
        return raw.decode("utf-8")


class Sampler:
    """Chooses tokens: greedy when ``temperature`` is 0, else seeded sampling with top-k,
    top-p and min-p. Parameters left as None keep the library's defaults (temperature 0.8,
    top_k 40, top_p 0.95, min_p 0.05, as the CLI; :meth:`greedy` and the generate functions
    without a sampler are greedy).

    Ranges: ``temperature`` finite float >= 0 (0 = greedy); ``top_k`` int in 0 ..= 2**32 - 1
    (0 = all tokens); ``top_p`` float in (0, 1] (1 = off); ``min_p`` float in [0, 1] (0 = off);
    ``repeat_penalty`` finite float > 0 (1 = off); ``seed`` int in 0 ..= 2**64 - 1. A value
    outside its range raises :class:`MoelaValueError` (INVALID_ARG) stating the range (the
    integers are checked here, the floats by the library: moela_sampler_new), a value of
    the wrong type TypeError. Use from one thread at a time.

    Constrained decoding: ``json_schema`` (a JSON Schema as a str of JSON, or a dict) or
    ``grammar`` (a str; ``grammar_syntax`` "gbnf" — llama.cpp's GBNF, the default —, "lark"
    — llguidance's Lark dialect — or "regex") limits every token to those the schema or
    grammar allows, and generation stops when the output is complete. Both need ``model``,
    the :class:`Model` whose tokens are sampled (see :meth:`set_json_schema`,
    :meth:`set_grammar`). A schema or grammar that does not parse raises
    :class:`MoelaError` (INVALID_ARG) with the reason."""

    def __init__(
        self,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repeat_penalty: Optional[float] = None,
        seed: Optional[int] = None,
        *,
        json_schema: Union[str, Mapping[str, object], None] = None,
        grammar: Optional[str] = None,
        grammar_syntax: str = "gbnf",
        model: Optional["Model"] = None,
    ) -> None:
        self._h = ctypes.c_void_p()
        where = "Sampler"
        p = _defaults(_ffi.SamplingParams, "moela_sampling_default_params")
        for name, value in [
            ("temperature", temperature),
            ("top_p", top_p),
            ("min_p", min_p),
            ("repeat_penalty", repeat_penalty),
        ]:
            if value is not None:
                setattr(p, name, _float(where, name, value))
        if top_k is not None:
            p.top_k = _int(where, "top_k", top_k, 0, _U32_MAX, " (0 = all tokens)")
        if seed is not None:
            p.seed = _int(where, "seed", seed, 0, _U64_MAX)
        if json_schema is not None and grammar is not None:
            raise MoelaValueError(
                Status.INVALID_ARG, f"{where}: give json_schema or grammar, not both"
            )
        if (json_schema is not None or grammar is not None) and model is None:
            raise MoelaValueError(
                Status.INVALID_ARG,
                f"{where}: json_schema and grammar need model= (the Model whose tokens are sampled)",
            )
        _check(_l().moela_sampler_new(ctypes.byref(p), ctypes.byref(self._h)))
        if json_schema is not None:
            self.set_json_schema(model, json_schema)  # type: ignore[arg-type]
        elif grammar is not None:
            self.set_grammar(model, grammar, grammar_syntax)  # type: ignore[arg-type]

    @classmethod
    def greedy(cls) -> "Sampler":
        return cls(temperature=0.0)

    def set_json_schema(self, model: "Model", schema: Union[str, Mapping[str, object]]) -> None:
        """Constrains the output to JSON that validates against ``schema`` (a str of JSON or
        a dict), for ``model``'s vocabulary (moela_sampler_set_json_schema). Replaces an
        earlier constraint; on error the earlier one stays."""
        where = "Sampler.set_json_schema"
        if isinstance(schema, Mapping):
            import json

            schema = json.dumps(schema)
        data = _encode(where, "schema", schema)
        if not isinstance(model, Model):
            raise TypeError(f"{where}: model must be a moela.Model, not {_type_name(model)}")
        _check(_l().moela_sampler_set_json_schema(self._handle(), model._handle(), data))

    def set_grammar(self, model: "Model", grammar: str, syntax: str = "gbnf") -> None:
        """Constrains the output to ``grammar`` in ``syntax``: "gbnf" (llama.cpp's GBNF,
        ``root ::= ...``), "lark" (llguidance's Lark dialect, ``start: ...``), "regex" or
        "json_schema" (moela_sampler_set_grammar). Replaces an earlier constraint; on error
        the earlier one stays."""
        where = "Sampler.set_grammar"
        text = _encode(where, "grammar", grammar)
        syn = _encode(where, "syntax", syntax)
        if not isinstance(model, Model):
            raise TypeError(f"{where}: model must be a moela.Model, not {_type_name(model)}")
        _check(_l().moela_sampler_set_grammar(self._handle(), model._handle(), syn, text))

    def clear_constraint(self) -> None:
        """Removes the JSON schema or grammar constraint (no-op without one)."""
        _check(_l().moela_sampler_clear_constraint(self._handle()))

    @property
    def finished(self) -> bool:
        """Whether the constrained output is complete (always False without a constraint)."""
        out = ctypes.c_int32(0)
        _check(_l().moela_sampler_is_finished(self._handle(), ctypes.byref(out)))
        return bool(out.value)

    def _handle(self) -> ctypes.c_void_p:
        h: Optional[ctypes.c_void_p] = getattr(self, "_h", None)
        if not h:
            raise MoelaError(Status.NULL_ARG, "the sampler is closed")
        return h

    def reset(self) -> None:
        """Restarts the random stream from the seed, and the constraint (if any) from the
        start of its grammar."""
        _check(_l().moela_sampler_reset(self._handle()))

    def sample_logits(
        self, logits: Union["Logits", Sequence[float]], history: Sequence[int] = ()
    ) -> int:
        """Chooses from the given logits (a non-empty sequence of floats: a one-dimensional
        numpy array of a real dtype and ``array('f')``, as :meth:`Session.logits` returns
        them, are passed without a copy per value); ``history`` (token ids, ints in
        0 ..= 2**32 - 1) feeds the repetition penalty."""
        where = "Sampler.sample_logits"
        if isinstance(logits, (str, bytes, bytearray)):
            raise TypeError(f"{where}: logits must be a sequence of floats, not {_type_name(logits)}")
        np = sys.modules.get("numpy")  # an ndarray means numpy is imported already
        keep: object = None  # what lg points into, alive for the call
        if np is not None and isinstance(logits, np.ndarray):
            if logits.ndim != 1 or logits.dtype.kind not in "iuf":
                raise TypeError(
                    f"{where}: logits must be a one-dimensional array of real numbers, not an "
                    f"array of shape {logits.shape} and dtype {logits.dtype}"
                )
            keep = np.ascontiguousarray(logits, dtype=np.float32)
            n = int(keep.size)  # type: ignore[attr-defined]
            lg: Any = keep.ctypes.data_as(_ffi.c_float_p)  # type: ignore[attr-defined]
        elif isinstance(logits, array.array) and logits.typecode == "f":
            n = len(logits)
            keep = logits
            lg = ctypes.cast(logits.buffer_info()[0], _ffi.c_float_p)
        else:
            try:
                values = list(logits)
                lg = (ctypes.c_float * len(values))(*values)
            except TypeError:
                raise TypeError(f"{where}: logits must be a sequence of floats") from None
            n = len(values)
        hist = _u32_array(where, "history", history)
        out = ctypes.c_uint32()
        _check(
            _l().moela_sample_logits(
                self._handle(), lg, n, hist if len(hist) else None, len(hist), ctypes.byref(out)
            )
        )
        del keep
        return out.value

    def close(self) -> None:
        """Frees the sampler now; its methods raise :class:`MoelaError` afterwards."""
        h = getattr(self, "_h", None)
        if h and _lib is not None:
            _lib.moela_sampler_free(h)
        self._h = ctypes.c_void_p()

    def __enter__(self) -> "Sampler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


@dataclass(frozen=True)
class SpecStats:
    """Speculative decoding's counters on a session (moela_spec_stats): sums over its
    generate calls with ``spec`` since it was made or reset (:meth:`Session.spec_stats`)."""

    #: The mode of the last speculative generate call: "lookup" or "mtp" ("off" before any).
    spec: str
    #: Verification passes (one batched evaluation each).
    passes: int
    #: Draft tokens proposed.
    drafted: int
    #: Draft tokens accepted (at most ``drafted``).
    accepted: int
    #: Tokens the passes produced (``passes + accepted``, plus one for a token sampled at a
    #: full context; those past a stop are counted too).
    emitted: int

    @property
    def acceptance_rate(self) -> float:
        """``accepted / drafted`` (0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        """``emitted / passes`` (0 before the first pass)."""
        return self.emitted / self.passes if self.passes else 0.0


def _spec(where: str, model: "Model", spec: object, draft: object) -> Tuple[int, int]:
    """``spec`` (None, "off", "lookup" or "mtp") and ``draft`` as (MOELA_SPEC_*, max_draft):
    checked here, before any generation, as the library would."""
    d = _int(where, "draft", draft, 1, _ffi.SPEC_MAX_DRAFT)
    if spec is None:
        return _ffi.SPEC_MODES["off"], d
    if not isinstance(spec, str):
        raise TypeError(f"{where}: spec must be a str or None, not {_type_name(spec)}")
    if spec not in _ffi.SPEC_MODES:
        raise MoelaValueError(
            Status.INVALID_ARG,
            f"{where}: spec is {spec!r}: must be None, "
            + ", ".join(repr(k) for k in _ffi.SPEC_MODES),
        )
    if spec == "mtp" and not model.info.has_mtp:
        raise MoelaError(
            Status.UNSUPPORTED,
            f"{where}: spec is 'mtp' but this model has no multi-token-prediction (MTP) "
            "module (Model.info.has_mtp); use 'lookup' or None",
        )
    return _ffi.SPEC_MODES[spec], d


def _sampler(where: str, sampler: object, optional: bool) -> "Sampler":
    if sampler is None and optional:
        return Sampler.greedy()
    if not isinstance(sampler, Sampler):
        want = "a moela.Sampler or None" if optional else "a moela.Sampler"
        raise TypeError(f"{where}: sampler must be {want}, not {_type_name(sampler)}")
    return sampler


class Session:
    """One sequence on a model: its KV cache, position and logits. Use it from one thread at
    a time: a call that finds it in use by another thread raises :class:`MoelaError` with
    status BUSY and changes nothing. Freed by :meth:`close`, ``with``, or garbage collection;
    it keeps working after its model's :meth:`Model.close`."""

    def __init__(
        self,
        model: Model,
        n_ctx: int = 0,
        kv_type: str = "f32",
        attn_path: str = "auto",
        expert_min_weight: float = 0.0,
        expert_top_k: int = 0,
    ) -> None:
        """``model``: a :class:`Model` (not closed). ``n_ctx``: the context length, an int in
        0 ..= 2**24 (0 = the model's trained context, at most 4096). ``kv_type``: "f32" or
        "f16". ``attn_path``: "auto", "expanded" or "absorbed". Run-time expert skipping
        (docs/PRUNING.md): ``expert_min_weight`` in [0, 1) drops a chosen routed expert whose
        normalised gate weight is below it (0 = off); ``expert_top_k`` uses only the first
        1 ..= top-k experts the router chooses (0 = the model's top-k)."""
        self._h = ctypes.c_void_p()
        self._mh: Optional[_ModelHandle] = None
        where = "Session"
        if not isinstance(model, Model):
            raise TypeError(f"{where}: model must be a moela.Model, not {_type_name(model)}")
        p = _defaults(_ffi.SessionParams, "moela_session_default_params")
        p.n_ctx = _int(
            where, "n_ctx", n_ctx, 0, MAX_CTX, " (0 = the model's trained context, at most 4096)"
        )
        p.expert_min_weight = _float(where, "expert_min_weight", expert_min_weight)
        p.expert_top_k = _int(
            where, "expert_top_k", expert_top_k, 0, 2**32 - 1, " (0 = the model's top-k)"
        )
        for field, value, table in [
            ("kv_type", kv_type, _ffi.KV_TYPES),
            ("attn_path", attn_path, _ffi.ATTN_PATHS),
        ]:
            if not isinstance(value, str):
                raise TypeError(f"{where}: {field} must be a str, not {_type_name(value)}")
            if value not in table:
                raise MoelaValueError(
                    Status.INVALID_ARG,
                    f"{where}: {field} is {value!r}: must be one of "
                    + ", ".join(repr(k) for k in table),
                )
            setattr(p, field, table[value])
        mh = model._mh
        _check(_l().moela_session_new(model._handle(), ctypes.byref(p), ctypes.byref(self._h)))
        self.model = model
        # The model's handle, kept for tokenizing and detokenizing after the model is closed.
        self._mh = mh
        self._n_vocab = model.n_vocab

    def _handle(self) -> ctypes.c_void_p:
        h: Optional[ctypes.c_void_p] = getattr(self, "_h", None)
        if not h:
            raise MoelaError(Status.NULL_ARG, "the session is closed")
        return h

    def close(self) -> None:
        """Frees the session now; its methods raise :class:`MoelaError` afterwards."""
        h = getattr(self, "_h", None)
        if h and _lib is not None:
            _lib.moela_session_free(h)
        self._h = ctypes.c_void_p()
        self._mh = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluates a batch of token ids (a non-empty sequence of ints in
        0 ..= n_vocab - 1) after those already in the session."""
        ids = _u32_array("Session.eval", "tokens", tokens)
        _check(_l().moela_session_eval(self._handle(), ids, len(ids)))

    def eval_all_logits(self, tokens: Sequence[int]) -> "LogitsRows":
        """Evaluates a batch (as :meth:`eval`) and returns the logits after each of its
        tokens: a float32 numpy array of shape (len(tokens), n_vocab) when numpy is there,
        else a list of ``array('f')`` rows (:func:`set_logits_type`)."""
        ids = _u32_array("Session.eval_all_logits", "tokens", tokens)
        h = self._handle()
        v = self._n_vocab
        np = _logits_numpy()
        if np is not None:
            rows = np.empty((len(ids), v), dtype=np.float32)
            ptr = rows.ctypes.data_as(_ffi.c_float_p)
            _check(_l().moela_session_eval_all_logits(h, ids, len(ids), ptr, rows.size, None))
            return rows  # type: ignore[no-any-return]
        out = (ctypes.c_float * (len(ids) * v))()
        _check(_l().moela_session_eval_all_logits(h, ids, len(ids), out, len(out), None))
        flat = array.array("f", bytes(out))
        return [flat[i * v : (i + 1) * v] for i in range(len(ids))]

    def logits(self) -> "Logits":
        """The logits after the last evaluated token, n_vocab floats: a float32 numpy array
        when numpy is there, else ``array('f')`` (:func:`set_logits_type`). A new array each
        call, owned by the caller."""
        h = self._handle()
        np = _logits_numpy()
        if np is not None:
            row = np.empty(self._n_vocab, dtype=np.float32)
            _check(_l().moela_session_logits(h, row.ctypes.data_as(_ffi.c_float_p), row.size, None))
            return row  # type: ignore[no-any-return]
        out = (ctypes.c_float * self._n_vocab)()
        _check(_l().moela_session_logits(h, out, len(out), None))
        return array.array("f", bytes(out))

    def save(self, path: Union[str, bytes, "os.PathLike[str]"]) -> None:
        """Saves the session (its tokens, latent KV cache and last logits) to the file
        ``path``, replaced atomically (moela_session_save). :meth:`load` in a session of the
        same model and ``kv_type`` continues exactly where this one is."""
        data = _path("Session.save", "path", path)
        _check(_l().moela_session_save(self._handle(), data))

    def load(self, path: Union[str, bytes, "os.PathLike[str]"]) -> None:
        """Replaces the session's sequence with the state saved in the file ``path``
        (moela_session_load). Raises :class:`MoelaError` with status STATE_MISMATCH (another
        model or kv_type), CONTEXT_FULL (n_ctx shorter than the saved tokens), BAD_FORMAT
        (not a state, truncated or corrupt) or IO; the session is then unchanged."""
        data = _path("Session.load", "path", path)
        _check(_l().moela_session_load(self._handle(), data))

    def save_bytes(self) -> bytes:
        """The session's state as bytes (moela_session_save_buffer): what :meth:`save`
        writes."""
        h = self._handle()
        n = ctypes.c_size_t(0)
        st = _l().moela_session_save_buffer(h, None, 0, ctypes.byref(n))
        if st != Status.BUFFER_TOO_SMALL:
            _check(st)
        buf = ctypes.create_string_buffer(n.value)
        _check(_l().moela_session_save_buffer(h, buf, n.value, ctypes.byref(n)))
        return buf.raw[: n.value]

    def load_bytes(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Loads a state from bytes that :meth:`save_bytes` (or :meth:`save`) wrote; the same
        errors as :meth:`load`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"Session.load_bytes: data must be bytes-like, not {_type_name(data)}"
            )
        raw = bytes(data)
        _check(_l().moela_session_load_buffer(self._handle(), raw, len(raw)))

    def reset(self) -> None:
        """Forgets the sequence (keeps the allocated cache)."""
        _check(_l().moela_session_reset(self._handle()))

    @property
    def position(self) -> int:
        """Tokens in the session."""
        v = ctypes.c_uint32()
        _check(_l().moela_session_position(self._handle(), ctypes.byref(v)))
        return v.value

    @property
    def n_ctx(self) -> int:
        """The most tokens the session can hold."""
        v = ctypes.c_uint32()
        _check(_l().moela_session_n_ctx(self._handle(), ctypes.byref(v)))
        return v.value

    def spec_stats(self) -> SpecStats:
        """Speculative decoding's counters (:class:`SpecStats`) since the session was made or
        last reset."""
        st = _ffi.SpecStats()
        _check(_l().moela_session_spec_stats(self._handle(), ctypes.byref(st), ctypes.sizeof(st)))
        names = {v: k for k, v in _ffi.SPEC_MODES.items()}
        return SpecStats(
            spec=names.get(st.spec_mode, str(st.spec_mode)),
            passes=st.passes,
            drafted=st.drafted,
            accepted=st.accepted,
            emitted=st.emitted,
        )

    def sample(self, sampler: Sampler) -> int:
        """Chooses the next token from the last logits with ``sampler`` (a :class:`Sampler`)."""
        smp = _sampler("Session.sample", sampler, optional=False)
        out = ctypes.c_uint32()
        _check(_l().moela_sample(self._handle(), smp._handle(), ctypes.byref(out)))
        return out.value

    def generate_tokens(
        self,
        prompt: Sequence[int],
        max_tokens: int = 128,
        sampler: Optional[Sampler] = None,
        ignore_eos: bool = False,
        spec: Optional[str] = None,
        draft: int = 4,
    ) -> Iterator[int]:
        """Evaluates ``prompt`` (token ids; may be empty to continue), then yields up to
        ``max_tokens`` (an int in 0 ..= 2**32 - 1; 0 only evaluates the prompt) sampled ids,
        each evaluated before the next is chosen, ending after the model's EOS unless
        ``ignore_eos``. The same rules as ``moela_generate_tokens``: a token whose consumer
        stopped iterating is not evaluated. Greedy when ``sampler`` is None. The arguments
        are checked when this is called, before the first ``next()``.

        ``spec``: speculative decoding, None (off, the default), "lookup" (drafts copied from
        earlier text that continues the last 1-3 tokens; any model) or "mtp" (drafts from the
        model's multi-token-prediction module: :attr:`ModelInfo.has_mtp`; otherwise
        :class:`MoelaError` UNSUPPORTED); ``draft``: the most draft tokens per verification
        pass, an int in 1 ..= 64. The tokens are the same as without (greedy: token for
        token; sampling: the same distribution); not with a constrained sampler (INVALID_ARG
        from the library). Tokens then come a verification pass at a time (at most
        ``draft + 1`` per call into the library), so a consumer that stops iterating may
        leave up to ``draft`` tokens after the last it took evaluated in the session.
        Counters: :meth:`spec_stats`."""
        where = "Session.generate_tokens"
        ids = _u32_array(where, "prompt", prompt)
        n = _max_tokens(where, max_tokens)
        smp = _sampler(where, sampler, optional=True)
        ign = _bool(where, "ignore_eos", ignore_eos)
        eos = None if ign else self.model.info.eos_token
        mode, d = _spec(where, self.model, spec, draft)
        self._handle()
        if mode:
            return self._generate_spec(ids, n, smp, eos, ign, mode, d)
        return self._generate_tokens(ids, n, smp, eos)

    def _generate_spec(
        self,
        ids: "ctypes.Array[ctypes.c_uint32]",
        n: int,
        smp: Sampler,
        eos: Optional[int],
        ignore_eos: bool,
        mode: int,
        draft: int,
    ) -> Iterator[int]:
        """Speculative generation through moela_generate_tokens, a pass's worth at a time
        (a generator cannot yield from inside the library's callback). A new call samples
        afresh where the last stopped, which leaves the output's distribution unchanged."""
        p = _defaults(_ffi.GenerateParams, "moela_generate_default_params")
        p.spec_mode = mode
        p.max_draft = draft
        p.flags = _ffi.GENERATE_IGNORE_EOS if ignore_eos else 0
        buf: List[int] = []

        def collect(token: int, _user_data: object) -> int:
            buf.append(token)
            return 0

        cb = _ffi.TOKEN_CALLBACK(collect)
        prompt: Optional["ctypes.Array[ctypes.c_uint32]"] = ids if len(ids) else None
        left = n
        if n == 0 and prompt is None:
            return
        while True:
            chunk = min(left, draft + 1)
            p.max_tokens = chunk
            buf.clear()
            _check(
                _l().moela_generate_tokens(
                    self._handle(),
                    smp._handle(),
                    prompt,
                    len(prompt) if prompt is not None else 0,
                    ctypes.byref(p),
                    cb,
                    None,
                )
            )
            prompt = None
            yield from buf
            left -= len(buf)
            # Done at max_tokens, or when the library stopped early (at the EOS).
            if left == 0 or len(buf) < chunk or (buf and buf[-1] == eos):
                return

    def _generate_tokens(
        self, ids: "ctypes.Array[ctypes.c_uint32]", n: int, smp: Sampler, eos: Optional[int]
    ) -> Iterator[int]:
        if len(ids):
            _check(_l().moela_session_eval(self._handle(), ids, len(ids)))
        for _ in range(n):
            tok = self.sample(smp)
            yield tok
            self.eval([tok])
            # EOS, or a JSON schema / grammar constraint whose output is complete.
            if tok == eos or smp.finished:
                return

    def generate(
        self,
        prompt: str,
        max_tokens: int = 128,
        sampler: Optional[Sampler] = None,
        add_bos: bool = False,
        parse_special: bool = False,
        ignore_eos: bool = False,
        spec: Optional[str] = None,
        draft: int = 4,
    ) -> Iterator[str]:
        """Tokenizes ``prompt`` (a str) and yields the generated text in pieces that never
        split a UTF-8 character (the EOS token's text is left out). ``max_tokens``, ``sampler``,
        ``ignore_eos``, ``spec`` and ``draft`` as :meth:`generate_tokens`; ``add_bos`` and ``parse_special`` as
        :meth:`Model.tokenize`. Needs a model with a tokenizer; works after the model's
        :meth:`Model.close`. The arguments are checked when this is called."""
        where = "Session.generate"
        self._handle()
        mh = self._mh
        if mh is None:
            raise MoelaError(Status.NULL_ARG, "the session is closed")
        n = _max_tokens(where, max_tokens)
        smp = _sampler(where, sampler, optional=True)
        ign = _bool(where, "ignore_eos", ignore_eos)
        eos = None if ign else self.model.info.eos_token
        mode, d = _spec(where, self.model, spec, draft)
        text_ids = _tokenize(mh.ptr, where, "prompt", prompt, add_bos, parse_special)
        ids = _u32_array(where, "prompt", text_ids)
        if mode:
            toks = self._generate_spec(ids, n, smp, eos, ign, mode, d)
        else:
            toks = self._generate_tokens(ids, n, smp, eos)
        return self._generate_text(mh, toks, eos)

    def _generate_text(
        self,
        mh: _ModelHandle,
        toks: Iterator[int],
        eos: Optional[int],
    ) -> Iterator[str]:
        detok = _Detokenizer(mh)
        for tok in toks:
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

    def __init__(self, mh: _ModelHandle) -> None:
        self._h = ctypes.c_void_p()
        _check(_l().moela_detokenizer_new(mh.ptr, ctypes.byref(self._h)))

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
    if not isinstance(session, Session):
        raise TypeError(f"generate: session must be a moela.Session, not {_type_name(session)}")
    return session.generate(prompt, **kwargs)  # type: ignore[arg-type]
