"""Tests of the Python package on the tiny test models. Plain unittest, so `python3 -m unittest
discover python/tests` needs nothing else; pytest collects them too.

Environment: MOELA_LIBRARY (default: $CARGO_TARGET_DIR or this checkout's target/, then
release/libmoela.so) and
MOELA_TEST_MODEL (default: tests/fixtures/v3)."""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import os
import subprocess
import tempfile
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
from moela import MoelaError, MoelaValueError, Status  # noqa: E402


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
        with moela.Session(m, n_ctx=8) as s:
            p = _ffi.SpecStats()
            self.assertEqual(lib.moela_session_spec_stats(s._handle(), ctypes.byref(p),
                                                          ctypes.sizeof(p)), 0)
        header = (ROOT / "include" / "moela.h").read_text()
        for name, value in _ffi.SPEC_MODES.items():
            self.assertIn(f"#define MOELA_SPEC_{name.upper()} {value}\n", header)
        self.assertIn(f"#define MOELA_SPEC_MAX_DRAFT {_ffi.SPEC_MAX_DRAFT}\n", header)
        self.assertIn(f"#define MOELA_MODEL_INFO_HAS_MTP (1 << 2)\n", header)

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

    def test_auto_expert_budget(self) -> None:
        # The default model (24 MB) fits in any machine's memory: auto means no store.
        with moela.Model(MODEL, expert_budget_bytes="auto") as m:
            self.assertFalse(m.expert_cache_stats()["flags"] & _ffi.EXPERT_CACHE_ENABLED)
        with self.assertRaises(MoelaValueError):
            moela.Model(MODEL, expert_budget_bytes="half")

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

    def test_save_load_continues_exactly(self) -> None:
        prompt = [(i * 31 + 5) % 256 for i in range(270)]

        def greedy(s: moela.Session, n: int) -> tuple:
            toks, rows = [], []
            for _ in range(n):
                row = s.logits()
                rows.append(row.tobytes())
                t = max(range(len(row)), key=lambda i: row[i])
                toks.append(t)
                s.eval([t])
            return toks, rows

        for kv in ("f32", "f16"):
            a = moela.Session(self.model, n_ctx=280, kv_type=kv)
            a.eval(prompt)
            data = a.save_bytes()
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "state.bin")
                a.save(path)
                want = greedy(a, 4)
                b = moela.Session(self.model, n_ctx=280, kv_type=kv)
                b.eval([1, 2])
                b.load(path)
                self.assertEqual(b.position, len(prompt))
                self.assertEqual(greedy(b, 4), want)
                b.load_bytes(data)
                self.assertEqual(greedy(b, 4), want)
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), data)
                with self.assertRaises(MoelaError) as e:
                    b.load_bytes(data[:-1])
                self.assertEqual(e.exception.status, Status.BAD_FORMAT)
                other = moela.Session(self.model, n_ctx=280, kv_type="f16" if kv == "f32" else "f32")
                with self.assertRaises(MoelaError) as e:
                    other.load_bytes(data)
                self.assertEqual(e.exception.status, Status.STATE_MISMATCH)
                small = moela.Session(self.model, n_ctx=100, kv_type=kv)
                with self.assertRaises(MoelaError) as e:
                    small.load(path)
                self.assertEqual(e.exception.status, Status.CONTEXT_FULL)
                with self.assertRaises(TypeError):
                    b.load_bytes("text")  # type: ignore[arg-type]
                self.assertEqual(b.position, len(prompt) + 4)

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
            ({"top_k": -1}, "top_k is -1: must be 0 ..= 4294967295 (0 = all tokens)"),
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


class TestLoading(unittest.TestCase):
    def test_another_library_is_an_import_error(self) -> None:
        other = ctypes.util.find_library("m") or ctypes.util.find_library("c")
        self.assertTrue(other)
        with self.assertRaises(ImportError) as e:
            _ffi.load(other)
        self.assertIn(f"{other} is not the moela library", str(e.exception))
        self.assertIn("moela_abi_version", str(e.exception))
        self.assertEqual(e.exception.path, other)
        # As a user meets it: MOELA_LIBRARY pointing elsewhere, in a fresh process.
        code = (
            "import moela\n"
            "try:\n    moela.version()\n"
            "except ImportError as e:\n    print('ImportError:', e)\n"
        )
        env = dict(os.environ, MOELA_LIBRARY=other, PYTHONPATH=str(ROOT / "python"))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        self.assertIn(f"ImportError: {other} is not the moela library", out)

    def test_another_abi_version_is_an_import_error(self) -> None:
        saved = _ffi.ABI_VERSION
        _ffi.ABI_VERSION = saved + 1000
        try:
            with self.assertRaises(ImportError) as e:
                _ffi.load(os.environ["MOELA_LIBRARY"])
        finally:
            _ffi.ABI_VERSION = saved
        self.assertIn(f"has ABI version {saved}; this package needs {saved + 1000}", str(e.exception))
        self.assertIn(os.environ["MOELA_LIBRARY"], str(e.exception))


try:
    import numpy
except ImportError:
    numpy = None  # type: ignore[assignment]

#: Run in a fresh process where `import numpy` fails: prints what the logits functions return.
NO_NUMPY = """
import sys
sys.modules["numpy"] = None  # import numpy raises ImportError
import moela
s = moela.Session(moela.Model(sys.argv[1]), n_ctx=16)
rows = s.eval_all_logits([1, 2, 3])
last = s.logits()
print(type(last).__module__, type(last).__name__, last.typecode, len(last))
print(type(rows).__name__, len(rows), type(rows[0]).__name__, rows[0].typecode)
print(last.tobytes().hex())
print(b"".join(r.tobytes() for r in rows).hex())
print(moela.Sampler.greedy().sample_logits(last))
try:
    moela.set_logits_type("numpy")
except ImportError as e:
    print("ImportError:", e)
"""


class TestLogitsTypes(unittest.TestCase):
    """Logits are numpy arrays when numpy is there, array('f') otherwise, with the same
    values; set_logits_type chooses."""

    def tearDown(self) -> None:
        moela.set_logits_type("auto")

    def _logits(self) -> tuple:
        with moela.Session(moela.Model(MODEL), n_ctx=16) as s:
            rows = s.eval_all_logits([1, 2, 3])
            return rows, s.logits()

    def test_without_numpy(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
        out = subprocess.run(
            [sys.executable, "-c", NO_NUMPY, MODEL],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        self.assertEqual(out[0], "array array f 256")
        self.assertEqual(out[1], "list 3 array f")
        self.assertIn("ImportError: set_logits_type('numpy'): numpy cannot be imported", out[5])
        # The same values as this process gets as array('f').
        moela.set_logits_type("array")
        rows, last = self._logits()
        self.assertIsInstance(last, array.array)
        self.assertEqual(out[2], last.tobytes().hex())
        self.assertEqual(out[3], b"".join(r.tobytes() for r in rows).hex())
        self.assertEqual(int(out[4]), max(range(256), key=lambda i: last[i]))

    @unittest.skipIf(numpy is None, "numpy is not installed")
    def test_with_numpy(self) -> None:
        rows, last = self._logits()
        self.assertIsInstance(last, numpy.ndarray)
        self.assertEqual((last.dtype, last.shape), (numpy.float32, (256,)))
        self.assertIsInstance(rows, numpy.ndarray)
        self.assertEqual((rows.dtype, rows.shape), (numpy.float32, (3, 256)))
        self.assertTrue(last.flags.writeable and last.flags.c_contiguous)
        moela.set_logits_type("array")
        arows, alast = self._logits()
        self.assertEqual(last.tobytes(), alast.tobytes())
        self.assertEqual(rows.tobytes(), b"".join(r.tobytes() for r in arows))
        moela.set_logits_type("numpy")
        self.assertIsInstance(self._logits()[1], numpy.ndarray)
        # What worked on array('f') works on the arrays: len, indexing, iteration, tolist.
        self.assertEqual(len(rows), 3)
        self.assertEqual(list(rows[2]), list(last))
        self.assertEqual(last.tolist(), alast.tolist())
        # sample_logits takes every form, with the same answer.
        g = moela.Sampler.greedy()
        best = int(numpy.argmax(last))
        for form in [last, last.astype(numpy.float64), alast, list(alast), rows[2], rows[::-1][0]]:
            self.assertEqual(g.sample_logits(form), best)
        column = rows[:, 5]  # not contiguous: copied
        self.assertEqual(g.sample_logits(column), int(numpy.argmax(column)))
        with self.assertRaisesRegex(TypeError, "one-dimensional array of real numbers"):
            g.sample_logits(rows)
        with self.assertRaisesRegex(TypeError, "one-dimensional array of real numbers"):
            g.sample_logits(numpy.array(["a", "b"]))
        with self.assertRaises(MoelaError):
            g.sample_logits(numpy.zeros(0, dtype=numpy.float32))

    def test_set_logits_type_checks(self) -> None:
        with self.assertRaisesRegex(MoelaValueError, "'auto', 'numpy', 'array'"):
            moela.set_logits_type("list")
        with self.assertRaises(TypeError):
            moela.set_logits_type(None)  # type: ignore[arg-type]
        moela.set_logits_type("array")
        self.assertIsInstance(self._logits()[1], array.array)
        with self.assertRaises(MoelaError):
            moela.Sampler.greedy().sample_logits(array.array("f"))


class TestLifetimes(unittest.TestCase):
    def test_session_close_and_with(self) -> None:
        m = moela.Model(MODEL)
        with moela.Session(m, n_ctx=16) as s:
            s.eval([1, 2])
            self.assertEqual(s.position, 2)
        for call in [lambda: s.eval([1]), lambda: s.position, lambda: s.logits(), lambda: s.reset()]:
            with self.assertRaises(MoelaError) as e:
                call()
            self.assertIn("the session is closed", e.exception.message)
        s.close()  # twice is fine
        with moela.Sampler.greedy() as g:
            self.assertEqual(g.sample_logits([0.0, 1.0]), 1)
        with self.assertRaises(MoelaError) as e:
            g.sample_logits([0.0, 1.0])
        self.assertIn("the sampler is closed", e.exception.message)

    @unittest.skipUnless(os.path.exists(TEXT_MODEL), "no default model")
    def test_text_generation_survives_model_close(self) -> None:
        m = moela.Model(TEXT_MODEL)
        s = moela.Session(m, n_ctx=64)
        want = "".join(s.generate("Once upon a time", max_tokens=12, ignore_eos=True))
        self.assertTrue(want)
        s.reset()
        m.close()
        with self.assertRaises(MoelaError):
            m.tokenize("hi")
        got = "".join(s.generate("Once upon a time", max_tokens=12, ignore_eos=True))
        self.assertEqual(got, want)
        s.close()


@unittest.skipUnless(os.path.exists(TEXT_MODEL), "no default model")
class TestConstrained(unittest.TestCase):
    SCHEMA = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 99},
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
        },
        "required": ["n", "color"],
        "additionalProperties": False,
    }

    def test_json_schema_output_parses_and_validates(self) -> None:
        import json

        with moela.Model(TEXT_MODEL) as m:
            plain_json = 0
            for seed in range(10):
                smp = moela.Sampler(temperature=1.0, seed=seed, json_schema=self.SCHEMA, model=m)
                self.assertFalse(smp.finished)
                with moela.Session(m, n_ctx=256) as s:
                    text = "".join(s.generate("Once upon a time", max_tokens=100, sampler=smp))
                self.assertTrue(smp.finished, text)
                v = json.loads(text)
                self.assertEqual(sorted(v), ["color", "n"], text)
                self.assertIsInstance(v["n"], int)
                self.assertTrue(0 <= v["n"] <= 99, text)
                self.assertIn(v["color"], ["red", "green", "blue"])
                # The same seed without the constraint: the toy model writes no JSON.
                with moela.Session(m, n_ctx=256) as s:
                    plain = "".join(
                        s.generate("Once upon a time", max_tokens=30,
                                   sampler=moela.Sampler(temperature=1.0, seed=seed))
                    )
                try:
                    json.loads(plain)
                    plain_json += 1
                except ValueError:
                    pass
            self.assertEqual(plain_json, 0)

    def test_grammars(self) -> None:
        with moela.Model(TEXT_MODEL) as m:
            for seed in range(5):
                smp = moela.Sampler(seed=seed, grammar='root ::= ("yes" | "no")', model=m)
                with moela.Session(m, n_ctx=64) as s:
                    self.assertIn("".join(s.generate("Is it?", max_tokens=10, sampler=smp)),
                                  ["yes", "no"])
                smp.set_grammar(m, 'start: "abc" | "xyz"', syntax="lark")
                with moela.Session(m, n_ctx=64) as s:
                    self.assertIn("".join(s.generate("Is it?", max_tokens=10, sampler=smp)),
                                  ["abc", "xyz"])
                smp.set_grammar(m, "[0-9]{4}", syntax="regex")
                with moela.Session(m, n_ctx=64) as s:
                    out = "".join(s.generate("Is it?", max_tokens=10, sampler=smp))
                self.assertTrue(len(out) == 4 and out.isdigit(), out)
                smp.clear_constraint()
                self.assertFalse(smp.finished)

    def test_errors(self) -> None:
        with moela.Model(TEXT_MODEL) as m, moela.Model(MODEL) as no_tokenizer:
            with self.assertRaises(MoelaError) as e:
                moela.Sampler(json_schema='{"type": ', model=m)
            self.assertEqual(e.exception.status, Status.INVALID_ARG)
            self.assertIn("not JSON", e.exception.message)
            with self.assertRaises(MoelaError) as e:
                moela.Sampler(grammar="root ::= missing", model=m)
            self.assertIn("'missing' is used but not defined", e.exception.message)
            with self.assertRaises(MoelaError) as e:
                moela.Sampler(grammar="x", grammar_syntax="ebnf", model=m)
            self.assertIn("must be one of", e.exception.message)
            with self.assertRaises(MoelaValueError):
                moela.Sampler(json_schema={"type": "object"})
            with self.assertRaises(MoelaValueError):
                moela.Sampler(json_schema={}, grammar="root ::= \"a\"", model=m)
            with self.assertRaises(TypeError):
                moela.Sampler().set_grammar("not a model", "root ::= \"a\"")  # type: ignore[arg-type]
            with self.assertRaises(MoelaError) as e:
                moela.Sampler(grammar='root ::= "a"', model=no_tokenizer)
            self.assertIn("tokenizer", e.exception.message)


class TestBusy(unittest.TestCase):
    def test_a_session_used_by_two_threads_is_busy_not_broken(self) -> None:
        m = moela.Model(MODEL)
        s = moela.Session(m, n_ctx=64)
        want = manual_greedy(moela.Session(m, n_ctx=64), [1, 2, 3], 6)
        seen: list = []
        errors: list = []

        def intrude() -> None:
            for call in [lambda: s.eval([4]), lambda: s.position, lambda: s.reset()]:
                try:
                    call()
                    errors.append(None)
                except MoelaError as e:
                    errors.append(e)

        # While the library's own generation loop holds the session (in its callback),
        # another thread uses it.
        @_ffi.TOKEN_CALLBACK
        def cb(token: int, _user: object) -> int:
            if not seen:
                t = threading.Thread(target=intrude)
                t.start()
                t.join()
            seen.append(token)
            return 0

        gp = moela._defaults(_ffi.GenerateParams, "moela_generate_default_params")
        gp.max_tokens = 6
        gp.flags = _ffi.GENERATE_IGNORE_EOS
        prompt = (ctypes.c_uint32 * 3)(1, 2, 3)
        g = moela.Sampler.greedy()
        st = moela._l().moela_generate_tokens(s._h, g._h, prompt, 3, ctypes.byref(gp), cb, None)
        self.assertEqual(st, Status.OK)
        self.assertEqual(len(errors), 3)
        for e in errors:
            self.assertIsInstance(e, MoelaError)
            self.assertEqual(e.status, Status.BUSY, e)
            self.assertIn("the session is in use by another call", e.message)
        # The refused calls changed nothing, and the session still works.
        self.assertEqual(seen, want)
        self.assertEqual(s.position, 3 + 6)
        s.eval([5])
        self.assertEqual(s.position, 3 + 6 + 1)


