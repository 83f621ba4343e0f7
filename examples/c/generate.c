/*
 * Generate with moela from C.
 *
 *   generate MODEL --tokens 1,2,3 [-n 32] [--temp 0] [--seed 0]   prints the generated ids
 *   generate MODEL "Once upon a time" [-n 32] [--temp 0.8]        streams text (needs a
 *                                                                   model with a tokenizer)
 *
 * Build: cc generate.c $(pkg-config --cflags --libs moela) -o generate
 */
#include <moela.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, moela_last_error());
    return 1;
}

static int32_t print_token(uint32_t token, void *user_data) {
    (void)user_data;
    printf("%u ", token);
    fflush(stdout);
    return 0; /* 0 = go on */
}

static int32_t print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* "1,2,3" -> ids; returns the count, or 0 on a bad list. */
static size_t parse_tokens(const char *s, uint32_t *out, size_t max) {
    size_t n = 0;
    while (*s && n < max) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v > 0xFFFFFFFFul) return 0;
        out[n++] = (uint32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return n;
}

int main(int argc, char **argv) {
    const char *model_path, *prompt = NULL, *token_list = NULL;
    uint32_t tokens[4096];
    size_t n_tokens = 0;
    int i, ret = 1;
    moela_model_params mp;
    moela_session_params sp;
    moela_sampling_params smp;
    moela_generate_params gp;
    moela_model *model = NULL;
    moela_session *session = NULL;
    moela_sampler *sampler = NULL;
    moela_status st;

    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL (PROMPT | --tokens 1,2,3) [-n N] [--temp T] [--seed S]\n",
                argv[0]);
        return 2;
    }
    /* Every params struct starts from the library's defaults. */
    if (moela_model_default_params(&mp, sizeof mp) || moela_session_default_params(&sp, sizeof sp) ||
        moela_sampling_default_params(&smp, sizeof smp) ||
        moela_generate_default_params(&gp, sizeof gp))
        return fail("default params");
    smp.temperature = 0.0f; /* greedy unless --temp */
    gp.max_tokens = 32;

    model_path = argv[1];
    for (i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) token_list = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) gp.max_tokens = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) smp.temperature = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) smp.seed = strtoull(argv[++i], NULL, 10);
        else prompt = argv[i];
    }

    if (moela_model_load(model_path, &mp, &model) != MOELA_STATUS_OK) return fail("load");
    if (moela_session_new(model, &sp, &session) != MOELA_STATUS_OK) {
        fail("session");
        goto out;
    }
    if (moela_sampler_new(&smp, &sampler) != MOELA_STATUS_OK) {
        fail("sampler");
        goto out;
    }

    if (token_list) {
        n_tokens = parse_tokens(token_list, tokens, sizeof tokens / sizeof tokens[0]);
        if (n_tokens == 0) {
            fprintf(stderr, "bad --tokens list: %s\n", token_list);
            goto out;
        }
        st = moela_generate_tokens(session, sampler, tokens, n_tokens, &gp, print_token, NULL);
    } else if (prompt) {
        gp.flags |= MOELA_GENERATE_ADD_BOS;
        st = moela_generate(session, sampler, prompt, strlen(prompt), &gp, print_piece, NULL);
    } else {
        fprintf(stderr, "give a prompt or --tokens\n");
        goto out;
    }
    printf("\n");
    if (st != MOELA_STATUS_OK) {
        fail("generate");
        goto out;
    }
    ret = 0;
out:
    /* Free in any order; NULL is fine. */
    moela_sampler_free(sampler);
    moela_session_free(session);
    moela_model_free(model);
    return ret;
}
