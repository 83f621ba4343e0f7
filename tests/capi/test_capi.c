/*
 * The C API from C: every function, every misuse. Built as C99 with -Wall -Wextra -Werror
 * -pedantic and -fsanitize=address,undefined by tools/test_capi.sh, so a leak, an overflow
 * or undefined behaviour in moela or in its use fails the test.
 *
 *   test_capi HF_MODEL_DIR GGUF_FILE TMP_DIR
 */
#include "moela.h"
#include "moela.h" /* twice: the include guard holds */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* A call that must fail with `want`, with a message from that very function. */
#define EXPECT_FAIL(want, fn, ...)                                                         \
    do {                                                                                   \
        moela_status st_ = fn(__VA_ARGS__);                                                \
        const char *msg_ = moela_last_error();                                             \
        checks++;                                                                          \
        if (st_ != (want)) {                                                               \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n  last error: %s\n", \
                    __FILE__, __LINE__, #fn, (int)st_, moela_status_string(st_), (int)(want), \
                    moela_status_string(want), msg_);                                      \
            failures++;                                                                    \
        } else if (strncmp(msg_, #fn ": ", strlen(#fn ": ")) != 0) {                       \
            fprintf(stderr, "%s:%d: %s failed without its own message: '%s'\n", __FILE__,   \
                    __LINE__, #fn, msg_);                                                  \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#define EXPECT_OK(call)                                                                    \
    do {                                                                                   \
        moela_status st_ = (call);                                                         \
        checks++;                                                                          \
        if (st_ != MOELA_STATUS_OK) {                                                      \
            fprintf(stderr, "%s:%d: %s returned %d (%s)\n  last error: %s\n", __FILE__,    \
                    __LINE__, #call, (int)st_, moela_status_string(st_), moela_last_error()); \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

static const char *hf_dir;
static const char *gguf_path;
static const char *tmp_dir;

static moela_model_params model_params(void) {
    moela_model_params p;
    memset(&p, 0xAB, sizeof p); /* garbage: the defaults must overwrite everything */
    EXPECT_OK(moela_model_default_params(&p, sizeof p));
    return p;
}

static moela_session_params session_params(uint32_t n_ctx) {
    moela_session_params p;
    EXPECT_OK(moela_session_default_params(&p, sizeof p));
    p.n_ctx = n_ctx;
    return p;
}

static moela_sampler *greedy_sampler(void) {
    moela_sampling_params p;
    moela_sampler *s = NULL;
    EXPECT_OK(moela_sampling_default_params(&p, sizeof p));
    p.temperature = 0.0f;
    EXPECT_OK(moela_sampler_new(&p, &s));
    CHECK(s != NULL);
    return s;
}

static moela_model *load(const char *path) {
    moela_model_params p = model_params();
    moela_model *m = NULL;
    EXPECT_OK(moela_model_load(path, &p, &m));
    CHECK(m != NULL);
    return m;
}

static uint32_t argmax(const float *v, size_t n) {
    size_t best = 0, i;
    for (i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (uint32_t)best;
}

static void test_version_and_status(void) {
    char buf[64];
    int s;
    CHECK(strcmp(moela_version(), MOELA_VERSION) == 0);
    CHECK(moela_abi_version() == MOELA_ABI_VERSION);
    snprintf(buf, sizeof buf, "%d.%d.%d", MOELA_VERSION_MAJOR, MOELA_VERSION_MINOR,
             MOELA_VERSION_PATCH);
    CHECK(strncmp(buf, MOELA_VERSION, strlen(buf)) == 0);
    CHECK(MOELA_STATUS_OK == 0);
    CHECK(MOELA_STATUS_PANIC == 9);
    CHECK(MOELA_STATUS_INVALID_UTF8 == 12);
    CHECK(MOELA_STATUS_BUSY == 13);
    CHECK(MOELA_STATUS_STATE_MISMATCH == 14);
    for (s = MOELA_STATUS_OK; s <= MOELA_STATUS_STATE_MISMATCH; s++) {
        const char *a = moela_status_string(s);
        CHECK(a != NULL && a[0] != 0);
        CHECK(strcmp(a, "unknown status") != 0);
        if (s > 0) CHECK(strcmp(a, moela_status_string(s - 1)) != 0);
    }
    CHECK(strcmp(moela_status_string(1000), "unknown status") == 0);
    CHECK(strcmp(moela_status_string(-1), "unknown status") == 0);
    CHECK(moela_last_error() != NULL);
}

/* Threads of this process (Linux: "Threads:" in /proc/self/status), or -1 where unknown. */
static long process_threads(void) {
    char line[256];
    long n = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Threads:", 8) == 0) n = strtol(line + 8, NULL, 10);
    fclose(f);
    return n;
}

/* First thing in main: the pool does not exist yet. */
static void test_threads_setting(void) {
    static const uint32_t bad[] = {0, (uint32_t)-1, 1000000, MOELA_MAX_THREADS + 1};
    long before = process_threads();
    size_t i;
    CHECK(MOELA_MAX_THREADS == 512);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[64];
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_set_n_threads, bad[i]);
        /* "moela_set_n_threads: n_threads is 4294967295: must be 1 ..= 512" */
        snprintf(want, sizeof want, "n_threads is %lu: must be 1 ..= 512", (unsigned long)bad[i]);
        CHECK(strstr(moela_last_error(), want) != NULL);
        /* Refused before any thread started. */
        CHECK(process_threads() == before);
    }
    CHECK(before < 0 || before < 64);
    EXPECT_OK(moela_set_n_threads(2));
    CHECK(moela_get_n_threads() == 2);
    CHECK(before < 0 || process_threads() <= before + 2);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_set_n_threads, 3); /* fixed once created */
    CHECK(moela_get_n_threads() == 2);
}

