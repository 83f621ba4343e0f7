/*
 * One model shared by threads, each thread with its own session and sampler: the tokens
 * each thread generates equal those of the same work done alone, while another thread keeps
 * reading the model's info. Then one session used by two threads at once (a misuse): the
 * call that finds it in use gets MOELA_STATUS_BUSY, never MOELA_STATUS_PANIC, and the
 * session stays intact. Built with -fsanitize=address,undefined by tools/test_capi.sh.
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

/* What a second thread saw when it used a session that a generate call was running on. */
typedef struct {
    moela_session *session;
    moela_status eval, position, reset;
    char error[512];
} intruder;

static void *intruder_main(void *arg) {
    intruder *t = (intruder *)arg;
    const uint32_t tokens[2] = {1, 2};
    uint32_t pos = 0;
    t->eval = moela_session_eval(t->session, tokens, 2);
    snprintf(t->error, sizeof t->error, "%s", moela_last_error());
    t->position = moela_session_position(t->session, &pos);
    t->reset = moela_session_reset(t->session);
    return NULL;
}

typedef struct {
    intruder *t;
    uint32_t out[N_GEN];
    size_t n;
} busy_job;

/* On the first token, while moela_generate_tokens holds the session on this thread, another
 * thread tries to use it. */
static int32_t collect_and_intrude(uint32_t token, void *user_data) {
    busy_job *b = (busy_job *)user_data;
    pthread_t th;
    if (b->n == 0) {
        pthread_create(&th, NULL, intruder_main, b->t);
        pthread_join(th, NULL);
    }
    if (b->n < N_GEN) b->out[b->n] = token;
    b->n++;
    return 0;
}

/* Two threads evaluating on one session at the same time: each call is OK or BUSY. */
typedef struct {
    moela_session *session;
    int ok, busy, other;
    moela_status other_status;
    char error[512];
} racer;

static void *racer_main(void *arg) {
    racer *r = (racer *)arg;
    const uint32_t token = 3;
    int i;
    for (i = 0; i < 200; i++) {
        moela_status st = moela_session_eval(r->session, &token, 1);
        if (st == MOELA_STATUS_OK) {
            r->ok++;
        } else if (st == MOELA_STATUS_BUSY) {
            r->busy++;
        } else if (st != MOELA_STATUS_CONTEXT_FULL) {
            r->other++;
            r->other_status = st;
            snprintf(r->error, sizeof r->error, "%s", moela_last_error());
        }
    }
    return NULL;
}

static int test_busy(const moela_model *m, const job *alone0) {
    moela_session_params sp;
    moela_sampling_params smp;
    moela_generate_params gp;
    moela_session *s = NULL;
    moela_sampler *g = NULL;
    intruder t;
    busy_job b;
    racer r[2];
    pthread_t th[2];
    uint32_t pos = 0;
    const char *want = "moela_session_eval: the session is in use by another call";
    int failures = 0, i;
    memset(&t, 0, sizeof t);
    memset(&b, 0, sizeof b);
    memset(r, 0, sizeof r);
    if (moela_session_default_params(&sp, sizeof sp) != MOELA_STATUS_OK ||
        moela_sampling_default_params(&smp, sizeof smp) != MOELA_STATUS_OK ||
        moela_generate_default_params(&gp, sizeof gp) != MOELA_STATUS_OK)
        return 1;
    sp.n_ctx = 64;
    smp.temperature = 0.0f;
    gp.max_tokens = N_GEN;
    gp.flags = MOELA_GENERATE_IGNORE_EOS;
    if (moela_session_new(m, &sp, &s) != MOELA_STATUS_OK || moela_sampler_new(&smp, &g) != MOELA_STATUS_OK) {
        fprintf(stderr, "busy: %s\n", moela_last_error());
        return 1;
    }
    t.session = s;
    b.t = &t;
    if (moela_generate_tokens(s, g, alone0->prompt, 4, &gp, collect_and_intrude, &b) != MOELA_STATUS_OK) {
        fprintf(stderr, "busy: generate failed: %s\n", moela_last_error());
        failures++;
    }
    if (t.eval != MOELA_STATUS_BUSY || t.position != MOELA_STATUS_BUSY || t.reset != MOELA_STATUS_BUSY) {
        fprintf(stderr, "busy: a session in use gave eval %d, position %d, reset %d (want %d: %s)\n",
                (int)t.eval, (int)t.position, (int)t.reset, (int)MOELA_STATUS_BUSY,
                moela_status_string(MOELA_STATUS_BUSY));
        failures++;
    }
    if (strncmp(t.error, want, strlen(want)) != 0) {
        fprintf(stderr, "busy: message '%s'\n", t.error);
        failures++;
    }
    /* The refused calls changed nothing: the same tokens as alone, every one evaluated. */
    if (b.n != N_GEN || memcmp(b.out, alone0->out, sizeof b.out) != 0) {
        fprintf(stderr, "busy: the generation was disturbed\n");
        failures++;
    }
    if (moela_session_position(s, &pos) != MOELA_STATUS_OK || pos != 4 + N_GEN) {
        fprintf(stderr, "busy: position %u after generation\n", pos);
        failures++;
    }
    /* Truly concurrent calls: every one is OK or BUSY (or a full context), never PANIC. */
    for (i = 0; i < 2; i++) {
        r[i].session = s;
        pthread_create(&th[i], NULL, racer_main, &r[i]);
    }
    for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (i = 0; i < 2; i++) {
        if (r[i].other) {
            fprintf(stderr, "busy: racer %d got status %d (%s): %s\n", i, (int)r[i].other_status,
                    moela_status_string(r[i].other_status), r[i].error);
            failures++;
        }
    }
    /* The session is intact afterwards: it resets and evaluates. */
    if (moela_session_reset(s) != MOELA_STATUS_OK ||
        moela_session_eval(s, alone0->prompt, 4) != MOELA_STATUS_OK) {
        fprintf(stderr, "busy: the session is unusable afterwards: %s\n", moela_last_error());
        failures++;
    }
    moela_sampler_free(g);
    moela_session_free(s);
    if (!failures)
        printf("test_threads: a session in use is MOELA_STATUS_BUSY (%d+%d evaluations, %d+%d busy)\n",
               r[0].ok, r[1].ok, r[0].busy, r[1].busy);
    return failures;
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
    failures += test_busy(m, &alone[0]);
    moela_model_free(m);
    if (failures) return 1;
    printf("test_threads: %d threads on one model match the single-threaded tokens\n", N_THREADS);
    return 0;
}
