"""ctypes declarations of moela.h (kept in step with include/moela.h by the tests) and the
search for the shared library."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

#: The ABI this package speaks (MOELA_ABI_VERSION of the header it mirrors).
ABI_VERSION = 1

c_u32 = ctypes.c_uint32
c_i32 = ctypes.c_int32
c_u64 = ctypes.c_uint64
c_size = ctypes.c_size_t
c_float_p = ctypes.POINTER(ctypes.c_float)
c_u32_p = ctypes.POINTER(c_u32)
c_size_p = ctypes.POINTER(c_size)
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_buf = ctypes.POINTER(ctypes.c_char)  # a writable char buffer, or bytes that may hold NULs
status_t = c_i32


class ModelParams(ctypes.Structure):
    _fields_ = [("struct_size", c_u32), ("flags", c_u32), ("expert_budget_bytes", c_u64)]


class SessionParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_u32),
        ("n_ctx", c_u32),
        ("kv_type", c_u32),
        ("attn_path", c_u32),
        ("expert_min_weight", ctypes.c_float),
        ("expert_top_k", c_u32),
    ]


class SamplingParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_u32),
        ("temperature", ctypes.c_float),
        ("top_k", c_u32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("seed", c_u64),
    ]


class GenerateParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_u32),
        ("max_tokens", c_u32),
        ("flags", c_u32),
        ("spec_mode", c_u32),
        ("max_draft", c_u32),
    ]


class ModelInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_u32),
        ("n_vocab", c_u32),
        ("n_ctx_train", c_u32),
        ("n_layers", c_u32),
        ("n_dense_layers", c_u32),
        ("n_embd", c_u32),
        ("n_heads", c_u32),
        ("kv_lora_rank", c_u32),
        ("n_experts", c_u32),
        ("n_experts_used", c_u32),
        ("n_shared_experts", c_u32),
        ("bos_token", c_i32),
        ("eos_token", c_i32),
        ("flags", c_u32),
        ("n_params", c_u64),
        ("n_params_active", c_u64),
        ("kv_bytes_per_token", c_u64),
        ("architecture", ctypes.c_char * 32),
    ]


class ExpertCacheStats(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_u32),
        ("flags", c_u32),
        ("budget_bytes", c_u64),
        ("routed_expert_bytes", c_u64),
        ("resident_bytes", c_u64),
        ("hits", c_u64),
        ("misses", c_u64),
        ("prefetches", c_u64),
        ("prefetch_hits", c_u64),
        ("bytes_read", c_u64),
        ("io_wait_ns", c_u64),
        ("n_slots", c_u64),
        ("slot_bytes", c_u64),
        ("pinned_experts", c_u64),
        ("peak_resident_bytes", c_u64),
        ("predicted", c_u64),
        ("predicted_layer_uses", c_u64),
        ("predicted_used", c_u64),
        ("rss_peak_bytes", c_u64),
    ]


class SpecStats(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_u32),
        ("spec_mode", c_u32),
        ("passes", c_u64),
        ("drafted", c_u64),
        ("accepted", c_u64),
        ("emitted", c_u64),
    ]


class ChatMessage(ctypes.Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


TOKEN_CALLBACK = ctypes.CFUNCTYPE(c_i32, c_u32, c_void_p)
PIECE_CALLBACK = ctypes.CFUNCTYPE(c_i32, c_buf, c_size, c_void_p)

# Flags and enum values (moela.h).
MODEL_INFO_HAS_TOKENIZER = 1
MODEL_INFO_GGUF = 1 << 1
MODEL_INFO_HAS_MTP = 1 << 2
MODEL_NO_PREFETCH = 1
MODEL_KEEP_FILE_LAYOUT = 2
MODEL_EXPERTS_NO_PAGE_CACHE = 4
EXPERT_CACHE_ENABLED = 1
GENERATE_IGNORE_EOS = 1
GENERATE_ADD_BOS = 1 << 1
GENERATE_PARSE_SPECIAL = 1 << 2
TOKENIZE_ADD_BOS = 1
TOKENIZE_PARSE_SPECIAL = 1 << 1
CHAT_ADD_GENERATION_PROMPT = 1
#: moela_generate_params.spec_mode values (MOELA_SPEC_*), by the name Python takes.
SPEC_MODES = {"off": 0, "lookup": 1, "mtp": 2}
#: MOELA_SPEC_MAX_DRAFT: the largest moela_generate_params.max_draft.
SPEC_MAX_DRAFT = 64
#: MOELA_MAX_THREADS: the most worker threads moela_set_n_threads accepts.
MAX_THREADS = 512
KV_TYPES = {"f32": 0, "f16": 1}
ATTN_PATHS = {"auto": 0, "expanded": 1, "absorbed": 2}

_P = ctypes.POINTER
_PROTOTYPES: dict[str, tuple[object, list[object]]] = {
    "moela_status_string": (c_char_p, [c_i32]),
    "moela_last_error": (c_char_p, []),
    "moela_version": (c_char_p, []),
    "moela_abi_version": (c_u32, []),
    "moela_set_n_threads": (status_t, [c_u32]),
    "moela_get_n_threads": (c_u32, []),
    "moela_model_default_params": (status_t, [_P(ModelParams), c_size]),
    "moela_session_default_params": (status_t, [_P(SessionParams), c_size]),
    "moela_sampling_default_params": (status_t, [_P(SamplingParams), c_size]),
    "moela_generate_default_params": (status_t, [_P(GenerateParams), c_size]),
    "moela_model_load": (status_t, [c_char_p, _P(ModelParams), _P(c_void_p)]),
    "moela_model_free": (None, [c_void_p]),
    "moela_model_get_info": (status_t, [c_void_p, _P(ModelInfo), c_size]),
    "moela_model_expert_cache_stats": (status_t, [c_void_p, _P(ExpertCacheStats), c_size]),
    "moela_session_new": (status_t, [c_void_p, _P(SessionParams), _P(c_void_p)]),
    "moela_session_free": (None, [c_void_p]),
    "moela_session_reset": (status_t, [c_void_p]),
    "moela_session_spec_stats": (status_t, [c_void_p, _P(SpecStats), c_size]),
    "moela_session_eval": (status_t, [c_void_p, c_u32_p, c_size]),
    "moela_session_eval_all_logits": (
        status_t,
        [c_void_p, c_u32_p, c_size, c_float_p, c_size, c_size_p],
    ),
    "moela_session_logits": (status_t, [c_void_p, c_float_p, c_size, c_size_p]),
    "moela_session_position": (status_t, [c_void_p, c_u32_p]),
    "moela_session_n_ctx": (status_t, [c_void_p, c_u32_p]),
    "moela_session_save": (status_t, [c_void_p, c_char_p]),
    "moela_session_load": (status_t, [c_void_p, c_char_p]),
    "moela_session_save_buffer": (status_t, [c_void_p, c_char_p, c_size, c_size_p]),
    "moela_session_load_buffer": (status_t, [c_void_p, c_char_p, c_size]),
    "moela_sampler_new": (status_t, [_P(SamplingParams), _P(c_void_p)]),
    "moela_sampler_free": (None, [c_void_p]),
    "moela_sampler_reset": (status_t, [c_void_p]),
    "moela_sampler_set_json_schema": (status_t, [c_void_p, c_void_p, c_char_p]),
    "moela_sampler_set_grammar": (status_t, [c_void_p, c_void_p, c_char_p, c_char_p]),
    "moela_sampler_clear_constraint": (status_t, [c_void_p]),
    "moela_sampler_is_finished": (status_t, [c_void_p, ctypes.POINTER(ctypes.c_int32)]),
    "moela_sample": (status_t, [c_void_p, c_void_p, c_u32_p]),
    "moela_sample_logits": (
        status_t,
        [c_void_p, c_float_p, c_size, c_u32_p, c_size, c_u32_p],
    ),
    "moela_tokenize": (
        status_t,
        [c_void_p, c_char_p, c_size, c_u32, c_u32_p, c_size, c_size_p],
    ),
    "moela_token_to_piece": (status_t, [c_void_p, c_u32, c_buf, c_size, c_size_p]),
    "moela_detokenize": (status_t, [c_void_p, c_u32_p, c_size, c_buf, c_size, c_size_p]),
    "moela_detokenizer_new": (status_t, [c_void_p, _P(c_void_p)]),
    "moela_detokenizer_free": (None, [c_void_p]),
    "moela_detokenizer_feed": (status_t, [c_void_p, c_u32, _P(c_buf), c_size_p]),
    "moela_detokenizer_flush": (status_t, [c_void_p, _P(c_buf), c_size_p]),
    "moela_chat_apply_template": (
        status_t,
        [c_void_p, _P(ChatMessage), c_size, c_u32, c_buf, c_size, c_size_p],
    ),
    "moela_generate_tokens": (
        status_t,
        [c_void_p, c_void_p, c_u32_p, c_size, _P(GenerateParams), TOKEN_CALLBACK, c_void_p],
    ),
    "moela_generate": (
        status_t,
        [c_void_p, c_void_p, c_char_p, c_size, _P(GenerateParams), PIECE_CALLBACK, c_void_p],
    ),
}


def _library_names() -> list[str]:
    if sys.platform == "darwin":
        return ["libmoela.dylib"]
    if sys.platform == "win32":
        return ["moela.dll"]
    return ["libmoela.so"]


def find_library() -> str:
    """Where the shared library is: $MOELA_LIBRARY, else the one bundled next to this
    package (``pip install ./python`` puts it there), else the system's library path."""
    env = os.environ.get("MOELA_LIBRARY")
    if env:
        return env
    here = Path(__file__).resolve().parent
    for name in _library_names():
        if (here / name).exists():
            return str(here / name)
    found = ctypes.util.find_library("moela")
    if found:
        return found
    raise OSError(
        "cannot find the moela shared library: install the package with `pip install "
        "./python` from a moela checkout (it builds and bundles the library), set "
        f"MOELA_LIBRARY to the path of {_library_names()[0]}, or install the library "
        "(tools/install.sh)"
    )