static void test_params(void) {
    moela_model_params mp;
    moela_session_params sp;
    moela_sampling_params smp;
    moela_generate_params gp;
    EXPECT_OK(moela_model_default_params(&mp, sizeof mp));
    CHECK(mp.struct_size == sizeof mp && mp.flags == 0 &&
          mp.expert_budget_bytes == MOELA_EXPERT_BUDGET_UNLIMITED);
    EXPECT_OK(moela_session_default_params(&sp, sizeof sp));
    CHECK(sp.struct_size == sizeof sp && sp.n_ctx == 0 && sp.kv_type == MOELA_KV_F32 &&
          sp.attn_path == MOELA_ATTN_AUTO && sp.expert_min_weight == 0.0f &&
          sp.expert_top_k == 0);
    EXPECT_OK(moela_sampling_default_params(&smp, sizeof smp));
    CHECK(smp.struct_size == sizeof smp && smp.top_k == 40 && smp.repeat_penalty == 1.0f);
    EXPECT_OK(moela_generate_default_params(&gp, sizeof gp));
    CHECK(gp.struct_size == sizeof gp && gp.max_tokens == 128 && gp.flags == 0);

    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_default_params, NULL, sizeof mp);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_default_params, NULL, sizeof sp);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampling_default_params, NULL, sizeof smp);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate_default_params, NULL, sizeof gp);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_default_params, &mp, 0);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_default_params, &sp, 2);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampling_default_params, &smp, sizeof smp - 4);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_generate_default_params, &gp, 0);
    {
        /* A header newer than the library: the struct is larger than the library knows. */
        unsigned char big[256];
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_default_params,
                    (moela_session_params *)(void *)big, sizeof sp + 8);
    }
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void test_load_misuse(void) {
    moela_model_params p = model_params();
    moela_model *m = (moela_model *)(void *)&p; /* must be overwritten with NULL */
    char path[4096];
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_load, NULL, &p, &m);
    CHECK(m == NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_load, hf_dir, NULL, &m);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_load, hf_dir, &p, NULL);

    m = (moela_model *)(void *)&p;
    snprintf(path, sizeof path, "%s/does-not-exist.gguf", tmp_dir);
    EXPECT_FAIL(MOELA_STATUS_IO, moela_model_load, path, &p, &m);
    CHECK(m == NULL);
    CHECK(strstr(moela_last_error(), "does-not-exist.gguf") != NULL);

    /* Garbage with a .gguf name. */
    snprintf(path, sizeof path, "%s/garbage.gguf", tmp_dir);
    write_file(path, "this is not a model at all, not even close", 42);
    EXPECT_FAIL(MOELA_STATUS_BAD_FORMAT, moela_model_load, path, &p, &m);
    CHECK(m == NULL);

    /* A real GGUF cut short. */
    {
        FILE *f = fopen(gguf_path, "rb");
        static unsigned char head[4096];
        size_t n;
        CHECK(f != NULL);
        if (f) {
            n = fread(head, 1, sizeof head, f);
            fclose(f);
            snprintf(path, sizeof path, "%s/truncated.gguf", tmp_dir);
            write_file(path, head, n);
            EXPECT_FAIL(MOELA_STATUS_BAD_FORMAT, moela_model_load, path, &p, &m);
            CHECK(m == NULL);
        }
    }
    /* An empty file. */
    snprintf(path, sizeof path, "%s/empty.gguf", tmp_dir);
    write_file(path, "", 0);
    EXPECT_FAIL(MOELA_STATUS_BAD_FORMAT, moela_model_load, path, &p, &m);

    /* Not a model path: a device; a directory without config.json (it names the .gguf files
       it holds instead). */
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_load, "/dev/null", &p, &m);
    CHECK(strstr(moela_last_error(),
                 "/dev/null: is a character device, not a regular file or a directory") != NULL);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_load, tmp_dir, &p, &m);
    CHECK(strstr(moela_last_error(), "has no config.json") != NULL);
    CHECK(strstr(moela_last_error(), "empty.gguf") != NULL);
    CHECK(m == NULL);

    /* Bad params. */
    p.flags = 0x80;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_load, hf_dir, &p, &m);
    p = model_params();
    p.struct_size = 0;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_load, hf_dir, &p, &m);
    p.struct_size = 4096;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_load, hf_dir, &p, &m);
    CHECK(m == NULL);

    /* NULL is a no-op for every free. */
    moela_model_free(NULL);
    moela_session_free(NULL);
    moela_sampler_free(NULL);
    moela_detokenizer_free(NULL);
}

static void test_info(const moela_model *m, int gguf) {
    moela_model_info info;
    moela_expert_cache_stats st;
    memset(&info, 0xCD, sizeof info);
    EXPECT_OK(moela_model_get_info(m, &info, sizeof info));
    CHECK(info.struct_size == sizeof info);
    CHECK(info.n_vocab == 256);
    CHECK(info.n_layers == 4 && info.n_dense_layers == 1);
    CHECK(info.n_embd == 64 && info.n_heads == 4 && info.kv_lora_rank == 32);
    CHECK(info.n_experts == 8 && info.n_experts_used == 2 && info.n_shared_experts == 1);
    CHECK(info.n_ctx_train == 640);
    if (gguf)
        CHECK(info.bos_token == -1 && info.eos_token == -1); /* this GGUF has no tokenizer keys */
    else
        CHECK(info.bos_token == 0 && info.eos_token == 1);
    CHECK(info.n_params > info.n_params_active && info.n_params_active > 0);
    CHECK(info.kv_bytes_per_token == 4u * 4u * (32u + 16u));
    CHECK(strcmp(info.architecture, "deepseek_v3") == 0);
    CHECK(((info.flags & MOELA_MODEL_INFO_GGUF) != 0) == (gguf != 0));
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_get_info, NULL, &info, sizeof info);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_get_info, m, NULL, sizeof info);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_get_info, m, &info, 7);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_get_info, m, &info, 0);

    EXPECT_OK(moela_model_expert_cache_stats(m, &st, sizeof st));
    CHECK(st.struct_size == sizeof st);
    CHECK((st.flags & MOELA_EXPERT_CACHE_ENABLED) == 0);
    /* 3 MoE layers x 8 experts x 3 matrices of 64x32 (BF16 or F16: 2 bytes). */
    CHECK(st.routed_expert_bytes == 3u * 8u * 3u * 64u * 32u * 2u);
    CHECK(st.hits == 0 && st.misses == 0);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_expert_cache_stats, NULL, &st, sizeof st);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_model_expert_cache_stats, m, NULL, sizeof st);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_expert_cache_stats, m, &st, 1);
}

