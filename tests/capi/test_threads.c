/*
 * One model shared by threads, each thread with its own session and sampler: the tokens
 * each thread generates equal those of the same work done alone, while another thread keeps
 * reading the model's info. Built with -fsanitize=address,undefined by tools/test_capi.sh.
 *
 *   test_threads MODEL
 */
#include "moela.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define N_THREADS 2
#define N_GEN 24

typedef struct {
    const moela_model *model;
    uint32_t prompt[4];
    uint32_t out[N_GEN];
    size_t n;
    moela_status status;
    char error[256];
} job;

static int32_t collect(uint32_t token, void *user_data) {
    job *j = (job *)user_data;
    if (j->n < N_GEN) j->out[j->n] = token;
    j->n++;
    return 0;
}

static void run(job *j) {
    moela_session_params sp;
    moela_sampling_params smp;
    moela_generate_params gp;
    moela_session *s = NULL;
    moela_sampler *g = NULL;
    int round;
    j->status = moela_session_default_params(&sp, sizeof sp);
    if (j->status == MOELA_STATUS_OK) j->status = moela_sampling_default_params(&smp, sizeof smp);
    if (j->status == MOELA_STATUS_OK) j->status = moela_generate_default_params(&gp, sizeof gp);
    sp.n_ctx = 64;
    smp.temperature = 0.0f;
    gp.max_tokens = N_GEN;
    gp.flags = MOELA_GENERATE_IGNORE_EOS;
    if (j->status == MOELA_STATUS_OK) j->status = moela_session_new(j->model, &sp, &s);
    if (j->status == MOELA_STATUS_OK) j->status = moela_sampler_new(&smp, &g);
    /* Twice, with a reset between: reuse gives the same tokens. */
    for (round = 0; round < 2 && j->status == MOELA_STATUS_OK; round++) {
        j->n = 0;
        j->status = moela_session_reset(s);
        if (j->status == MOELA_STATUS_OK)
            j->status = moela_generate_tokens(s, g, j->prompt, 4, &gp, collect, j);
    }
    if (j->status != MOELA_STATUS_OK) snprintf(j->error, sizeof j->error, "%s", moela_last_error());
    moela_sampler_free(g);
    moela_session_free(s);
}

static void *thread_main(void *arg) {
    run((job *)arg);
    return NULL;
}

/* Reads the shared model (const calls) while the generating threads run. */
static void *reader_main(void *arg) {
    const moela_model *m = (const moela_model *)arg;
    int n;
    for (n = 0; n < 20000; n++) {
        moela_model_info info;
        if (moela_model_get_info(m, &info, sizeof info) != MOELA_STATUS_OK || info.n_vocab != 256) {
            fprintf(stderr, "reader: bad info\n");
            return (void *)1;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    moela_model_params mp;
    moela_model *m = NULL;
    job alone[N_THREADS], together[N_THREADS];
    pthread_t th[N_THREADS], reader;
    void *reader_ret = NULL;
    int i, k, failures = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    if (moela_model_default_params(&mp, sizeof mp) != MOELA_STATUS_OK ||
        moela_model_load(argv[1], &mp, &m) != MOELA_STATUS_OK) {
        fprintf(stderr, "load: %s\n", moela_last_error());
        return 1;
    }
    memset(alone, 0, sizeof alone);
    for (i = 0; i < N_THREADS; i++) {
        alone[i].model = m;
        for (k = 0; k < 4; k++) alone[i].prompt[k] = (uint32_t)(10 + 7 * i + k);
        together[i] = alone[i];
        run(&alone[i]);
        if (alone[i].status != MOELA_STATUS_OK) {
            fprintf(stderr, "alone %d: %s\n", i, alone[i].error);
            return 1;
        }
    }
    if (memcmp(alone[0].out, alone[1].out, sizeof alone[0].out) == 0) {
        fprintf(stderr, "the two prompts should give different tokens\n");
        failures++;
    }
    pthread_create(&reader, NULL, reader_main, m);
    for (i = 0; i < N_THREADS; i++) pthread_create(&th[i], NULL, thread_main, &together[i]);
    for (i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    pthread_join(reader, &reader_ret);
    if (reader_ret != NULL) failures++;
    for (i = 0; i < N_THREADS; i++) {
        if (together[i].status != MOELA_STATUS_OK) {
            fprintf(stderr, "thread %d: %s\n", i, together[i].error);
            failures++;
        } else if (together[i].n != N_GEN ||
                   memcmp(together[i].out, alone[i].out, sizeof alone[i].out) != 0) {
            fprintf(stderr, "thread %d generated other tokens than alone\n", i);
            failures++;
        }
    }
    moela_model_free(m);
    if (failures) return 1;
    printf("test_threads: %d threads on one model match the single-threaded tokens\n", N_THREADS);
    return 0;
}
