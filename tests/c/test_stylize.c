/* Stylizing through the C ABI: sizes, alpha, strides, in place, formats, progress, cancel.
 * Usage: test_stylize FIXTURE_MODEL [--quick]
 * The fixture is a small random-weight generator, so every call is fast. --quick (used under
 * valgrind, where each call takes seconds) takes every code path once instead of in each
 * combination. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { W = 37, H = 29 }; /* odd sizes exercise the padding to the network's grid */

static cg_model *model;
static int quick;

/* A deterministic RGBA8 test pattern with varying alpha. */
static uint8_t sample(size_t x, size_t y, size_t c) {
    return (uint8_t)(c == 3 ? 40 + (x * 5 + y * 3) % 200 : (x * 13 + y * 7 + c * 61) % 256);
}

static uint8_t *pattern_rgba8(size_t stride) {
    uint8_t *p = malloc(stride * H);
    CHECK(p != NULL);
    memset(p, 0xAB, stride * H);
    for (size_t y = 0; y < H; y++)
        for (size_t x = 0; x < W; x++)
            for (size_t c = 0; c < 4; c++) p[y * stride + x * 4 + c] = sample(x, y, c);
    return p;
}

static void stylize_ok(const cg_image *src, cg_image *dst, const cg_options *o) {
    CHECK_STATUS(cg_model_stylize(model, src, dst, o, NULL, NULL), CG_OK);
}