static void test_session_misuse(const moela_model *m) {
    moela_session_params p = session_params(0);
    moela_session *s = (moela_session *)(void *)&p;
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_new, NULL, &p, &s);
    CHECK(s == NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_new, m, NULL, &s);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_new, m, &p, NULL);
    p.kv_type = 7;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_new, m, &p, &s);
    p = session_params(0);
    p.attn_path = 3;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_new, m, &p, &s);
    p = session_params((1u << 24) + 1);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_new, m, &p, &s);
    p = session_params(0);
    p.struct_size = 1;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_new, m, &p, &s);
    CHECK(s == NULL);
    /* Expert skipping: top-k above the model's, weights outside [0, 1). */
    p = session_params(0);
    p.expert_top_k = 1000;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_new, m, &p, &s);
    p = session_params(0);
    p.expert_min_weight = 1.0f;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_new, m, &p, &s);
    p.expert_min_weight = -0.5f;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_new, m, &p, &s);
    CHECK(s == NULL);
    /* An older caller's struct without the expert-skipping fields still works. */
    p = session_params(0);
    p.expert_top_k = 1000;
    p.struct_size = (uint32_t)offsetof(moela_session_params, expert_min_weight);
    EXPECT_OK(moela_session_new(m, &p, &s));
    moela_session_free(s);
    s = NULL;
    /* Top-1 is accepted. */
    p = session_params(0);
    p.expert_top_k = 1;
    p.expert_min_weight = 0.25f;
    EXPECT_OK(moela_session_new(m, &p, &s));
    moela_session_free(s);
}

/* Greedy tokens by hand: eval, sample, eval... */
static void manual_greedy(moela_session *s, const uint32_t *prompt, size_t n_prompt,
                          uint32_t *out, size_t n) {
    moela_sampler *g = greedy_sampler();
    size_t i;
    EXPECT_OK(moela_session_eval(s, prompt, n_prompt));
    for (i = 0; i < n; i++) {
        EXPECT_OK(moela_sample(s, g, &out[i]));
        EXPECT_OK(moela_session_eval(s, &out[i], 1));
    }
    moela_sampler_free(g);
}

typedef struct {
    uint32_t tokens[64];
    size_t n;
    size_t stop_after; /* 0 = never */
} collect;

static int32_t on_token(uint32_t token, void *user_data) {
    collect *c = (collect *)user_data;
    if (c->n < 64) c->tokens[c->n] = token;
    c->n++;
    return c->stop_after != 0 && c->n >= c->stop_after;
}

static void test_eval_logits_sample(const moela_model *m) {
    static const uint32_t prompt[] = {1, 2, 3};
    static float logits[256], rows[3 * 256], small[10];
    moela_session_params p = session_params(0);
    moela_session *s = NULL;
    moela_sampler *g = greedy_sampler();
    uint32_t tok = 0, pos = 99, n_ctx = 0, bad = 256;
    size_t n = 0, i;

    EXPECT_OK(moela_session_new(m, &p, &s));
    EXPECT_OK(moela_session_n_ctx(s, &n_ctx));
    CHECK(n_ctx == 640);
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 0);

    /* Before any eval: no logits to read or sample. */
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_logits, s, logits, 256, &n);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sample, s, g, &tok);

    /* Misuse of eval. */
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_eval, NULL, prompt, 3);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_eval, s, NULL, 3);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_eval, s, prompt, 0);
    EXPECT_FAIL(MOELA_STATUS_TOKEN_OUT_OF_RANGE, moela_session_eval, s, &bad, 1);
    CHECK(strstr(moela_last_error(), "256") != NULL);
    bad = 0xFFFFFFFFu;
    EXPECT_FAIL(MOELA_STATUS_TOKEN_OUT_OF_RANGE, moela_session_eval, s, &bad, 1);
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 0);

    /* All logits of a batch equal the logits of the same tokens one at a time. */
    EXPECT_FAIL(MOELA_STATUS_BUFFER_TOO_SMALL, moela_session_eval_all_logits, s, prompt, 3,
                rows, 3 * 256 - 1, &n);
    CHECK(n == 3 * 256);
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 0);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_eval_all_logits, s, prompt, 3, NULL,
                3 * 256, &n);
    EXPECT_OK(moela_session_eval_all_logits(s, prompt, 3, rows, 3 * 256, NULL));
    EXPECT_OK(moela_session_logits(s, logits, 256, &n));
    CHECK(n == 256);
    CHECK(memcmp(logits, rows + 2 * 256, sizeof logits) == 0);
    EXPECT_OK(moela_session_reset(s));
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 0);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_session_logits, s, logits, 256, &n);
    for (i = 0; i < 3; i++) {
        size_t j;
        float worst = 0;
        EXPECT_OK(moela_session_eval(s, &prompt[i], 1));
        EXPECT_OK(moela_session_logits(s, logits, 256, NULL));
        for (j = 0; j < 256; j++) {
            float d = fabsf(logits[j] - rows[i * 256 + j]);
            if (d > worst) worst = d;
        }
        CHECK(worst < 1e-3f);
    }
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 3);

    /* Logits into a short buffer, NULLs. */
    n = 0;
    EXPECT_FAIL(MOELA_STATUS_BUFFER_TOO_SMALL, moela_session_logits, s, small, 10, &n);
    CHECK(n == 256);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_logits, s, NULL, 256, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_logits, NULL, logits, 256, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_position, s, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_position, NULL, &pos);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_n_ctx, s, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_n_ctx, NULL, &n_ctx);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_reset, NULL);

    /* Greedy sampling is the argmax. */
    EXPECT_OK(moela_session_logits(s, logits, 256, NULL));
    EXPECT_OK(moela_sample(s, g, &tok));
    CHECK(tok == argmax(logits, 256));
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sample, NULL, g, &tok);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sample, s, NULL, &tok);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sample, s, g, NULL);
    {
        float l[4] = {0.5f, 3.0f, -1.0f, 2.0f};
        uint32_t h[1] = {1};
        EXPECT_OK(moela_sample_logits(g, l, 4, NULL, 0, &tok));
        CHECK(tok == 1);
        EXPECT_OK(moela_sample_logits(g, l, 4, h, 1, &tok));
        CHECK(tok == 1); /* repeat_penalty 1: history changes nothing */
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sample_logits, g, l, 0, NULL, 0, &tok);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sample_logits, g, NULL, 4, NULL, 0, &tok);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sample_logits, g, l, 4, NULL, 1, &tok);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sample_logits, g, l, 4, h, 1, NULL);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sample_logits, NULL, l, 4, h, 1, &tok);
    }
    {
        /* Seeded sampling is reproducible, and reset restarts the stream. */
        moela_sampling_params sp;
        moela_sampler *r = NULL;
        uint32_t a[8], b[8];
        float l[6] = {1.0f, 1.1f, 0.9f, 1.05f, 0.95f, 1.0f};
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.temperature = 1.0f;
        sp.top_k = 0;
        sp.top_p = 1.0f;
        sp.min_p = 0.0f;
        sp.seed = 1234;
        EXPECT_OK(moela_sampler_new(&sp, &r));
        for (i = 0; i < 8; i++) EXPECT_OK(moela_sample_logits(r, l, 6, NULL, 0, &a[i]));
        EXPECT_OK(moela_sampler_reset(r));
        for (i = 0; i < 8; i++) EXPECT_OK(moela_sample_logits(r, l, 6, NULL, 0, &b[i]));
        CHECK(memcmp(a, b, sizeof a) == 0);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_reset, NULL);
        moela_sampler_free(r);
    }
    {
        /* Bad sampling params. */
        moela_sampling_params sp;
        moela_sampler *r = (moela_sampler *)(void *)&sp;
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.temperature = (float)NAN;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        CHECK(r == NULL);
        CHECK(strcmp(moela_last_error(),
                     "moela_sampler_new: temperature is NaN: must be finite and >= 0 (0 = greedy)") == 0);
        sp.temperature = -1.0f;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        CHECK(strstr(moela_last_error(), "temperature is -1: must be finite and >= 0") != NULL);
        sp.temperature = (float)INFINITY;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        CHECK(strstr(moela_last_error(), "temperature is inf") != NULL);
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.top_p = 1.5f;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        CHECK(strstr(moela_last_error(), "top_p is 1.5: must be in (0, 1]") != NULL);
        sp.top_p = (float)NAN;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.min_p = -0.5f;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        CHECK(strstr(moela_last_error(), "min_p is -0.5: must be in [0, 1]") != NULL);
        sp.min_p = (float)NAN;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.repeat_penalty = -2.0f;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        CHECK(strstr(moela_last_error(), "repeat_penalty is -2: must be finite and > 0") != NULL);
        sp.repeat_penalty = (float)NAN;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.top_p = 0.0f;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.min_p = 1.5f;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        EXPECT_OK(moela_sampling_default_params(&sp, sizeof sp));
        sp.repeat_penalty = 0.0f;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        sp.repeat_penalty = (float)INFINITY;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_new, &sp, &r);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_new, NULL, &r);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_new, &sp, NULL);
    }
    moela_sampler_free(g);
    moela_session_free(s);
}

