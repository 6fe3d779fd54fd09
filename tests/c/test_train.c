/* Training through the C ABI: settings errors, a run cancelled from the progress callback
 * and resumed in a new handle gives the same style as an uninterrupted run, exports load.
 * Usage: test_train CONTENT_DIR STYLE_DIR SCRATCH_DIR
 * The folders hold a few tiny generated images; the networks are tiny, so the runs take
 * seconds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"

enum { TOTAL = 6, EVERY = 2, SIDE = 20 };

static const char *content, *style, *scratch;

/* The settings of a tiny run of `total` iterations writing into SCRATCH/<name>, plus `extra`
 * keys. */
static char *settings(const char *name, int total, const char *extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"content\": \"%s\", \"style\": \"%s\", \"out\": \"%s/%s\", \"iterations\": %d, "
             "\"size\": 32, \"ngf\": 4, \"ndf\": 4, \"blocks\": 1, \"checkpoint_every\": %d, "
             "\"seed\": 7%s}",
             content, style, scratch, name, total, EVERY, extra);
    return buf;
}

static char *path_in(const char *name, const char *file) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s/%s", scratch, name, file);
    return buf;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

struct counter {
    int calls;
    int stop_at; /* the call that returns false; 0: never */
    float last;
};

static bool count_progress(void *user_data, float fraction) {
    struct counter *c = user_data;
    c->calls++;
    CHECK(fraction > c->last && fraction <= 1.0f);
    c->last = fraction;
    return c->calls != c->stop_at;
}

/* Stylizes a fixed pattern with the style file at `path` into `out` (SIDE x SIDE RGB8). */
static void stylize_with(const char *path, uint8_t *out) {
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(path, NULL, &m), CG_OK);
    uint8_t src[SIDE * SIDE * 3];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 37 % 251);
    cg_image s = {src, SIDE, SIDE, SIDE * 3, CG_PIXEL_FORMAT_RGB8};
    cg_image d = {out, SIDE, SIDE, SIDE * 3, CG_PIXEL_FORMAT_RGB8};
    CHECK_STATUS(cg_model_stylize(m, &s, &d, NULL, NULL, NULL), CG_OK);
    cg_model_free(m);
}