/* The reference result: a packed RGBA8 image stylized into a separate buffer. */
static uint8_t *reference(void) {
    uint8_t *src = pattern_rgba8(W * 4);
    uint8_t *dst = calloc(W * H, 4);
    CHECK(dst != NULL);
    cg_image s = {src, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {dst, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    stylize_ok(&s, &d, NULL);
    /* The source is not modified. */
    uint8_t *again = pattern_rgba8(W * 4);
    CHECK(memcmp(src, again, W * H * 4) == 0);
    free(again);
    free(src);
    return dst;
}

static void test_basic(const uint8_t *ref) {
    uint8_t *src = pattern_rgba8(W * 4);
    size_t changed = 0;
    for (size_t i = 0; i < (size_t)W * H; i++) {
        CHECK(ref[i * 4 + 3] == src[i * 4 + 3]); /* alpha kept exactly */
        for (size_t c = 0; c < 3; c++) changed += ref[i * 4 + c] != src[i * 4 + c];
    }
    CHECK(changed > (size_t)W * H * 3 / 2); /* the style changed most samples */
    /* Deterministic. */
    uint8_t *again = calloc(W * H, 4);
    cg_image s = {src, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {again, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    stylize_ok(&s, &d, NULL);
    CHECK(memcmp(again, ref, W * H * 4) == 0);
    /* Strength 0 returns the input. */
    cg_options *o = NULL;
    CHECK_STATUS(cg_options_new(&o), CG_OK);
    CHECK_STATUS(cg_options_set_strength(o, 0.0f), CG_OK);
    stylize_ok(&s, &d, o);
    CHECK(memcmp(again, src, W * H * 4) == 0);
    cg_options_free(o);
    free(again);
    free(src);
    printf("basic: %zu of %d colour samples changed, alpha kept\n", changed, W * H * 3);
}

static void test_strided(const uint8_t *ref) {
    const size_t stride = W * 4 + 12;
    uint8_t *src = pattern_rgba8(stride);
    uint8_t *dst = malloc(stride * H);
    CHECK(dst != NULL);
    memset(dst, 0xCD, stride * H);
    cg_image s = {src, W, H, stride, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {dst, W, H, stride, CG_PIXEL_FORMAT_RGBA8};
    stylize_ok(&s, &d, NULL);
    for (size_t y = 0; y < H; y++) {
        CHECK(memcmp(dst + y * stride, ref + y * W * 4, W * 4) == 0);
        for (size_t i = W * 4; i < stride; i++) CHECK(dst[y * stride + i] == 0xCD);
    }
    /* The last row may end at its last pixel: a buffer of exactly the needed size. */
    const size_t exact = stride * (H - 1) + W * 4;
    uint8_t *tight = malloc(exact);
    CHECK(tight != NULL);
    memcpy(tight, src, exact);
    cg_image t = {tight, W, H, stride, CG_PIXEL_FORMAT_RGBA8};
    stylize_ok(&t, &t, NULL);
    for (size_t y = 0; y < H; y++) CHECK(memcmp(tight + y * stride, ref + y * W * 4, W * 4) == 0);
    free(tight);
    free(src);
    free(dst);
    printf("strided: padding untouched\n");
}

static void test_in_place(const uint8_t *ref) {
    uint8_t *buf = pattern_rgba8(W * 4);
    cg_image img = {buf, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    stylize_ok(&img, &img, NULL);
    CHECK(memcmp(buf, ref, W * H * 4) == 0);
    /* Two descriptions of the same memory behave the same. */
    free(buf);
    buf = pattern_rgba8(W * 4);
    cg_image a = {buf, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image b = a;
    stylize_ok(&a, &b, NULL);
    CHECK(memcmp(buf, ref, W * H * 4) == 0);
    free(buf);
    printf("in place: same as a separate destination\n");
}

static void test_formats(const uint8_t *ref) {
    uint8_t *src8 = pattern_rgba8(W * 4);

    /* RGB16 in and out: the same picture at 16 bits matches the 8-bit result within 1/255. */
    uint16_t *src16 = malloc(sizeof(uint16_t) * W * H * 3);
    uint16_t *dst16 = malloc(sizeof(uint16_t) * W * H * 3);
    CHECK(src16 && dst16);
    for (size_t i = 0; i < (size_t)W * H; i++)
        for (size_t c = 0; c < 3; c++) src16[i * 3 + c] = (uint16_t)(src8[i * 4 + c] * 257);
    cg_image s16 = {(uint8_t *)src16, W, H, W * 6, CG_PIXEL_FORMAT_RGB16};
    cg_image d16 = {(uint8_t *)dst16, W, H, W * 6, CG_PIXEL_FORMAT_RGB16};
    stylize_ok(&s16, &d16, NULL);
    /* The 8-bit RGB reference of the same opaque picture. */
    uint8_t *src_rgb = malloc(W * H * 3), *dst_rgb = malloc(W * H * 3);
    CHECK(src_rgb && dst_rgb);
    for (size_t i = 0; i < (size_t)W * H; i++)
        for (size_t c = 0; c < 3; c++) src_rgb[i * 3 + c] = src8[i * 4 + c];
    cg_image s3 = {src_rgb, W, H, W * 3, CG_PIXEL_FORMAT_RGB8};
    cg_image d3 = {dst_rgb, W, H, W * 3, CG_PIXEL_FORMAT_RGB8};
    stylize_ok(&s3, &d3, NULL);
    size_t fine = 0;
    for (size_t i = 0; i < (size_t)W * H * 3; i++) {
        double v = dst16[i] / 257.0;
        CHECK(fabs(v - dst_rgb[i]) <= 1.0);
        fine += dst16[i] % 257 != 0; /* a value 8 bits cannot hold */
    }
    CHECK(fine > 0);

    /* RGBA_F32 in, RGBA_F32 out: matches the 8-bit RGBA reference within rounding. */
    float *srcf = malloc(sizeof(float) * W * H * 4), *dstf = malloc(sizeof(float) * W * H * 4);
    CHECK(srcf && dstf);
    for (size_t i = 0; i < (size_t)W * H * 4; i++) srcf[i] = src8[i] / 255.0f;
    cg_image sf = {(uint8_t *)srcf, W, H, W * 16, CG_PIXEL_FORMAT_RGBA_F32};
    cg_image df = {(uint8_t *)dstf, W, H, W * 16, CG_PIXEL_FORMAT_RGBA_F32};
    stylize_ok(&sf, &df, NULL);
    for (size_t i = 0; i < (size_t)W * H * 4; i++) {
        CHECK(dstf[i] >= 0.0f && dstf[i] <= 1.0f);
        if (i % 4 == 3)
            CHECK(dstf[i] == srcf[i]);
        else
            CHECK(fabs(dstf[i] * 255.0 - ref[i]) <= 0.51);
    }

    /* RGBA8 in, RGB8 out: alpha dropped, colours as in the reference. */
    cg_image d3b = {dst_rgb, W, H, W * 3, CG_PIXEL_FORMAT_RGB8};
    cg_image s4 = {src8, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    stylize_ok(&s4, &d3b, NULL);
    for (size_t i = 0; i < (size_t)W * H; i++)
        for (size_t c = 0; c < 3; c++) CHECK(dst_rgb[i * 3 + c] == ref[i * 4 + c]);

    free(src8);
    free(src16);
    free(dst16);
    free(src_rgb);
    free(dst_rgb);
    free(srcf);
    free(dstf);
    printf("formats: RGB16, RGBA_F32 and RGBA8->RGB8 agree with RGBA8\n");
}

/* Progress recorder: fractions seen, the thread they came on, and when to cancel. */
typedef struct {
    float seen[256];
    int count;
    int cancel_at; /* return false on this call (1-based); 0 = never */
    pthread_t caller;
    int other_thread;
} progress_log;

static bool record(void *user_data, float fraction) {
    progress_log *log = user_data;
    if (log->count < 256) log->seen[log->count] = fraction;
    log->count++;
    if (!pthread_equal(pthread_self(), log->caller)) log->other_thread = 1;
    return log->count != log->cancel_at;
}

static void test_progress_and_cancel(void) {
    /* With the smallest tile (64: 32-pixel cores), a 132x32 image runs as 5 tiles after a
     * statistics pass: 6 reports, and little work (this also runs under valgrind). */
    enum { PW = 132, PH = 32, N = PW * PH * 4 };
    uint8_t *src = malloc(N), *dst = malloc(N), *before = malloc(N);
    CHECK(src && dst && before);
    for (size_t i = 0; i < N; i++) src[i] = (uint8_t)(i * 31 % 256);
    for (size_t i = 0; i < N; i++) dst[i] = before[i] = (uint8_t)(i * 17 % 253);
    cg_image s = {src, PW, PH, PW * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {dst, PW, PH, PW * 4, CG_PIXEL_FORMAT_RGBA8};

    /* Without and with worker threads: with them, reports are relayed to the calling thread. */
    for (uint32_t threads = quick ? 2 : 0; threads <= 2; threads += 2) {
        cg_options *o = NULL;
        CHECK_STATUS(cg_options_new(&o), CG_OK);
        CHECK_STATUS(cg_options_set_tile_size(o, 64), CG_OK);
        CHECK_STATUS(cg_options_set_threads(o, threads), CG_OK);

        progress_log log = {.caller = pthread_self()};
        CHECK_STATUS(cg_model_stylize(model, &s, &d, o, record, &log), CG_OK);
        CHECK(log.count >= 3 && log.count <= 256);
        for (int i = 0; i < log.count; i++) {
            CHECK(log.seen[i] > 0.0f && log.seen[i] <= 1.0f);
            if (i > 0) CHECK(log.seen[i] > log.seen[i - 1]);
        }
        CHECK(log.seen[log.count - 1] == 1.0f);
        CHECK(!log.other_thread);
        printf("progress (threads %u): %d reports, %.3f .. %.3f\n", threads, log.count,
               log.seen[0], log.seen[log.count - 1]);

        /* Cancel at the first report (threads 0) or a middle one (threads 2): CANCELLED,
         * destination untouched, no report after the one that said stop. */
        const int at = threads == 0 ? 1 : 3;
        memcpy(dst, before, N);
        progress_log c = {.cancel_at = at, .caller = pthread_self()};
        CHECK_STATUS(cg_model_stylize(model, &s, &d, o, record, &c), CG_ERR_CANCELLED);
        CHECK_MESSAGE("cancelled");
        CHECK(c.count == at);
        CHECK(!c.other_thread);
        CHECK(memcmp(dst, before, N) == 0);
        cg_options_free(o);
    }

    /* An untiled image reports after each layer of its one forward pass, so it can be
       cancelled before the network has finished. */
    cg_image small_s = {src, 16, 16, PW * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image small_d = {dst, 16, 16, PW * 4, CG_PIXEL_FORMAT_RGBA8};
    memcpy(dst, before, N);
    progress_log one = {.cancel_at = 1, .caller = pthread_self()};
    CHECK_STATUS(cg_model_stylize(model, &small_s, &small_d, NULL, record, &one),
                 CG_ERR_CANCELLED);
    CHECK(one.count == 1 && one.seen[0] > 0.0f && one.seen[0] < 0.5f);
    CHECK(memcmp(dst, before, N) == 0);

    free(src);
    free(dst);
    free(before);
    printf("cancel: CG_ERR_CANCELLED, destination byte-identical\n");
}

static void test_threads_option(const uint8_t *ref) {
    uint8_t *src = pattern_rgba8(W * 4);
    uint8_t *dst = calloc(W * H, 4);
    CHECK(dst != NULL);
    cg_image s = {src, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image d = {dst, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    for (uint32_t t = quick ? 2 : 1; t <= (quick ? 2u : 3u); t++) {
        cg_options *o = NULL;
        CHECK_STATUS(cg_options_new(&o), CG_OK);
        CHECK_STATUS(cg_options_set_threads(o, t), CG_OK);
        memset(dst, 0, W * H * 4);
        stylize_ok(&s, &d, o);
        CHECK(memcmp(dst, ref, W * H * 4) == 0);
        /* The pool is kept: a second call with the same options works the same. */
        memset(dst, 0, W * H * 4);
        stylize_ok(&s, &d, o);
        CHECK(memcmp(dst, ref, W * H * 4) == 0);
        cg_options_free(o);
    }
    free(src);
    free(dst);
    printf("threads option: worker pools give the reference result\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_MODEL [--quick]\n", argv[0]);
        return 2;
    }
    quick = argc > 2 && strcmp(argv[2], "--quick") == 0;
    cg_options *cpu = NULL;
    CHECK_STATUS(cg_options_new(&cpu), CG_OK);
    CHECK_STATUS(cg_options_set_backend(cpu, CG_BACKEND_CPU), CG_OK);
    CHECK_STATUS(cg_model_load(argv[1], cpu, &model), CG_OK);
    cg_options_free(cpu);

    uint8_t *ref = reference();
    test_basic(ref);
    test_strided(ref);
    test_in_place(ref);
    test_formats(ref);
    test_progress_and_cancel();
    test_threads_option(ref);
    free(ref);
    cg_model_free(model);
    printf("test_stylize: ok\n");
    return 0;
}
