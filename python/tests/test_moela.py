"""Tests of the Python package on the tiny test models. Plain unittest, so `python3 -m unittest
discover python/tests` needs nothing else; pytest collects them too.

Environment: MOELA_LIBRARY (default: $CARGO_TARGET_DIR or this checkout's target/, then
release/libmoela.so) and
MOELA_TEST_MODEL (default: tests/fixtures/v3)."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
os.environ.setdefault(
    "MOELA_LIBRARY",
    str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"), "release", "libmoela.so")),
)
MODEL = os.environ.get("MOELA_TEST_MODEL", str(ROOT / "tests" / "fixtures" / "v3"))
#: A model with a tokenizer and a chat template (the default model of the README).
TEXT_MODEL = str(ROOT / "models" / "moela-tiny-v3.gguf")

import moela  # noqa: E402
from moela import _ffi  # noqa: E402
from moela import MoelaError, Status  # noqa: E402


def manual_greedy(session: moela.Session, prompt: list, n: int) -> list:
    g = moela.Sampler.greedy()
    session.eval(prompt)
    out = []
    for _ in range(n):
        t = session.sample(g)
        out.append(t)
        session.eval([t])
    return out


class TestLibrary(unittest.TestCase):
    def test_versions(self) -> None:
        self.assertEqual(moela.abi_version(), moela.ABI_VERSION)
        self.assertRegex(moela.version(), r"^\d+\.\d+\.\d+")

    def test_struct_sizes_match_the_library(self) -> None:
        # The library accepts exactly the sizes of its own structs, so these succeed only if
        # the ctypes mirrors have the header's layout.
        lib = moela._l()
        for struct, fn in [
            (_ffi.ModelParams, "moela_model_default_params"),
            (_ffi.SessionParams, "moela_session_default_params"),
            (_ffi.SamplingParams, "moela_sampling_default_params"),
            (_ffi.GenerateParams, "moela_generate_default_params"),
        ]:
            p = struct()
            self.assertEqual(getattr(lib, fn)(ctypes.byref(p), ctypes.sizeof(p)), 0, fn)
            self.assertEqual(p.struct_size, ctypes.sizeof(p))
        m = moela.Model(MODEL)
        for struct, fn in [
            (_ffi.ModelInfo, "moela_model_get_info"),
            (_ffi.ExpertCacheStats, "moela_model_expert_cache_stats"),
        ]:
            p = struct()
            self.assertEqual(getattr(lib, fn)(m._handle(), ctypes.byref(p), ctypes.sizeof(p)), 0)

    def test_threads(self) -> None:
        self.assertEqual(moela.MAX_THREADS, 512)
        header = (ROOT / "include" / "moela.h").read_text()
        self.assertIn(f"#define MOELA_MAX_THREADS {moela.MAX_THREADS}\n", header)
        for n in [0, -1, 2**32 - 1, 2**32 + 1, 10**6, moela.MAX_THREADS + 1]:
            with self.assertRaises(MoelaError) as e:
                moela.set_n_threads(n)
            self.assertEqual(e.exception.status, Status.INVALID_ARG)
            self.assertIn(f"n_threads is {n}: must be 1 ..= 512", e.exception.message)
        self.assertGreaterEqual(moela.get_n_threads(), 1)
        self.assertLessEqual(moela.get_n_threads(), moela.MAX_THREADS)

    def test_status_names_match(self) -> None:
        lib = moela._l()
        names = {lib.moela_status_string(s.value) for s in Status}
        self.assertEqual(len(names), len(Status))
        self.assertEqual(lib.moela_status_string(len(Status)), b"unknown status")


class TestModel(unittest.TestCase):
    def test_expert_budget_gives_the_same_tokens(self) -> None:
        with moela.Model(MODEL) as plain, moela.Model(MODEL, expert_budget_bytes=0) as small:
            want = manual_greedy(moela.Session(plain, n_ctx=32), [1, 2, 3], 8)
            got = manual_greedy(moela.Session(small, n_ctx=32), [1, 2, 3], 8)
            self.assertEqual(got, want)
            st = small.expert_cache_stats()
            self.assertTrue(st["flags"] & _ffi.EXPERT_CACHE_ENABLED)
            self.assertEqual(st["n_slots"], 1)
            self.assertGreater(st["misses"], 0)
            self.assertFalse(plain.expert_cache_stats()["flags"] & _ffi.EXPERT_CACHE_ENABLED)
        with self.assertRaises(MoelaError):
            moela.Model(MODEL, expert_budget_bytes=-1)

    def test_info(self) -> None:
        with moela.Model(MODEL) as m:
            i = m.info
            self.assertEqual(i.n_vocab, 256)
            self.assertEqual(i.architecture, "deepseek_v3")
            self.assertEqual((i.bos_token, i.eos_token), (0, 1))
            self.assertGreater(i.n_params, i.n_params_active)
            self.assertFalse(i.is_gguf)
            self.assertGreater(m.expert_cache_stats()["routed_expert_bytes"], 0)

    def test_missing_and_corrupt_files(self) -> None:
        with self.assertRaises(MoelaError) as e:
            moela.Model("/nonexistent/model.gguf")
        self.assertEqual(e.exception.status, Status.IO)
        self.assertIn("moela_model_load", e.exception.message)
        bad = Path(os.environ.get("TMPDIR", "/tmp")) / f"moela-py-{os.getpid()}.gguf"
        bad.write_bytes(b"GGUF" + b"\x00" * 7)
        try:
            with self.assertRaises(MoelaError) as e:
                moela.Model(bad)
            self.assertEqual(e.exception.status, Status.BAD_FORMAT)
        finally:
            bad.unlink()

    def test_text_functions_without_tokenizer(self) -> None:
        m = moela.Model(MODEL)
        if m.info.has_tokenizer:
            ids = m.tokenize("Hello, world")
            self.assertEqual(m.detokenize(ids), "Hello, world")
            return
        for call in [
            lambda: m.tokenize("hello"),
            lambda: m.detokenize([1, 2]),
            lambda: m.token_to_bytes(3),
            lambda: m.apply_chat_template([{"role": "user", "content": "hi"}]),
            lambda: list(moela.Session(m).generate("hi")),
        ]:
            with self.assertRaises(MoelaError) as e:
                call()
            self.assertEqual(e.exception.status, Status.UNSUPPORTED)
            self.assertIn("tokenizer", e.exception.message)

    @unittest.skipUnless(os.path.exists(TEXT_MODEL), "no default model")
    def test_unknown_chat_role_is_an_error(self) -> None:
        m = moela.Model(TEXT_MODEL)
        ok = m.apply_chat_template([("user", "hi"), ("assistant", "hello")])
        self.assertIn("hello", ok)
        for role in ["wizard", "", "User"]:
            with self.assertRaises(MoelaError) as e:
                m.apply_chat_template([("user", "hi"), (role, "abracadabra")])
            self.assertEqual(e.exception.status, Status.INVALID_ARG)
            self.assertIn(f'chat message 1 has role "{role}"', e.exception.message)

    def test_closed_model_is_an_error_and_sessions_outlive_it(self) -> None:
        m = moela.Model(MODEL)
        s = moela.Session(m, n_ctx=16)
        m.close()
        m.close()
        with self.assertRaises(MoelaError):
            moela.Session(m)
        s.eval([1, 2, 3])
        self.assertEqual(len(s.logits()), 256)


class TestSession(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.model = moela.Model(MODEL)

    def test_eval_logits_sample(self) -> None:
        s = moela.Session(self.model, n_ctx=32)
        self.assertEqual(s.n_ctx, 32)
        with self.assertRaises(MoelaError) as e:
            s.logits()
        self.assertEqual(e.exception.status, Status.INVALID_ARG)
        rows = s.eval_all_logits([1, 2, 3])
        self.assertEqual(len(rows), 3)
        last = s.logits()
        self.assertEqual(list(last), list(rows[2]))
        g = moela.Sampler.greedy()
        self.assertEqual(s.sample(g), max(range(256), key=lambda i: last[i]))
        self.assertEqual(g.sample_logits([0.0, 2.0, 1.0]), 1)
        self.assertEqual(s.position, 3)
        s.reset()
        self.assertEqual(s.position, 0)

    def test_misuse(self) -> None:
        s = moela.Session(self.model, n_ctx=4)
        for tokens, status in [
            ([256], Status.TOKEN_OUT_OF_RANGE),
            ([-1], Status.TOKEN_OUT_OF_RANGE),
            ([], Status.INVALID_ARG),
            ([1, 2, 3, 4, 5], Status.CONTEXT_FULL),
        ]:
            with self.assertRaises(MoelaError) as e:
                s.eval(tokens)
            self.assertEqual(e.exception.status, status, tokens)
        self.assertEqual(s.position, 0)
        with self.assertRaises(MoelaError) as e:
            moela.Session(self.model, kv_type="f8")
        self.assertEqual(e.exception.status, Status.INVALID_ARG)
        for kwargs, want in [
            ({"top_p": 0.0}, "top_p is 0: must be in (0, 1]"),
            ({"top_p": 1.5}, "top_p is 1.5: must be in (0, 1]"),
            ({"min_p": -0.1}, "min_p is -0.1: must be in [0, 1]"),
            ({"min_p": 2.0}, "min_p is 2: must be in [0, 1]"),
            ({"temperature": float("nan")}, "temperature is NaN: must be finite and >= 0"),
            ({"temperature": float("inf")}, "temperature is inf: must be finite and >= 0"),
            ({"temperature": -1.0}, "temperature is -1: must be finite and >= 0"),
            ({"repeat_penalty": 0.0}, "repeat_penalty is 0: must be finite and > 0"),
            ({"repeat_penalty": float("nan")}, "repeat_penalty is NaN"),
            ({"top_k": -1}, "top_k is -1: must be >= 0 (0 = all tokens)"),
        ]:
            with self.assertRaises(MoelaError) as e:
                moela.Sampler(**kwargs)
            self.assertEqual(e.exception.status, Status.INVALID_ARG, kwargs)
            self.assertIn(want, e.exception.message)
        # The message of a full context says how to make it larger.
        with self.assertRaises(MoelaError) as e:
            s.eval([1, 2, 3, 4, 5])
        self.assertIn("n_ctx", e.exception.message)
        self.assertIn("trained context length of 640", e.exception.message)
        # Running into the end of the context while generating.
        with self.assertRaises(MoelaError) as e:
            list(s.generate_tokens([1, 2], max_tokens=10, ignore_eos=True))
        self.assertEqual(e.exception.status, Status.CONTEXT_FULL)

    def test_generate_tokens_matches_the_c_loop(self) -> None:
        s = moela.Session(self.model, n_ctx=64)
        want = manual_greedy(s, [1, 2, 3], 16)
        s.reset()
        got = list(s.generate_tokens([1, 2, 3], max_tokens=16, ignore_eos=True))
        self.assertEqual(got, want)
        self.assertEqual(s.position, 3 + 16)
        # The library's own loop (moela_generate_tokens), through a ctypes callback.
        s.reset()
        seen: list = []

        @_ffi.TOKEN_CALLBACK
        def cb(token: int, _user: object) -> int:
            seen.append(token)
            return 1 if len(seen) == 16 else 0

        gp = moela._defaults(_ffi.GenerateParams, "moela_generate_default_params")
        gp.max_tokens = 100
        gp.flags = _ffi.GENERATE_IGNORE_EOS
        prompt = (ctypes.c_uint32 * 3)(1, 2, 3)
        g = moela.Sampler.greedy()
        st = moela._l().moela_generate_tokens(s._h, g._h, prompt, 3, ctypes.byref(gp), cb, None)
        self.assertEqual(st, Status.CANCELLED)
        self.assertEqual(seen, want)
        self.assertEqual(s.position, 3 + 15)

    def test_stop_early_and_continue(self) -> None:
        s = moela.Session(self.model, n_ctx=64)
        want = manual_greedy(s, [5, 6], 10)
        s.reset()
        it = s.generate_tokens([5, 6], max_tokens=10, ignore_eos=True)
        first = [next(it) for _ in range(4)]
        it.close()  # the 4th token is not evaluated
        self.assertEqual(s.position, 2 + 3)
        s.eval([first[3]])
        rest = list(s.generate_tokens([], max_tokens=6, ignore_eos=True))
        self.assertEqual(first + rest, want)

    def test_threads_share_a_model(self) -> None:
        prompts = [[10, 11, 12], [20, 21, 22]]
        alone = [manual_greedy(moela.Session(self.model, n_ctx=64), p, 12) for p in prompts]
        results: dict = {}

        def work(i: int) -> None:
            sess = moela.Session(self.model, n_ctx=64)
            results[i] = list(sess.generate_tokens(prompts[i], max_tokens=12, ignore_eos=True))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([results[0], results[1]], alone)


if __name__ == "__main__":
    unittest.main()