def load(path: str | None = None) -> ctypes.CDLL:
    """Opens the library, checks that it is libmoela of this package's ABI version and
    declares every function. OSError when the file cannot be opened; ImportError (with
    ``.path``) when it is another library, lacks moela's functions or has another ABI."""
    path = path or find_library()
    lib = ctypes.CDLL(path)
    missing = [name for name in _PROTOTYPES if not hasattr(lib, name)]
    if "moela_abi_version" in missing:
        raise ImportError(
            f"{path} is not the moela library: it has no moela_abi_version (expected "
            f"{_library_names()[0]} of ABI version {ABI_VERSION}; set MOELA_LIBRARY to it)",
            path=path,
        )
    lib.moela_abi_version.restype = c_u32
    lib.moela_abi_version.argtypes = []
    abi = lib.moela_abi_version()
    if abi != ABI_VERSION:
        raise ImportError(
            f"the moela library at {path} has ABI version {abi}; this package needs "
            f"{ABI_VERSION}: install a library and a package of the same version",
            path=path,
        )
    if missing:
        raise ImportError(
            f"{path} is not a moela library of ABI version {ABI_VERSION}: it lacks "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
            f"({len(missing)} of the {len(_PROTOTYPES)} functions this package uses)",
            path=path,
        )
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib
