/*
 * Speculative decoding through the C API (moela_generate_params.spec_mode / max_draft,
 * moela_session_spec_stats): greedy output equals plain greedy output token for token with
 * prompt lookup (the default model, which repeats itself, and the MTP fixture) and with the
 * MTP module (the MTP fixture, random, and the default model's trained one), at several draft
 * lengths; the counters add up; a seeded sampled
 * run is reproducible; an older caller's smaller moela_generate_params still works; every
 * misuse is a status. Built as C99 with -Wall -Wextra -Werror -pedantic and
 * -fsanitize=address,undefined by tools/test_capi.sh.
 *
 *   test_spec DEFAULT_MODEL MTP_MODEL PLAIN_MODEL
 *
 * DEFAULT_MODEL has a tokenizer and a trained multi-token-prediction module, MTP_MODEL a random
 * one, PLAIN_MODEL none.
 */
#include "moela.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

#define EXPECT_STATUS(want, call)                                                          \
    do {                                                                                   \
        moela_status st_ = (call);                                                         \
        checks++;                                                                          \
        if (st_ != (want)) {                                                               \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n  last error: %s\n", \
                    __FILE__, __LINE__, #call, (int)st_, moela_status_string(st_),         \
                    (int)(want), moela_last_error());                                      \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#define EXPECT_OK(call) EXPECT_STATUS(MOELA_STATUS_OK, call)

#define MAX_TOKENS 48

typedef struct {
    uint32_t tokens[MAX_TOKENS];
    size_t n;
} collect;

static int32_t on_token(uint32_t token, void *user_data) {
    collect *c = (collect *)user_data;
    if (c->n < MAX_TOKENS) c->tokens[c->n] = token;
    c->n++;
    return 0;
}

static moela_model *load(const char *path) {
    moela_model_params p;
    moela_model *m = NULL;
    EXPECT_OK(moela_model_default_params(&p, sizeof p));
    EXPECT_OK(moela_model_load(path, &p, &m));
    CHECK(m != NULL);
    return m;
}

static moela_sampler *sampler(float temperature, uint64_t seed) {
    moela_sampling_params p;
    moela_sampler *s = NULL;
    EXPECT_OK(moela_sampling_default_params(&p, sizeof p));
    p.temperature = temperature;
    p.seed = seed;
    EXPECT_OK(moela_sampler_new(&p, &s));
    CHECK(s != NULL);
    return s;
}

static int has_mtp(const moela_model *m) {
    moela_model_info info;
    EXPECT_OK(moela_model_get_info(m, &info, sizeof info));
    return (info.flags & MOELA_MODEL_INFO_HAS_MTP) != 0;
}

/* Generates n tokens after `prompt` on a fresh session; fills `stats` (may be NULL). */
static moela_status run(const moela_model *m, moela_sampler *g, const uint32_t *prompt,
                        size_t n_prompt, uint32_t spec_mode, uint32_t max_draft, uint32_t n,
                        collect *out, moela_spec_stats *stats) {
    moela_session_params sp;
    moela_session *s = NULL;
    moela_generate_params gp;
    moela_status st;
    uint32_t pos = 0;
    EXPECT_OK(moela_session_default_params(&sp, sizeof sp));
    sp.n_ctx = 256;
    EXPECT_OK(moela_session_new(m, &sp, &s));
    EXPECT_OK(moela_generate_default_params(&gp, sizeof gp));
    gp.max_tokens = n;
    gp.flags = MOELA_GENERATE_IGNORE_EOS;
    gp.spec_mode = spec_mode;
    gp.max_draft = max_draft;
    memset(out, 0, sizeof *out);
    st = moela_generate_tokens(s, g, prompt, n_prompt, &gp, on_token, out);
    if (st == MOELA_STATUS_OK) {
        EXPECT_OK(moela_session_position(s, &pos));
        CHECK(pos == n_prompt + n);
    }
    if (stats) {
        memset(stats, 0xAB, sizeof *stats);
        EXPECT_OK(moela_session_spec_stats(s, stats, sizeof *stats));
    }
    moela_session_free(s);
    return st;
}

/* Greedy speculative output == plain greedy output; the counters are consistent. Returns
   the drafts accepted over all draft lengths. */
static uint64_t check_greedy(const moela_model *m, const uint32_t *prompt, size_t n_prompt,
                             uint32_t spec_mode) {
    static const uint32_t drafts[] = {1, 2, 4, 7};
    moela_sampler *g = sampler(0.0f, 0);
    collect want, got;
    moela_spec_stats st;
    uint64_t accepted = 0;
    size_t i;
    EXPECT_OK(run(m, g, prompt, n_prompt, MOELA_SPEC_OFF, 4, MAX_TOKENS, &want, &st));
    CHECK(want.n == MAX_TOKENS);
    /* Plain decoding counts nothing. */
    CHECK(st.struct_size == sizeof st && st.spec_mode == MOELA_SPEC_OFF && st.passes == 0 &&
          st.drafted == 0 && st.accepted == 0 && st.emitted == 0);
    for (i = 0; i < sizeof drafts / sizeof drafts[0]; i++) {
        EXPECT_OK(run(m, g, prompt, n_prompt, spec_mode, drafts[i], MAX_TOKENS, &got, &st));
        CHECK(got.n == MAX_TOKENS);
        if (memcmp(got.tokens, want.tokens, sizeof want.tokens) != 0) {
            fprintf(stderr, "spec_mode %u, max_draft %u: not plain greedy's tokens\n",
                    (unsigned)spec_mode, (unsigned)drafts[i]);
            CHECK(0);
        }
        CHECK(st.spec_mode == spec_mode);
        CHECK(st.passes > 0 && st.passes <= MAX_TOKENS);
        CHECK(st.accepted <= st.drafted);
        CHECK(st.drafted <= st.passes * drafts[i]);
        CHECK(st.emitted == st.passes + st.accepted);
        CHECK(st.emitted >= MAX_TOKENS);
        accepted += st.accepted;
        printf("  spec_mode %u, max_draft %u: %llu passes, %llu of %llu drafts accepted\n",
               (unsigned)spec_mode, (unsigned)drafts[i], (unsigned long long)st.passes,
               (unsigned long long)st.accepted, (unsigned long long)st.drafted);
    }
    moela_sampler_free(g);
    return accepted;
}

/* The same seed and settings give the same sampled tokens. */
static void check_sampled_reproducible(const moela_model *m, const uint32_t *prompt,
                                       size_t n_prompt, uint32_t spec_mode) {
    collect a, b;
    moela_spec_stats sa, sb;
    moela_sampler *g = sampler(0.8f, 7);
    moela_sampler *h = sampler(0.8f, 7);
    EXPECT_OK(run(m, g, prompt, n_prompt, spec_mode, 4, MAX_TOKENS, &a, &sa));
    EXPECT_OK(run(m, h, prompt, n_prompt, spec_mode, 4, MAX_TOKENS, &b, &sb));
    CHECK(a.n == MAX_TOKENS && b.n == MAX_TOKENS);
    CHECK(memcmp(a.tokens, b.tokens, sizeof a.tokens) == 0);
    CHECK(memcmp(&sa, &sb, sizeof sa) == 0);
    CHECK(sa.accepted <= sa.drafted && sa.emitted == sa.passes + sa.accepted);
    moela_sampler_free(g);
    moela_sampler_free(h);
}

static void test_default_model(const char *path) {
    static const char text[] = "And God said, Let there be light: and there was light. "
                               "And God said, Let there be light: and there was light. "
                               "And God said,";
    uint32_t prompt[128];
    size_t n_prompt = 0;
    moela_model *m = load(path);
    if (!m) return;
    /* The default model ships a trained MTP module (models/README.md). */
    CHECK(has_mtp(m));
    EXPECT_OK(moela_tokenize(m, text, strlen(text), MOELA_TOKENIZE_ADD_BOS, prompt, 128,
                             &n_prompt));
    CHECK(n_prompt > 8 && n_prompt <= 128);
    printf("default model, lookup:\n");
    /* The model repeats the sentence: lookup's drafts are accepted. */
    CHECK(check_greedy(m, prompt, n_prompt, MOELA_SPEC_LOOKUP) > 0);
    check_sampled_reproducible(m, prompt, n_prompt, MOELA_SPEC_LOOKUP);
    printf("default model, mtp:\n");
    /* Its trained module's drafts are accepted on this text too. */
    CHECK(check_greedy(m, prompt, n_prompt, MOELA_SPEC_MTP) > 0);
    check_sampled_reproducible(m, prompt, n_prompt, MOELA_SPEC_MTP);
    {
        /* A constrained sampler does not speculate. */
        moela_sampler *g = sampler(0.0f, 0);
        collect c;
        EXPECT_OK(moela_sampler_set_json_schema(g, m, "{\"type\": \"integer\"}"));
        EXPECT_STATUS(MOELA_STATUS_INVALID_ARG,
                      run(m, g, prompt, n_prompt, MOELA_SPEC_LOOKUP, 4, 8, &c, NULL));
        CHECK(c.n == 0);
        moela_sampler_free(g);
    }
    moela_model_free(m);
}

static void test_mtp_model(const char *path) {
    static const uint32_t prompt[] = {3, 4, 5, 6, 3, 4, 5, 6, 3, 4};
    moela_model *m = load(path);
    if (!m) return;
    CHECK(has_mtp(m));
    printf("MTP fixture, lookup:\n");
    check_greedy(m, prompt, 10, MOELA_SPEC_LOOKUP);
    printf("MTP fixture, mtp:\n");
    check_greedy(m, prompt, 10, MOELA_SPEC_MTP);
    check_sampled_reproducible(m, prompt, 10, MOELA_SPEC_MTP);
    moela_model_free(m);
}

/* An older caller's moela_generate_params (up to flags): plain decoding. */
typedef struct {
    uint32_t struct_size;
    uint32_t max_tokens;
    uint32_t flags;
} generate_params_0_1;

static void test_params_and_misuse(const char *plain_path) {
    static const uint32_t prompt[] = {1, 2, 3};
    moela_model *m = load(plain_path);
    moela_sampler *g = sampler(0.0f, 0);
    moela_session_params sp;
    moela_session *s = NULL;
    moela_generate_params gp;
    generate_params_0_1 old;
    moela_spec_stats st;
    collect want, c;
    if (!m) return;
    CHECK(!has_mtp(m));
    EXPECT_OK(moela_generate_default_params(&gp, sizeof gp));
    CHECK(gp.spec_mode == MOELA_SPEC_OFF && gp.max_draft == 4);
    CHECK(offsetof(moela_generate_params, spec_mode) == sizeof old);
    EXPECT_OK(moela_generate_default_params((moela_generate_params *)(void *)&old, sizeof old));
    CHECK(old.struct_size == sizeof old && old.max_tokens == 128);

    EXPECT_OK(run(m, g, prompt, 3, MOELA_SPEC_OFF, 4, 12, &want, NULL));
    EXPECT_OK(moela_session_default_params(&sp, sizeof sp));
    EXPECT_OK(moela_session_new(m, &sp, &s));
    old.max_tokens = 12;
    old.flags = MOELA_GENERATE_IGNORE_EOS;
    memset(&c, 0, sizeof c);
    EXPECT_OK(moela_generate_tokens(s, g, prompt, 3, (const moela_generate_params *)(void *)&old,
                                    on_token, &c));
    CHECK(c.n == 12 && memcmp(c.tokens, want.tokens, 12 * sizeof(uint32_t)) == 0);

    /* Lookup on the same session continues, and reset clears the counters. */
    gp.max_tokens = 8;
    gp.flags = MOELA_GENERATE_IGNORE_EOS;
    gp.spec_mode = MOELA_SPEC_LOOKUP;
    EXPECT_OK(moela_generate_tokens(s, g, NULL, 0, &gp, on_token, &c));
    EXPECT_OK(moela_session_spec_stats(s, &st, sizeof st));
    CHECK(st.spec_mode == MOELA_SPEC_LOOKUP && st.passes > 0 && st.emitted >= 8);
    EXPECT_OK(moela_session_reset(s));
    EXPECT_OK(moela_session_spec_stats(s, &st, sizeof st));
    CHECK(st.spec_mode == MOELA_SPEC_OFF && st.passes == 0 && st.emitted == 0);

    /* Bad values are statuses, and nothing is evaluated. */
    gp.spec_mode = 3;
    EXPECT_STATUS(MOELA_STATUS_INVALID_ARG,
                  moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    gp.spec_mode = 0xFFFFFFFFu;
    EXPECT_STATUS(MOELA_STATUS_INVALID_ARG,
                  moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    gp.spec_mode = MOELA_SPEC_LOOKUP;
    gp.max_draft = 0;
    EXPECT_STATUS(MOELA_STATUS_INVALID_ARG,
                  moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    gp.max_draft = MOELA_SPEC_MAX_DRAFT + 1;
    EXPECT_STATUS(MOELA_STATUS_INVALID_ARG,
                  moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    gp.max_draft = 4;
    gp.spec_mode = MOELA_SPEC_MTP;
    EXPECT_STATUS(MOELA_STATUS_UNSUPPORTED,
                  moela_generate_tokens(s, g, prompt, 3, &gp, on_token, &c));
    CHECK(strstr(moela_last_error(), "multi-token-prediction") != NULL);
    {
        uint32_t pos = 1;
        EXPECT_OK(moela_session_position(s, &pos));
        CHECK(pos == 0);
    }
    EXPECT_STATUS(MOELA_STATUS_NULL_ARG, moela_session_spec_stats(s, NULL, sizeof st));
    EXPECT_STATUS(MOELA_STATUS_NULL_ARG, moela_session_spec_stats(NULL, &st, sizeof st));
    EXPECT_STATUS(MOELA_STATUS_INVALID_ARG, moela_session_spec_stats(s, &st, 0));
    EXPECT_STATUS(MOELA_STATUS_INVALID_ARG, moela_session_spec_stats(s, &st, sizeof st + 8));
    moela_session_free(s);
    moela_sampler_free(g);
    moela_model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DEFAULT_MODEL MTP_MODEL PLAIN_MODEL\n", argv[0]);
        return 2;
    }
    test_default_model(argv[1]);
    test_mtp_model(argv[2]);
    test_params_and_misuse(argv[3]);
    if (failures) {
        fprintf(stderr, "test_spec: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_spec: all %d checks passed\n", checks);
    return 0;
}