static void test_context_full(const moela_model *m) {
    static const uint32_t t[] = {5, 6, 7};
    moela_session_params p = session_params(4);
    moela_session *s = NULL;
    uint32_t pos = 0, n_ctx = 0;
    EXPECT_OK(moela_session_new(m, &p, &s));
    EXPECT_OK(moela_session_n_ctx(s, &n_ctx));
    CHECK(n_ctx == 4);
    EXPECT_OK(moela_session_eval(s, t, 3));
    EXPECT_FAIL(MOELA_STATUS_CONTEXT_FULL, moela_session_eval, s, t, 2);
    /* The message says which setting makes the context larger, and up to what. */
    CHECK(strstr(moela_last_error(), "5 positions needed, the context holds 4") != NULL);
    CHECK(strstr(moela_last_error(), "moela_session_params.n_ctx") != NULL);
    CHECK(strstr(moela_last_error(), "trained context length of 640") != NULL);
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 3); /* a failed eval changes nothing */
    EXPECT_OK(moela_session_eval(s, t, 1));
    EXPECT_FAIL(MOELA_STATUS_CONTEXT_FULL, moela_session_eval, s, t, 1);
    {
        /* generate runs into the end of the context */
        moela_generate_params gp;
        moela_sampler *g = greedy_sampler();
        collect c;
        memset(&c, 0, sizeof c);
        EXPECT_OK(moela_generate_default_params(&gp, sizeof gp));
        gp.flags = MOELA_GENERATE_IGNORE_EOS;
        EXPECT_OK(moela_session_reset(s));
        EXPECT_FAIL(MOELA_STATUS_CONTEXT_FULL, moela_generate_tokens, s, g, t, 2, &gp,
                    on_token, &c);
        CHECK(c.n == 3); /* 2 evaluated, the third found no room */
        EXPECT_OK(moela_session_position(s, &pos));
        CHECK(pos == 4);
        moela_sampler_free(g);
    }
    moela_session_free(s);
}

static void test_generate(const moela_model *m) {
    static const uint32_t prompt[] = {1, 2, 3};
    uint32_t want[16];
    moela_session_params p = session_params(64);
    moela_session *s = NULL;
    moela_sampler *g = greedy_sampler();
    moela_generate_params gp;
    collect c;
    uint32_t pos = 0;

    EXPECT_OK(moela_session_new(m, &p, &s));
    manual_greedy(s, prompt, 3, want, 16);
    EXPECT_OK(moela_session_reset(s));

    EXPECT_OK(moela_generate_default_params(&gp, sizeof gp));
    gp.max_tokens = 16;
    gp.flags = MOELA_GENERATE_IGNORE_EOS;
    memset(&c, 0, sizeof c);
    EXPECT_OK(moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    CHECK(c.n == 16);
    CHECK(memcmp(c.tokens, want, sizeof want) == 0);
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 3 + 16);

    /* Reset and reuse: the same again. Then continue with an empty prompt. */
    EXPECT_OK(moela_session_reset(s));
    memset(&c, 0, sizeof c);
    gp.max_tokens = 10;
    EXPECT_OK(moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    gp.max_tokens = 6;
    EXPECT_OK(moela_generate_tokens(s, g, NULL, 0, &gp, on_token, &c));
    CHECK(c.n == 16);
    CHECK(memcmp(c.tokens, want, sizeof want) == 0);

    /* The callback stops generation; the refused token is not evaluated. */
    EXPECT_OK(moela_session_reset(s));
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    gp.max_tokens = 16;
    EXPECT_FAIL(MOELA_STATUS_CANCELLED, moela_generate_tokens, s, g, prompt, 3, &gp, on_token,
                &c);
    CHECK(c.n == 3);
    CHECK(memcmp(c.tokens, want, 3 * sizeof(uint32_t)) == 0);
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 3 + 2);

    /* max_tokens 0 evaluates the prompt only. */
    EXPECT_OK(moela_session_reset(s));
    memset(&c, 0, sizeof c);
    gp.max_tokens = 0;
    EXPECT_OK(moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    CHECK(c.n == 0);
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 3);

    /* Misuse. */
    EXPECT_OK(moela_session_reset(s));
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_generate_tokens, s, g, NULL, 0, &gp, on_token,
                &c); /* nothing to continue from */
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate_tokens, s, g, prompt, 3, &gp, NULL, &c);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate_tokens, NULL, g, prompt, 3, &gp,
                on_token, &c);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate_tokens, s, NULL, prompt, 3, &gp,
                on_token, &c);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate_tokens, s, g, NULL, 3, &gp, on_token,
                &c);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate_tokens, s, g, prompt, 3, NULL, on_token,
                &c);
    gp.flags = 0x100;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_generate_tokens, s, g, prompt, 3, &gp,
                on_token, &c);
    gp.flags = 0;
    {
        uint32_t bad[2] = {3, 999};
        EXPECT_FAIL(MOELA_STATUS_TOKEN_OUT_OF_RANGE, moela_generate_tokens, s, g, bad, 2, &gp,
                    on_token, &c);
    }
    EXPECT_OK(moela_session_position(s, &pos));
    CHECK(pos == 0);

    moela_sampler_free(g);
    moela_session_free(s);
}