class TestArgumentChecks(unittest.TestCase):
    """Misuse from Python: every argument is checked before ctypes sees it (ctypes would wrap
    integers into their C type, cut strings at a NUL, and raise AttributeError or
    ctypes.ArgumentError for wrong types)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.model = moela.Model(MODEL)

    def assertValueError(  # type: ignore[no-untyped-def]
        self, call, name: str, status: Status = Status.INVALID_ARG
    ) -> MoelaError:
        with self.assertRaises(MoelaValueError) as e:
            call()
        self.assertIsInstance(e.exception, ValueError)
        self.assertIsInstance(e.exception, MoelaError)
        self.assertEqual(e.exception.status, status, e.exception.message)
        self.assertIn(name, e.exception.message)
        return e.exception

    def assertTypeError(self, call, name: str) -> None:  # type: ignore[no-untyped-def]
        with self.assertRaises(TypeError) as e:
            call()
        self.assertIn(name, str(e.exception))

    def test_integers_never_wrap(self) -> None:
        m = self.model
        s = moela.Session(m, n_ctx=16)
        for n_ctx in [2**32 + 16, -1, 2**24 + 1]:
            e = self.assertValueError(lambda: moela.Session(m, n_ctx=n_ctx), "n_ctx")
            self.assertIn(f"n_ctx is {n_ctx}: must be 0 ..= 16777216", e.message)
        for token in [2**32 + 5, -1]:
            self.assertValueError(
                lambda: m.token_to_bytes(token), f"token is {token}", Status.TOKEN_OUT_OF_RANGE
            )
        for n in [2**32 + 2, -1, 0, 2**64]:
            e = self.assertValueError(lambda: moela.set_n_threads(n), "n_threads")
            self.assertIn(f"n_threads is {n}: must be 1 ..= 512", e.message)
        for kwargs, name in [
            ({"top_k": -1}, "top_k is -1"),
            ({"top_k": 2**32}, "top_k is 4294967296"),
            ({"seed": 2**64}, "seed is 18446744073709551616"),
            ({"seed": -1}, "seed is -1"),
            ({"temperature": 1e300}, "temperature is 1e+300: too large for a C float"),
        ]:
            self.assertValueError(lambda: moela.Sampler(**kwargs), name)
        for budget in [2**64, -1]:
            self.assertValueError(
                lambda: moela.Model(MODEL, expert_budget_bytes=budget),
                f"expert_budget_bytes is {budget}",
            )
        for tokens, name in [([2**32 + 1], "tokens[0] is 4294967297"), ([1, -3], "tokens[1] is -3")]:
            self.assertValueError(lambda: s.eval(tokens), name, Status.TOKEN_OUT_OF_RANGE)
            self.assertValueError(lambda: m.detokenize(tokens), name, Status.TOKEN_OUT_OF_RANGE)
        self.assertValueError(
            lambda: moela.Sampler.greedy().sample_logits([1.0, 2.0], [2**33]),
            "history[0] is 8589934592",
            Status.TOKEN_OUT_OF_RANGE,
        )
        self.assertEqual(s.position, 0)
        # A value the library refuses is a ValueError too.
        self.assertValueError(lambda: moela.Sampler(top_p=0.0), "top_p is 0")

    def test_max_tokens(self) -> None:
        s = moela.Session(self.model, n_ctx=16)
        for n in [-1, 2**32]:
            self.assertValueError(lambda: s.generate_tokens([1, 2], max_tokens=n), "max_tokens")
            self.assertValueError(lambda: s.generate("hi", max_tokens=n), "max_tokens")
        self.assertEqual(s.position, 0)
        # 0: the prompt is evaluated, nothing is generated.
        self.assertEqual(list(s.generate_tokens([1, 2], max_tokens=0)), [])
        self.assertEqual(s.position, 2)

    def test_strings_with_nul_are_refused(self) -> None:
        e = self.assertValueError(lambda: moela.Model(MODEL + "\x00junk"), "path")
        self.assertIn(f"NUL byte at index {len(os.fsencode(MODEL))}", e.message)
        self.assertValueError(lambda: moela.Model(os.fsencode(MODEL) + b"\x00junk"), "path")
        for messages, name in [
            ([("user", "hi\x00 and the rest")], "messages[0][1] (content) contains a NUL"),
            (
                [{"role": "user", "content": "a"}, {"role": "us\x00er", "content": "b"}],
                "messages[1]['role']",
            ),
        ]:
            self.assertValueError(lambda: self.model.apply_chat_template(messages), name)
        self.assertValueError(
            lambda: self.model.apply_chat_template([("user", "\ud800")]),
            "messages[0][1] (content) is not encodable as UTF-8",
            Status.INVALID_UTF8,
        )

    @unittest.skipUnless(os.path.exists(TEXT_MODEL), "no default model")
    def test_nul_is_text_where_the_library_takes_a_length(self) -> None:
        m = moela.Model(TEXT_MODEL)
        ids = m.tokenize("a\x00b")
        self.assertEqual(m.detokenize(ids), "a\x00b")
        self.assertValueError(lambda: m.apply_chat_template([("user", "a\x00b")]), "NUL")

    def test_wrong_types_are_type_errors_naming_the_parameter(self) -> None:
        m = self.model
        s = moela.Session(m, n_ctx=16)
        g = moela.Sampler.greedy()
        for call, name in [
            (lambda: moela.Model(None), "path must be a str, bytes or os.PathLike, not NoneType"),
            (lambda: moela.Model(MODEL, expert_budget_bytes=1.5), "expert_budget_bytes must be an int"),
            (lambda: moela.Model(MODEL, prefetch="no"), "prefetch must be a bool"),
            (lambda: m.tokenize(b"hello"), "text must be a str, not bytes"),
            (lambda: m.tokenize(None), "text must be a str, not NoneType"),
            (lambda: m.tokenize("hi", add_bos="yes"), "add_bos must be a bool"),
            (lambda: m.token_to_bytes("5"), "token must be an int, not str"),
            (lambda: m.token_to_bytes(5.0), "token must be an int, not float"),
            (lambda: m.detokenize(b"\x01\x02"), "tokens must be a sequence of int token ids, not bytes"),
            (lambda: m.apply_chat_template("user: hi"), "messages must be a sequence"),
            (
                lambda: m.apply_chat_template([("user", b"hi")]),
                "messages[0][1] (content) must be a str, not bytes",
            ),
            (
                lambda: m.apply_chat_template([{"role": "user"}]),
                "messages[0] has no 'role' or no 'content'",
            ),
            (lambda: m.apply_chat_template([("user", "hi", "x")]), "messages[0] must be a mapping"),
            (lambda: moela.Session(None), "model must be a moela.Model, not NoneType"),
            (lambda: moela.Session(MODEL), "model must be a moela.Model, not str"),
            (lambda: moela.Session(m, n_ctx="16"), "n_ctx must be an int, not str"),
            (lambda: moela.Session(m, n_ctx=True), "n_ctx must be an int, not bool"),
            (lambda: moela.Session(m, kv_type=None), "kv_type must be a str"),
            (lambda: moela.Sampler(temperature="0.5"), "temperature must be a float, not str"),
            (lambda: moela.Sampler(top_k=4.0), "top_k must be an int, not float"),
            (lambda: moela.Sampler(seed="1"), "seed must be an int, not str"),
            (lambda: moela.set_n_threads(2.0), "n_threads must be an int, not float"),
            (lambda: moela.set_n_threads("2"), "n_threads must be an int, not str"),
            (lambda: s.eval(b"abc"), "tokens must be a sequence of int token ids, not bytes"),
            (lambda: s.eval("abc"), "tokens must be a sequence of int token ids, not str"),
            (lambda: s.eval(5), "tokens must be a sequence of int token ids, not int"),
            (lambda: s.eval([1, 2.0]), "tokens[1] must be an int, not float"),
            (lambda: s.eval([None]), "tokens[0] must be an int, not NoneType"),
            (lambda: s.sample("greedy"), "sampler must be a moela.Sampler, not str"),
            (lambda: s.sample(None), "sampler must be a moela.Sampler, not NoneType"),
            (
                lambda: s.generate_tokens([1], sampler=object()),
                "sampler must be a moela.Sampler or None",
            ),
            (lambda: s.generate_tokens([1], max_tokens=2.5), "max_tokens must be an int"),
            (lambda: s.generate_tokens([1], ignore_eos=1), "ignore_eos must be a bool"),
            (lambda: s.generate(b"hi"), "prompt must be a str, not bytes"),
            (lambda: moela.generate("session", "hi"), "session must be a moela.Session, not str"),
            (lambda: g.sample_logits("abc"), "logits must be a sequence of floats"),
            (lambda: g.sample_logits([1.0, "x"]), "logits must be a sequence of floats"),
        ]:
            self.assertTypeError(call, name)
        self.assertValueError(
            lambda: moela.Session(m, kv_type="f8"), "kv_type is 'f8': must be one of 'f32', 'f16'"
        )
        self.assertValueError(lambda: moela.Session(m, attn_path="fast"), "attn_path is 'fast'")
        # Expert skipping: values out of range, then top-1 and a threshold that work.
        self.assertValueError(lambda: moela.Session(m, expert_top_k=1000), "expert_top_k")
        self.assertValueError(lambda: moela.Session(m, expert_min_weight=1.0), "expert_min_weight")
        self.assertValueError(
            lambda: moela.Session(m, expert_min_weight=float("nan")), "expert_min_weight"
        )
        self.assertTypeError(lambda: moela.Session(m, expert_top_k=1.5), "expert_top_k")
        with moela.Session(m, expert_top_k=1, expert_min_weight=0.3) as sk:
            sk.eval([1, 2, 3])
        self.assertEqual(s.position, 0)
        # What the checks accept: ints of other types (__index__) and paths of every kind.
        s2 = moela.Session(m, n_ctx=_Index(8))
        self.assertEqual(s2.n_ctx, 8)
        got = list(s2.generate_tokens(array.array("I", [1, 2]), max_tokens=_Index(3), ignore_eos=True))
        self.assertEqual(len(got), 3)
        moela.Model(Path(MODEL)).close()
        moela.Model(os.fsencode(MODEL)).close()


MTP_MODEL = str(ROOT / "tests" / "fixtures" / "v3_mtp")


class TestSpeculative(unittest.TestCase):
    """``spec=`` and ``draft=`` on generate: the same tokens as without, the counters, misuse."""

    PROMPT = [3, 4, 5, 6, 3, 4, 5, 6, 3, 4]  # repeats itself: lookup drafts from the start

    def plain(self, m: moela.Model, n: int) -> list:
        with moela.Session(m, n_ctx=128) as s:
            return list(s.generate_tokens(self.PROMPT, max_tokens=n, ignore_eos=True))

    def check_greedy(self, m: moela.Model, spec: str) -> moela.SpecStats:
        want = self.plain(m, 30)
        total = moela.SpecStats("off", 0, 0, 0, 0)
        for draft in (1, 3, 6):
            with moela.Session(m, n_ctx=128) as s:
                got = list(s.generate_tokens(self.PROMPT, max_tokens=30, ignore_eos=True,
                                             spec=spec, draft=draft))
                self.assertEqual(got, want, f"{spec}, draft {draft}")
                self.assertEqual(s.position, len(self.PROMPT) + 30)
                st = s.spec_stats()
                self.assertEqual(st.spec, spec)
                self.assertGreater(st.passes, 0)
                self.assertLessEqual(st.accepted, st.drafted)
                self.assertLessEqual(st.drafted, st.passes * draft)
                self.assertEqual(st.emitted, st.passes + st.accepted)
                self.assertGreaterEqual(st.emitted, 30)
                self.assertGreaterEqual(st.tokens_per_pass, 1.0)
                self.assertTrue(0.0 <= st.acceptance_rate <= 1.0)
                s.reset()
                self.assertEqual(s.spec_stats(), moela.SpecStats("off", 0, 0, 0, 0))
                total = moela.SpecStats(spec, total.passes + st.passes,
                                        total.drafted + st.drafted,
                                        total.accepted + st.accepted,
                                        total.emitted + st.emitted)
        return total

    def test_lookup_greedy_equals_plain(self) -> None:
        with moela.Model(MODEL) as m:
            self.assertFalse(m.info.has_mtp)
            self.check_greedy(m, "lookup")

    @unittest.skipUnless(os.path.exists(MTP_MODEL), "no MTP fixture")
    def test_mtp_greedy_equals_plain(self) -> None:
        with moela.Model(MTP_MODEL) as m:
            self.assertTrue(m.info.has_mtp)
            self.check_greedy(m, "mtp")
            self.check_greedy(m, "lookup")

    @unittest.skipUnless(os.path.exists(TEXT_MODEL), "no default model")
    def test_text_and_sampling(self) -> None:
        prompt = "And God said, Let there be light: and there was light. And God said,"
        with moela.Model(TEXT_MODEL) as m:
            with moela.Session(m, n_ctx=256) as s:
                want = "".join(s.generate(prompt, max_tokens=40, add_bos=True, ignore_eos=True))
            with moela.Session(m, n_ctx=256) as s:
                got = "".join(s.generate(prompt, max_tokens=40, add_bos=True, ignore_eos=True,
                                         spec="lookup", draft=4))
                self.assertEqual(got, want)
                self.assertGreater(s.spec_stats().accepted, 0)
            # A seeded sampled run is reproducible.
            runs = []
            for _ in range(2):
                with moela.Session(m, n_ctx=256) as s:
                    smp = moela.Sampler(temperature=0.8, seed=11)
                    runs.append(list(s.generate(prompt, max_tokens=40, sampler=smp,
                                                spec="lookup")))
            self.assertEqual(runs[0], runs[1])
            # Not with a constrained sampler: the library says so at the first next().
            smp = moela.Sampler(grammar='root ::= "yes"', model=m)
            with moela.Session(m, n_ctx=64) as s:
                with self.assertRaises(MoelaError) as e:
                    list(s.generate("Is it?", sampler=smp, spec="lookup"))
                self.assertEqual(e.exception.status, Status.INVALID_ARG)

    def test_continue_stop_and_misuse(self) -> None:
        with moela.Model(MODEL) as m:
            want = self.plain(m, 20)
            with moela.Session(m, n_ctx=128) as s:
                got = list(s.generate_tokens(self.PROMPT, max_tokens=7, ignore_eos=True,
                                             spec="lookup"))
                got += list(s.generate_tokens([], max_tokens=13, ignore_eos=True,
                                              spec="lookup", draft=2))
                self.assertEqual(got, want)
                # max_tokens 0 evaluates the prompt only.
                s.reset()
                self.assertEqual(list(s.generate_tokens([1, 2], max_tokens=0, spec="lookup")), [])
                self.assertEqual(s.position, 2)
                # A consumer that stops: at most `draft` tokens past the last it took.
                s.reset()
                it = s.generate_tokens(self.PROMPT, max_tokens=20, ignore_eos=True,
                                       spec="lookup", draft=3)
                taken = [next(it) for _ in range(4)]
                it.close()
                self.assertEqual(taken, want[:4])
                self.assertTrue(len(self.PROMPT) + 4 <= s.position <= len(self.PROMPT) + 4 + 3)
                # Checked when called, before the first next().
                for bad in ("eagle", "MTP", ""):
                    with self.assertRaises(MoelaValueError) as e:
                        s.generate_tokens([1], spec=bad)
                    self.assertIn("spec is", e.exception.message)
                with self.assertRaises(TypeError):
                    s.generate_tokens([1], spec=1)  # type: ignore[arg-type]
                for n in (0, -1, 65, 2**32):
                    with self.assertRaises(MoelaValueError) as e:
                        s.generate_tokens([1], spec="lookup", draft=n)
                    self.assertIn("draft is", e.exception.message)
                with self.assertRaises(TypeError):
                    s.generate_tokens([1], spec="lookup", draft="4")  # type: ignore[arg-type]
                with self.assertRaises(MoelaError) as e:
                    s.generate_tokens([1], spec="mtp")
                self.assertEqual(e.exception.status, Status.UNSUPPORTED)
                with self.assertRaises(MoelaError) as e:
                    s.generate("hi", spec="mtp")
                self.assertEqual(e.exception.status, Status.UNSUPPORTED)
                # spec=None and "off" are plain decoding.
                s.reset()
                self.assertEqual(
                    list(s.generate_tokens(self.PROMPT, max_tokens=5, ignore_eos=True,
                                           spec="off")), want[:5])
                self.assertEqual(s.spec_stats().passes, 0)


class _Index:
    """An int-like object (as numpy's integers are)."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __index__(self) -> int:
        return self.v


if __name__ == "__main__":
    unittest.main()
