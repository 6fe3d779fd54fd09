/* Stress: 8 threads x 50 cg_model_stylize calls on one shared model, each call with one of
 * several strengths (one options handle per strength, shared read-only by all threads); every
 * output must equal, byte for byte, the single-threaded result for the same strength.
 * Usage: test_stress FIXTURE_MODEL [--quick]   (--quick: 1 call a thread, for valgrind) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { W = 32, H = 32, THREADS = 8, STRENGTHS = 5 };

static int calls = 50;

static const float strengths[STRENGTHS] = {0.0f, 0.3f, 0.55f, 0.8f, 1.0f};
static const cg_model *model;
static cg_options *opts[STRENGTHS];
static uint8_t src[W * H * 4];
static uint8_t reference[STRENGTHS][W * H * 4];

typedef struct {
    int index;
    int done;
    int mismatches;
    int failures;
    uint8_t out[W * H * 4];
} job;

static void *work(void *arg) {
    job *j = arg;
    cg_image s = {src, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {j->out, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    for (int i = 0; i < calls; i++) {
        /* A different strength sequence on every thread. */
        int k = (j->index * 3 + i * (j->index % 2 ? 1 : 2)) % STRENGTHS;
        memset(j->out, 0xA5, sizeof j->out);
        if (cg_model_stylize(model, &s, &d, opts[k], NULL, NULL) != CG_OK) {
            fprintf(stderr, "thread %d call %d: %s\n", j->index, i, cg_last_error_message());
            j->failures++;
        } else if (memcmp(j->out, reference[k], sizeof j->out) != 0) {
            fprintf(stderr, "thread %d call %d (strength %g): output differs\n", j->index, i,
                    (double)strengths[k]);
            j->mismatches++;
        }
        j->done++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_MODEL [--quick]\n", argv[0]);
        return 2;
    }
    if (argc > 2 && strcmp(argv[2], "--quick") == 0) calls = 1;
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(argv[1], NULL, &m), CG_OK);
    model = m;

    /* Different content everywhere, with a varying alpha that must pass through. */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = &src[(y * W + x) * 4];
            p[0] = (uint8_t)(x * 8);
            p[1] = (uint8_t)(y * 8);
            p[2] = (uint8_t)((x * y * 13 + 7) % 256);
            p[3] = (uint8_t)(255 - x - y);
        }
    for (int k = 0; k < STRENGTHS; k++) {
        CHECK_STATUS(cg_options_new(&opts[k]), CG_OK);
        CHECK_STATUS(cg_options_set_strength(opts[k], strengths[k]), CG_OK);
        /* One handle runs on its own worker pool, shared by every thread using it. */
        if (k == 2) CHECK_STATUS(cg_options_set_threads(opts[k], 2), CG_OK);
        cg_image s = {src, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
        cg_image d = {reference[k], W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
        CHECK_STATUS(cg_model_stylize(model, &s, &d, opts[k], NULL, NULL), CG_OK);
    }
    /* The strengths really differ, so a mix-up between calls would be seen. */
    CHECK(memcmp(reference[0], src, sizeof src) == 0);
    for (int k = 1; k < STRENGTHS; k++)
        CHECK(memcmp(reference[k], reference[k - 1], sizeof src) != 0);

    static job jobs[THREADS];
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i].index = i;
        CHECK(pthread_create(&tid[i], NULL, work, &jobs[i]) == 0);
    }
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(tid[i], NULL) == 0);
        CHECK(jobs[i].failures == 0);
        CHECK(jobs[i].mismatches == 0);
        total += jobs[i].done;
    }
    CHECK(total == THREADS * calls);

    for (int k = 0; k < STRENGTHS; k++) cg_options_free(opts[k]);
    cg_model_free(m);
    printf("test_stress: %d threads x %d calls, %d strengths: all outputs identical to the "
           "single-threaded ones\n",
           THREADS, calls, STRENGTHS);
    printf("test_stress: ok\n");
    return 0;
}