static int32_t on_piece(const char *piece, size_t len, void *user_data) {
    (void)piece;
    (void)len;
    (void)user_data;
    return 0;
}

typedef struct {
    char text[512];
    size_t len;
} text_out;

static int32_t append_piece(const char *piece, size_t len, void *user_data) {
    text_out *t = (text_out *)user_data;
    if (t->len + len < sizeof t->text) {
        memcpy(t->text + t->len, piece, len);
        t->len += len;
        t->text[t->len] = 0;
    }
    return 0;
}

/* Generates up to max_tokens after `prompt` with sampler `g` into `out`; returns the status. */
static moela_status constrained_text(const moela_model *m, moela_sampler *g, const char *prompt,
                                     uint32_t max_tokens, text_out *out) {
    moela_session_params sp = session_params(256);
    moela_session *s = NULL;
    moela_generate_params gp;
    moela_status st;
    EXPECT_OK(moela_generate_default_params(&gp, sizeof gp));
    gp.max_tokens = max_tokens;
    EXPECT_OK(moela_session_new(m, &sp, &s));
    out->len = 0;
    out->text[0] = 0;
    st = moela_generate(s, g, prompt, strlen(prompt), &gp, append_piece, out);
    moela_session_free(s);
    return st;
}

/* Constrained decoding (moela_sampler_set_json_schema / _set_grammar) on a model with a
   tokenizer, and its misuse; `plain` has no tokenizer. */
static void test_constrained(const moela_model *m, const moela_model *plain) {
    static const char schema[] =
        "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},"
        "\"n\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}},"
        "\"required\":[\"ok\",\"n\"],\"additionalProperties\":false}";
    moela_sampling_params p;
    moela_sampler *g = NULL;
    text_out out;
    int32_t finished = -1;
    uint64_t seed;
    EXPECT_OK(moela_sampling_default_params(&p, sizeof p));
    for (seed = 0; seed < 8; seed++) {
        p.seed = seed;
        p.temperature = 1.0f;
        EXPECT_OK(moela_sampler_new(&p, &g));
        EXPECT_OK(moela_sampler_is_finished(g, &finished));
        CHECK(finished == 0);
        EXPECT_OK(moela_sampler_set_json_schema(g, m, schema));
        EXPECT_OK(constrained_text(m, g, "Once upon a time", 64, &out));
        {
            int n = -1;
            char tail = 0;
            int ok = sscanf(out.text, "{\"ok\":true,\"n\":%1d%c", &n, &tail) == 2 ||
                     sscanf(out.text, "{\"ok\":false,\"n\":%1d%c", &n, &tail) == 2;
            CHECK(ok && tail == '}' && out.text[out.len - 1] == '}' && n >= 0 && n <= 9);
            if (!ok) fprintf(stderr, "  seed %d: %s\n", (int)seed, out.text);
        }
        EXPECT_OK(moela_sampler_is_finished(g, &finished));
        CHECK(finished == 1);
        /* A grammar replaces the schema; reset restarts it. */
        EXPECT_OK(moela_sampler_set_grammar(g, m, "gbnf", "root ::= (\"yes\" | \"no\")"));
        EXPECT_OK(constrained_text(m, g, "Is it?", 16, &out));
        CHECK(strcmp(out.text, "yes") == 0 || strcmp(out.text, "no") == 0);
        EXPECT_OK(moela_sampler_reset(g));
        EXPECT_OK(moela_sampler_is_finished(g, &finished));
        CHECK(finished == 0);
        EXPECT_OK(moela_sampler_set_grammar(g, m, "lark", "start: \"abc\""));
        EXPECT_OK(constrained_text(m, g, "Once", 16, &out));
        CHECK(strcmp(out.text, "abc") == 0);
        EXPECT_OK(moela_sampler_set_grammar(g, m, "regex", "[0-9]{3}"));
        EXPECT_OK(constrained_text(m, g, "Once", 16, &out));
        CHECK(out.len == 3 && out.text[0] >= '0' && out.text[0] <= '9');
        /* Without the constraint the toy model writes English, not "abc". */
        EXPECT_OK(moela_sampler_clear_constraint(g));
        EXPECT_OK(constrained_text(m, g, "Once", 8, &out));
        CHECK(out.len > 3 && out.text[0] != '{');
        moela_sampler_free(g);
        g = NULL;
    }

    /* Misuse: NULLs, bad schemas and grammars (the earlier constraint stays), wrong logits. */
    EXPECT_OK(moela_sampler_new(&p, &g));
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_set_json_schema, NULL, m, schema);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_set_json_schema, g, NULL, schema);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_set_json_schema, g, m, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_set_grammar, g, m, NULL, "root ::= \"a\"");
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_set_grammar, g, m, "gbnf", NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_clear_constraint, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_is_finished, NULL, &finished);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_sampler_is_finished, g, NULL);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_set_json_schema, g, m, "{\"type\":");
    CHECK(strstr(moela_last_error(), "not JSON") != NULL);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_set_json_schema, g, m,
                "{\"type\":\"strin\"}");
    CHECK(strstr(moela_last_error(), "strin") != NULL);
    EXPECT_FAIL(MOELA_STATUS_INVALID_UTF8, moela_sampler_set_json_schema, g, m, "\"\xff\"");
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_set_grammar, g, m, "ebnf", "x");
    CHECK(strstr(moela_last_error(), "must be one of") != NULL);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_set_grammar, g, m, "gbnf",
                "root ::= missing");
    CHECK(strstr(moela_last_error(), "'missing' is used but not defined") != NULL);
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_set_grammar, g, m, "lark", "start: (");
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sampler_set_grammar, g, plain, "lark",
                "start: \"a\"");
    CHECK(strstr(moela_last_error(), "tokenizer") != NULL);
    EXPECT_OK(moela_sampler_set_grammar(g, m, "gbnf", "root ::= \"a\""));
    {
        float logits[4] = {0.0f, 1.0f, 2.0f, 3.0f};
        uint32_t tok = 0;
        EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_sample_logits, g, logits, 4, NULL, 0, &tok);
        CHECK(strstr(moela_last_error(), "vocabulary") != NULL);
    }
    /* The earlier good constraint is still there after the failures. */
    EXPECT_OK(constrained_text(m, g, "Once", 16, &out));
    CHECK(strcmp(out.text, "a") == 0);
    moela_sampler_free(g);
}

