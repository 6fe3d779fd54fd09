/* One model shared by four threads stylizing at once: every result equals the single-thread
 * one, and each thread's error message is its own.
 * Usage: test_threads FIXTURE_MODEL [--quick]   (--quick: one round, for valgrind) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { W = 48, H = 40, THREADS = 4 };

static int rounds = 3;

static const cg_model *model;
static const cg_options *shared_opts;
static uint8_t src[W * H * 4];
static uint8_t reference[W * H * 4];

typedef struct {
    int index;
    uint8_t out[W * H * 4];
    int ok;
} job;

static void *work(void *arg) {
    job *j = arg;
    cg_image s = {src, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {j->out, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    j->ok = 1;
    for (int r = 0; r < rounds; r++) {
        memset(j->out, 0, sizeof j->out);
        /* Odd threads share one options handle, even ones use the defaults. */
        const cg_options *o = j->index % 2 ? shared_opts : NULL;
        if (cg_model_stylize(model, &s, &d, o, NULL, NULL) != CG_OK) {
            fprintf(stderr, "thread %d: %s\n", j->index, cg_last_error_message());
            j->ok = 0;
        }
        if (memcmp(j->out, reference, sizeof reference) != 0) j->ok = 0;
    }
    /* A failure on this thread sets this thread's message only. */
    cg_options *mine = NULL;
    if (cg_options_new(&mine) != CG_OK) j->ok = 0;
    /* 1..63 are refused (0 means "let the memory plan choose"). */
    if (cg_options_set_tile_size(mine, (uint32_t)j->index + 1) != CG_ERR_INVALID_ARGUMENT)
        j->ok = 0;
    char want[64];
    snprintf(want, sizeof want, "tile size %d ", j->index + 1);
    if (strstr(cg_last_error_message(), want) == NULL) j->ok = 0;
    cg_options_free(mine);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_MODEL [--quick]\n", argv[0]);
        return 2;
    }
    if (argc > 2 && strcmp(argv[2], "--quick") == 0) rounds = 1;
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(argv[1], NULL, &m), CG_OK);
    model = m;
    cg_options *o = NULL;
    CHECK_STATUS(cg_options_new(&o), CG_OK);
    CHECK_STATUS(cg_options_set_threads(o, 2), CG_OK);
    shared_opts = o;

    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)((i * 7 + i / 97) % 256);
    cg_image s = {src, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {reference, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    CHECK_STATUS(cg_model_stylize(model, &s, &d, NULL, NULL, NULL), CG_OK);

    /* The main thread's message, set before the workers run, survives their failures. */
    CHECK_STATUS(cg_options_set_strength(o, 2.0f), CG_ERR_INVALID_ARGUMENT);

    static job jobs[THREADS];
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i].index = i;
        CHECK(pthread_create(&tid[i], NULL, work, &jobs[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(tid[i], NULL) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(jobs[i].ok);
    CHECK_MESSAGE("strength 2");

    cg_options_free(o);
    cg_model_free(m);
    printf("test_threads: %d threads x %d rounds on one model: identical outputs\n", THREADS,
           rounds);
    printf("test_threads: ok\n");
    return 0;
}