static void test_bad_settings(void) {
    cg_trainer *t = (cg_trainer *)&t; /* not NULL, so clearing it is visible */
    CHECK_STATUS(cg_trainer_new(NULL, NULL, &t), CG_ERR_INVALID_ARGUMENT);
    CHECK(t == NULL);
    CHECK_STATUS(cg_trainer_new("{}", NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_trainer_new("{\"out\": ", NULL, &t), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("not valid JSON");
    CHECK_STATUS(cg_trainer_new("\"run\"", NULL, &t), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("JSON object");
    CHECK_STATUS(cg_trainer_new("{\"out\": \"x\", \"iteratons\": 5}", NULL, &t),
                 CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("iteratons");
    CHECK_STATUS(cg_trainer_new("{\"out\": \"x\", \"size\": \"big\"}", NULL, &t),
                 CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("size");
    CHECK_STATUS(cg_trainer_new("{\"out\": \"\xff\"}", NULL, &t), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("UTF-8");

    char json[4096];
    snprintf(json, sizeof json,
             "{\"content\": \"%s/no-such-folder\", \"style\": \"%s\", \"out\": \"%s/bad\", "
             "\"iterations\": 2}",
             scratch, style, scratch);
    CHECK_STATUS(cg_trainer_new(json, NULL, &t), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("no-such-folder");
    CHECK(t == NULL);
    CHECK(!exists(path_in("bad", ""))); /* a failed start leaves nothing behind */

    CHECK_STATUS(cg_trainer_new(settings("never", TOTAL, ", \"resume\": true"), NULL, &t),
                 CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("no checkpoint");
    CHECK_STATUS(cg_trainer_new(settings("never", TOTAL, ", \"lr\": -1"), NULL, &t),
                 CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("learning rate");

    CHECK_STATUS(cg_trainer_run(NULL, 1, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_trainer_save_style(NULL, "x"), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_trainer_last_losses(NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK(cg_trainer_iteration(NULL) == 0 && cg_trainer_total_iterations(NULL) == 0);
    cg_trainer_free(NULL);
}

int main(int argc, char **argv) {
    CHECK(argc == 4);
    content = argv[1];
    style = argv[2];
    scratch = argv[3];
    test_bad_settings();

    cg_options *opts = NULL;
    CHECK_STATUS(cg_options_new(&opts), CG_OK);
    CHECK_STATUS(cg_options_set_backend(opts, CG_BACKEND_CPU), CG_OK);
    CHECK_STATUS(cg_options_set_threads(opts, 2), CG_OK);

    /* Uninterrupted: the whole run in one call. */
    cg_trainer *t = NULL;
    CHECK_STATUS(cg_trainer_new(settings("straight", TOTAL, ""), opts, &t), CG_OK);
    CHECK(cg_trainer_iteration(t) == 0 && cg_trainer_total_iterations(t) == TOTAL);
    cg_train_losses losses;
    CHECK_STATUS(cg_trainer_last_losses(t, &losses), CG_ERR_INVALID_ARGUMENT);
    struct counter c = {0, 0, 0.0f};
    CHECK_STATUS(cg_trainer_run(t, UINT64_MAX, count_progress, &c), CG_OK);
    CHECK(c.calls == TOTAL && c.last == 1.0f);
    CHECK(cg_trainer_iteration(t) == TOTAL);
    CHECK_STATUS(cg_trainer_last_losses(t, &losses), CG_OK);
    CHECK(losses.g > 0 && losses.cycle > 0 && losses.d_a > 0 && losses.d_b > 0);
    CHECK_STATUS(cg_trainer_save_style(t, path_in("straight", "style.safetensors")), CG_OK);
    /* A finished run does nothing more. */
    CHECK_STATUS(cg_trainer_run(t, 5, count_progress, &c), CG_OK);
    CHECK(c.calls == TOTAL);
    CHECK_STATUS(cg_trainer_save_style(t, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_trainer_save_style(t, path_in("no-such-dir/deeper", "x.safetensors")),
                 CG_ERR_IO);
    cg_trainer_free(t);

    /* A second run over the same folder is refused: the checkpoint is kept. */
    CHECK_STATUS(cg_trainer_new(settings("straight", TOTAL, ""), NULL, &t), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("already holds a training run");

    /* Interrupted: one iteration, then cancelled on the second (mid checkpoint interval),
     * the handle freed, the run resumed in a new handle and finished. */
    CHECK_STATUS(cg_trainer_new(settings("resumed", TOTAL, ""), opts, &t), CG_OK);
    CHECK_STATUS(cg_trainer_run(t, 1, NULL, NULL), CG_OK);
    CHECK(cg_trainer_iteration(t) == 1);
    struct counter stop = {0, 2, 0.0f};
    CHECK_STATUS(cg_trainer_run(t, UINT64_MAX, count_progress, &stop), CG_ERR_CANCELLED);
    CHECK(stop.calls == 2 && cg_trainer_iteration(t) == 3);
    CHECK(exists(path_in("resumed", "checkpoint.safetensors")));
    cg_trainer_free(t);
    CHECK_STATUS(cg_trainer_new(settings("resumed", TOTAL, ", \"resume\": true"), opts, &t), CG_OK);
    CHECK(cg_trainer_iteration(t) == 3);
    CHECK_STATUS(cg_trainer_run(t, UINT64_MAX, NULL, NULL), CG_OK);
    CHECK(cg_trainer_iteration(t) == TOTAL);
    CHECK_STATUS(cg_trainer_save_style(t, path_in("resumed", "style.safetensors")), CG_OK);
    cg_trainer_free(t);

    /* Both styles load and give identical pixels: the interruption changed nothing. */
    uint8_t a[SIDE * SIDE * 3], b[SIDE * SIDE * 3];
    stylize_with(path_in("straight", "style.safetensors"), a);
    stylize_with(path_in("resumed", "style.safetensors"), b);
    CHECK(memcmp(a, b, sizeof a) == 0);

    /* Resuming with a larger length trains further. */
    CHECK_STATUS(
        cg_trainer_new(settings("resumed", 8, ", \"resume\": true"), opts, &t),
        CG_OK);
    CHECK(cg_trainer_total_iterations(t) == 8);
    CHECK_STATUS(cg_trainer_run(t, UINT64_MAX, NULL, NULL), CG_OK);
    CHECK(cg_trainer_iteration(t) == 8);
    cg_trainer_free(t);

    cg_options_free(opts);
    printf("test_train: ok\n");
    return 0;
}