static void test_text(const moela_model *m) {
    static const char bad_utf8[] = "abc\xff\xfe";
    static const char hello[] = "Hello, world";
    uint32_t toks[64];
    size_t n = 0;
    char buf[256];
    moela_model_info info;
    moela_detokenizer *d = (moela_detokenizer *)(void *)&n;
    moela_chat_message msgs[2];
    int has_tokenizer;

    EXPECT_OK(moela_model_get_info(m, &info, sizeof info));
    has_tokenizer = (info.flags & MOELA_MODEL_INFO_HAS_TOKENIZER) != 0;

    /* Argument checks come before anything else. */
    EXPECT_FAIL(MOELA_STATUS_INVALID_UTF8, moela_tokenize, m, bad_utf8, 5, 0, toks, 64, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_tokenize, NULL, hello, 5, 0, toks, 64, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_tokenize, m, NULL, 5, 0, toks, 64, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_tokenize, m, hello, 5, 0, toks, 64, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_token_to_piece, NULL, 3, buf, sizeof buf, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_token_to_piece, m, 3, buf, sizeof buf, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_detokenize, m, NULL, 3, buf, sizeof buf, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_detokenizer_new, NULL, &d);
    CHECK(d == NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_detokenizer_new, m, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_detokenizer_feed, NULL, 3, NULL, NULL);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_detokenizer_flush, NULL, NULL, NULL);
    msgs[0].role = "user";
    msgs[0].content = NULL;
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_chat_apply_template, m, msgs, 1,
                MOELA_CHAT_ADD_GENERATION_PROMPT, buf, sizeof buf, &n);
    msgs[0].content = bad_utf8;
    EXPECT_FAIL(MOELA_STATUS_INVALID_UTF8, moela_chat_apply_template, m, msgs, 1, 0, buf,
                sizeof buf, &n);
    msgs[0].content = hello;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_chat_apply_template, m, msgs, 1, 0x40, buf,
                sizeof buf, &n);
    EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_chat_apply_template, m, NULL, 1, 0, buf,
                sizeof buf, &n);
    {
        moela_session_params sp = session_params(32);
        moela_session *s = NULL;
        moela_sampler *g = greedy_sampler();
        moela_generate_params gp;
        EXPECT_OK(moela_generate_default_params(&gp, sizeof gp));
        EXPECT_OK(moela_session_new(m, &sp, &s));
        EXPECT_FAIL(MOELA_STATUS_INVALID_UTF8, moela_generate, s, g, bad_utf8, 5, &gp, on_piece,
                    NULL);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate, s, g, hello, 5, &gp, NULL, NULL);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_generate, s, g, NULL, 5, &gp, on_piece, NULL);
        if (!has_tokenizer) {
            EXPECT_FAIL(MOELA_STATUS_UNSUPPORTED, moela_generate, s, g, hello, 5, &gp, on_piece,
                        NULL);
        }
        moela_sampler_free(g);
        moela_session_free(s);
    }

    if (!has_tokenizer) {
        /* Every text function says so, clearly. */
        EXPECT_FAIL(MOELA_STATUS_UNSUPPORTED, moela_tokenize, m, hello, 5, 0, toks, 64, &n);
        CHECK(strstr(moela_last_error(), "tokenizer") != NULL);
        EXPECT_FAIL(MOELA_STATUS_UNSUPPORTED, moela_token_to_piece, m, 3, buf, sizeof buf, &n);
        EXPECT_FAIL(MOELA_STATUS_UNSUPPORTED, moela_detokenize, m, toks, 0, buf, sizeof buf, &n);
        EXPECT_FAIL(MOELA_STATUS_UNSUPPORTED, moela_detokenizer_new, m, &d);
        CHECK(d == NULL);
        EXPECT_FAIL(MOELA_STATUS_UNSUPPORTED, moela_chat_apply_template, m, msgs, 1, 0, buf,
                    sizeof buf, &n);
        return;
    }

    /* With a tokenizer: a role the template would drop is refused, naming it. */
    msgs[0].role = "user";
    msgs[0].content = hello;
    msgs[1].role = "wizard";
    msgs[1].content = "abracadabra";
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_chat_apply_template, m, msgs, 2,
                MOELA_CHAT_ADD_GENERATION_PROMPT, buf, sizeof buf, &n);
    CHECK(strstr(moela_last_error(), "chat message 1 has role \"wizard\"") != NULL);
    msgs[1].role = "";
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_chat_apply_template, m, msgs, 2, 0, buf,
                sizeof buf, &n);
    msgs[1].role = "assistant";
    EXPECT_OK(moela_chat_apply_template(m, msgs, 2, 0, buf, sizeof buf, &n));
    CHECK(strstr(buf, hello) != NULL && strstr(buf, "abracadabra") != NULL);

    /* With a tokenizer: sizes, round trip, streaming. */
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_tokenize, m, hello, 5, 0x10, toks, 64, &n);
    EXPECT_FAIL(MOELA_STATUS_BUFFER_TOO_SMALL, moela_tokenize, m, hello, strlen(hello), 0, NULL,
                0, &n);
    CHECK(n > 0 && n <= 64);
    EXPECT_OK(moela_tokenize(m, hello, strlen(hello), 0, toks, n, &n));
    EXPECT_FAIL(MOELA_STATUS_BUFFER_TOO_SMALL, moela_detokenize, m, toks, n, buf, 3, &n);
    EXPECT_OK(moela_tokenize(m, hello, strlen(hello), 0, toks, 64, &n));
    {
        size_t len = 0;
        EXPECT_OK(moela_detokenize(m, toks, n, buf, sizeof buf, &len));
        CHECK(len == strlen(hello) && strcmp(buf, hello) == 0);
    }
    EXPECT_FAIL(MOELA_STATUS_TOKEN_OUT_OF_RANGE, moela_token_to_piece, m, info.n_vocab, buf,
                sizeof buf, &n);
    EXPECT_OK(moela_detokenizer_new(m, &d));
    {
        const char *piece = NULL;
        size_t len = 0;
        EXPECT_FAIL(MOELA_STATUS_TOKEN_OUT_OF_RANGE, moela_detokenizer_feed, d, info.n_vocab,
                    &piece, &len);
        EXPECT_OK(moela_detokenizer_feed(d, toks[0], &piece, &len));
        CHECK(piece != NULL && strlen(piece) == len);
        EXPECT_OK(moela_detokenizer_flush(d, &piece, &len));
    }
    moela_detokenizer_free(d);
}

/* The session keeps the model alive: the handle may go first. */
static void test_model_freed_first(void) {
    static const uint32_t t[] = {9, 8, 7};
    moela_model *m = load(hf_dir);
    moela_session_params p = session_params(16);
    moela_session *s = NULL;
    float logits[256];
    EXPECT_OK(moela_session_new(m, &p, &s));
    moela_model_free(m);
    EXPECT_OK(moela_session_eval(s, t, 3));
    EXPECT_OK(moela_session_logits(s, logits, 256, NULL));
    moela_session_free(s);
}

/* The GGUF conversion gives the same greedy tokens as the HF directory. */
static void test_gguf_matches_hf(const moela_model *hf, const moela_model *gguf) {
    static const uint32_t prompt[] = {4, 5, 6, 7};
    uint32_t a[8], b[8];
    moela_session_params p = session_params(32);
    moela_session *s1 = NULL, *s2 = NULL;
    EXPECT_OK(moela_session_new(hf, &p, &s1));
    EXPECT_OK(moela_session_new(gguf, &p, &s2));
    manual_greedy(s1, prompt, 4, a, 8);
    manual_greedy(s2, prompt, 4, b, 8);
    CHECK(memcmp(a, b, sizeof a) == 0);
    moela_session_free(s1);
    moela_session_free(s2);
}

/* An expert budget of 0 (every expert streamed through one slot) gives the same tokens as
 * the unbudgeted model, and the cache counts what it did. */
static void test_expert_budget(const moela_model *plain, const char *path) {
    static const uint32_t prompt[] = {4, 5, 6, 7};
    uint32_t a[8], b[8];
    moela_model_params mp = model_params();
    moela_session_params p = session_params(32);
    moela_model *m = NULL, *bad = NULL;
    moela_session *s1 = NULL, *s2 = NULL;
    moela_expert_cache_stats st;
    mp.expert_budget_bytes = 0;
    EXPECT_OK(moela_model_load(path, &mp, &m));
    if (!m) return;
    EXPECT_OK(moela_session_new(plain, &p, &s1));
    EXPECT_OK(moela_session_new(m, &p, &s2));
    manual_greedy(s1, prompt, 4, a, 8);
    manual_greedy(s2, prompt, 4, b, 8);
    CHECK(memcmp(a, b, sizeof a) == 0);
    EXPECT_OK(moela_model_expert_cache_stats(m, &st, sizeof st));
    CHECK((st.flags & MOELA_EXPERT_CACHE_ENABLED) != 0);
    CHECK(st.n_slots == 1 && st.misses > 0 && st.bytes_read > 0);
    CHECK(st.resident_bytes <= st.slot_bytes && st.rss_peak_bytes > 0);
    mp.flags = 1u << 30;
    EXPECT_FAIL(MOELA_STATUS_INVALID_ARG, moela_model_load, path, &mp, &bad);
    CHECK(bad == NULL);
    moela_session_free(s1);
    moela_session_free(s2);
    moela_model_free(m);
    /* "auto" on a model far smaller than any machine's memory: no store at all. */
    m = NULL;
    mp = model_params();
    mp.expert_budget_bytes = MOELA_EXPERT_BUDGET_AUTO;
    EXPECT_OK(moela_model_load(path, &mp, &m));
    if (!m) return;
    EXPECT_OK(moela_model_expert_cache_stats(m, &st, sizeof st));
    CHECK((st.flags & MOELA_EXPERT_CACHE_ENABLED) == 0 && st.routed_expert_bytes > 0);
    moela_model_free(m);
}

/* Greedy continuation of `n` tokens: the tokens and the logits after each. */
static void continue_greedy(moela_session *s, size_t n_vocab, size_t n, uint32_t *toks,
                            float *rows) {
    size_t i;
    for (i = 0; i < n; i++) {
        EXPECT_OK(moela_session_logits(s, rows + i * n_vocab, n_vocab, NULL));
        toks[i] = argmax(rows + i * n_vocab, n_vocab);
        EXPECT_OK(moela_session_eval(s, &toks[i], 1));
    }
}

/* Saved sessions: save -> load -> continue equals the uninterrupted session bit for bit
 * (file and buffer, f32 and f16); the wrong model, cache type or context and corrupt states
 * fail with their statuses and leave the session unchanged. */
static void test_session_state(const moela_model *m, const moela_model *other) {
    enum { N = 300, STEPS = 5 };
    static uint32_t prompt[N];
    uint32_t ta[STEPS], tb[STEPS], pos = 0;
    moela_model_info info;
    size_t n_vocab, need = 0, need2 = 0, i;
    float *ra, *rb;
    unsigned char *buf;
    char path[1024];
    uint32_t kv;
    EXPECT_OK(moela_model_get_info(m, &info, sizeof info));
    n_vocab = info.n_vocab;
    for (i = 0; i < N; i++) prompt[i] = (uint32_t)((i * 7919 + 3) % n_vocab);
    ra = malloc(STEPS * n_vocab * sizeof *ra);
    rb = malloc(STEPS * n_vocab * sizeof *rb);
    CHECK(ra && rb);
    if (!ra || !rb) return;
    snprintf(path, sizeof path, "%s/state.bin", tmp_dir);
    for (kv = MOELA_KV_F32; kv <= MOELA_KV_F16; kv++) {
        moela_session_params p = session_params(N + STEPS);
        moela_session *a = NULL, *b = NULL, *c = NULL, *small = NULL;
        p.kv_type = kv;
        EXPECT_OK(moela_session_new(m, &p, &a));
        EXPECT_OK(moela_session_new(m, &p, &b));
        EXPECT_OK(moela_session_eval(a, prompt, N));
        EXPECT_OK(moela_session_save(a, path));
        /* The buffer variant: size query, too small, then the state. */
        EXPECT_FAIL(MOELA_STATUS_BUFFER_TOO_SMALL, moela_session_save_buffer, a, NULL, 0, &need);
        CHECK(need > (size_t)N * 4 + n_vocab * 4);
        buf = malloc(need);
        CHECK(buf != NULL);
        if (!buf) return;
        EXPECT_FAIL(MOELA_STATUS_BUFFER_TOO_SMALL, moela_session_save_buffer, a, buf, need - 1,
                    &need2);
        CHECK(need2 == need);
        EXPECT_OK(moela_session_save_buffer(a, buf, need, NULL));
        continue_greedy(a, n_vocab, STEPS, ta, ra);

        EXPECT_OK(moela_session_eval(b, prompt, 3));
        EXPECT_OK(moela_session_load(b, path));
        EXPECT_OK(moela_session_position(b, &pos));
        CHECK(pos == N);
        continue_greedy(b, n_vocab, STEPS, tb, rb);
        CHECK(memcmp(ta, tb, sizeof ta) == 0);
        CHECK(memcmp(ra, rb, STEPS * n_vocab * sizeof *ra) == 0);

        EXPECT_OK(moela_session_load_buffer(b, buf, need));
        continue_greedy(b, n_vocab, STEPS, tb, rb);
        CHECK(memcmp(ta, tb, sizeof ta) == 0);
        CHECK(memcmp(ra, rb, STEPS * n_vocab * sizeof *ra) == 0);

        /* Misuse and mismatches: the session keeps its state. */
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_save, NULL, path);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_save, a, NULL);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_load, b, NULL);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_load_buffer, NULL, buf, need);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_load_buffer, b, NULL, need);
        EXPECT_FAIL(MOELA_STATUS_NULL_ARG, moela_session_save_buffer, a, NULL, (size_t)-1, NULL);
        EXPECT_FAIL(MOELA_STATUS_BAD_FORMAT, moela_session_load_buffer, b, buf, need - 1);
        buf[need / 2] ^= 0x10;
        EXPECT_FAIL(MOELA_STATUS_BAD_FORMAT, moela_session_load_buffer, b, buf, need);
        buf[need / 2] ^= 0x10;
        snprintf(path + strlen(path), 16, ".missing");
        EXPECT_FAIL(MOELA_STATUS_IO, moela_session_load, b, path);
        snprintf(path, sizeof path, "%s/state.bin", tmp_dir);
        p.kv_type = kv == MOELA_KV_F32 ? MOELA_KV_F16 : MOELA_KV_F32;
        EXPECT_OK(moela_session_new(m, &p, &c));
        EXPECT_FAIL(MOELA_STATUS_STATE_MISMATCH, moela_session_load_buffer, c, buf, need);
        moela_session_free(c);
        c = NULL;
        p.kv_type = kv;
        EXPECT_OK(moela_session_new(other, &p, &c));
        EXPECT_FAIL(MOELA_STATUS_STATE_MISMATCH, moela_session_load, c, path);
        p.n_ctx = N - 1;
        EXPECT_OK(moela_session_new(m, &p, &small));
        EXPECT_FAIL(MOELA_STATUS_CONTEXT_FULL, moela_session_load_buffer, small, buf, need);
        EXPECT_OK(moela_session_position(b, &pos));
        CHECK(pos == N + STEPS);
        free(buf);
        moela_session_free(a);
        moela_session_free(b);
        moela_session_free(c);
        moela_session_free(small);
    }
    remove(path);
    free(ra);
    free(rb);
}

int main(int argc, char **argv) {
    moela_model *hf, *gguf;
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s HF_MODEL_DIR GGUF_FILE TMP_DIR [MODEL_WITH_TOKENIZER]\n",
                argv[0]);
        return 2;
    }
    hf_dir = argv[1];
    gguf_path = argv[2];
    tmp_dir = argv[3];

    test_threads_setting();
    test_version_and_status();
    test_params();
    test_load_misuse();
    hf = load(hf_dir);
    gguf = load(gguf_path);
    if (!hf || !gguf) {
        fprintf(stderr, "cannot load the test models\n");
        return 1;
    }
    test_info(hf, 0);
    test_info(gguf, 1);
    test_session_misuse(hf);
    test_eval_logits_sample(hf);
    test_context_full(hf);
    test_generate(hf);
    test_generate(gguf);
    test_session_state(hf, gguf);
    test_text(hf);
    if (argc == 5) {
        /* The text functions for real: a model that carries a tokenizer. */
        moela_model *text = load(argv[4]);
        CHECK(text != NULL);
        if (text) {
            moela_model_info info;
            EXPECT_OK(moela_model_get_info(text, &info, sizeof info));
            CHECK((info.flags & MOELA_MODEL_INFO_HAS_TOKENIZER) != 0);
            test_text(text);
            test_constrained(text, hf);
            moela_model_free(text);
        }
    }
    test_model_freed_first();
    test_gguf_matches_hf(hf, gguf);
    test_expert_budget(gguf, gguf_path);
    moela_model_free(hf);
    moela_model_free(gguf);

    if (failures) {
        fprintf(stderr, "test_capi: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_capi: all %d checks passed\n", checks);
    return 0;
}
