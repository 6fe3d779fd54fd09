/* Abuse matrix: every pointer argument NULL, malformed images (zero sizes, short strides,
 * overflowing spans, unknown formats), unknown enum values, bad paths, non-finite settings,
 * and handles used after their _free: each gets its documented status and a message, never
 * a crash, and a failed call changes nothing.
 * Usage: test_abuse FIXTURE_MODEL TEMP_DIR [--no-freed]
 * --no-freed skips the use-after-free checks, which read freed memory on purpose (valgrind
 * reports that, rightly). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void *const NOT_NULL = (void *)&NOT_NULL;

enum { W = 8, H = 6 };

static const char *fixture;
static const char *tmp;

static void test_null_everywhere(void) {
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(fixture, NULL, &m), CG_OK);
    cg_options *o = NULL;
    CHECK_STATUS(cg_options_new(&o), CG_OK);
    uint8_t px[W * H * 4] = {0}, out[W * H * 4] = {0};
    cg_image src = {px, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image dst = {out, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    uint8_t byte = 0;
    cg_model *mo = NOT_NULL;

    CHECK_STATUS(cg_options_new(NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("out");
    CHECK_STATUS(cg_options_set_backend(NULL, CG_BACKEND_CPU), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("options is NULL");
    CHECK_STATUS(cg_options_set_threads(NULL, 1), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_tile_size(NULL, 256), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_strength(NULL, 0.5f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_scale(NULL, 1.0f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_detail(NULL, 0.5f), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("options is NULL");

    CHECK_STATUS(cg_model_load(NULL, o, &mo), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("name_or_path is NULL");
    CHECK(mo == NULL);
    CHECK_STATUS(cg_model_load(fixture, o, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("out");
    CHECK_STATUS(cg_model_load(NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    mo = NOT_NULL;
    CHECK_STATUS(cg_model_load_from_memory(NULL, 1, o, &mo), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("data is NULL");
    CHECK(mo == NULL);
    CHECK_STATUS(cg_model_load_from_memory(NULL, 0, NULL, &mo), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_model_load_from_memory(&byte, 1, o, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("out");
    /* A length no buffer can have is refused before it is touched. */
    mo = NOT_NULL;
    CHECK_STATUS(cg_model_load_from_memory(&byte, SIZE_MAX, o, &mo), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("too large");
    CHECK(mo == NULL);

    CHECK_STATUS(cg_model_stylize(NULL, &src, &dst, o, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("model is NULL");
    CHECK_STATUS(cg_model_stylize(m, NULL, &dst, o, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("src is NULL");
    CHECK_STATUS(cg_model_stylize(m, &src, NULL, o, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("dst is NULL");
    CHECK_STATUS(cg_model_stylize(NULL, NULL, NULL, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    cg_image nodata = src;
    nodata.data = NULL;
    CHECK_STATUS(cg_model_stylize(m, &nodata, &dst, o, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("src: data is NULL");
    CHECK_STATUS(cg_model_stylize(m, &src, &nodata, o, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("dst: data is NULL");
    /* NULL options, progress and user data are all allowed. */
    CHECK_STATUS(cg_model_stylize(m, &src, &dst, NULL, NULL, NULL), CG_OK);

    /* Functions without pointer arguments, fed out-of-range values. */
    CHECK(cg_style_name(SIZE_MAX) == NULL);
    CHECK(cg_style_label(cg_style_count()) == NULL);
    CHECK(strcmp(cg_status_str(UINT32_MAX), "unknown status") == 0);
    CHECK(cg_last_error_message() != NULL);
    cg_model_free(NULL);
    cg_options_free(NULL);

    cg_options_free(o);
    cg_model_free(m);
}

/* Every way to describe a bad image, as src and as dst. */
static void test_malformed_images(void) {
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(fixture, NULL, &m), CG_OK);
    static uint8_t px[W * H * 16];
    static uint8_t out[W * H * 16];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 31);
    memset(out, 0x5A, sizeof out);
    const struct {
        cg_pixel_format format;
        size_t bpp;
    } formats[] = {{CG_PIXEL_FORMAT_RGB8, 3},
                   {CG_PIXEL_FORMAT_RGBA8, 4},
                   {CG_PIXEL_FORMAT_RGB16, 6},
                   {CG_PIXEL_FORMAT_RGBA16, 8},
                   {CG_PIXEL_FORMAT_RGBA_F32, 16}};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        cg_image good = {px, W, H, W * formats[f].bpp, formats[f].format};
        cg_image gdst = {out, W, H, W * formats[f].bpp, formats[f].format};
        for (int as_dst = 0; as_dst < 2; as_dst++) {
            cg_image bad = as_dst ? gdst : good;
            const cg_image *s = as_dst ? &good : &bad;
            cg_image *d = as_dst ? &bad : &gdst;
            const char *who = as_dst ? "dst" : "src";

            bad.width = 0;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE(who);
            CHECK_MESSAGE("empty");
            bad = as_dst ? gdst : good;
            bad.height = 0;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE("empty");
            /* Short by one byte. */
            bad = as_dst ? gdst : good;
            bad.stride = W * formats[f].bpp - 1;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE("stride");
            bad.stride = 0;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            /* stride * height overflows size_t. */
            bad = as_dst ? gdst : good;
            bad.height = UINT32_MAX;
            bad.stride = SIZE_MAX / 2;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE("spans more bytes");
            /* No overflow, but a span larger than any object can be (over PTRDIFF_MAX). */
            bad = as_dst ? gdst : good;
            bad.height = 3;
            bad.stride = SIZE_MAX / 4;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE("spans more bytes");
            /* The largest sizes: the row alone overflows where size_t is 32 bits, and the
             * span does everywhere. */
            bad = as_dst ? gdst : good;
            bad.width = UINT32_MAX;
            bad.height = UINT32_MAX;
            bad.stride = SIZE_MAX;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
#if SIZE_MAX <= UINT32_MAX
            /* width * bytes per pixel overflows a 32-bit size_t. */
            bad = as_dst ? gdst : good;
            bad.width = UINT32_MAX;
            bad.height = 1;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE("overflows");
#endif
            /* Unknown formats. */
            const cg_pixel_format unknown[] = {5, 17, 0x80000000u, UINT32_MAX};
            for (size_t u = 0; u < sizeof unknown / sizeof unknown[0]; u++) {
                bad = as_dst ? gdst : good;
                bad.format = unknown[u];
                CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL),
                             CG_ERR_INVALID_ARGUMENT);
                CHECK_MESSAGE("pixel format");
            }
            /* Sizes that differ. */
            bad = as_dst ? gdst : good;
            bad.height = H - 1;
            CHECK_STATUS(cg_model_stylize(m, s, d, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
            CHECK_MESSAGE("same size");
        }
    }
    /* Not one failure wrote a byte of the destination buffer. */
    for (size_t i = 0; i < sizeof out; i++) CHECK(out[i] == 0x5A);
    cg_model_free(m);
}

static void test_bad_values(void) {
    cg_options *o = NULL;
    CHECK_STATUS(cg_options_new(&o), CG_OK);
    const float nonfinite[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof nonfinite / sizeof nonfinite[0]; i++) {
        CHECK_STATUS(cg_options_set_strength(o, nonfinite[i]), CG_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE("strength");
        CHECK_STATUS(cg_options_set_scale(o, nonfinite[i]), CG_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE("scale");
        CHECK_STATUS(cg_options_set_detail(o, nonfinite[i]), CG_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE("detail");
    }
    CHECK_STATUS(cg_options_set_strength(o, 1.0000001f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_strength(o, -0.0000001f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_tile_size(o, 63), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_memory_limit(o, 1), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_memory_limit(o, UINT64_MAX), CG_OK);
    CHECK_STATUS(cg_options_set_threads(o, UINT32_MAX), CG_ERR_INVALID_ARGUMENT);
    const cg_backend backends[] = {4, 99, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        CHECK_STATUS(cg_options_set_backend(o, backends[i]), CG_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE("backend");
        CHECK(!cg_backend_is_available(backends[i]));
    }

    /* The rejected values left the options as they were: strength 0 set before them still
     * returns the input unchanged. */
    CHECK_STATUS(cg_options_set_strength(o, 0.0f), CG_OK);
    CHECK_STATUS(cg_options_set_strength(o, NAN), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_backend(o, UINT32_MAX), CG_ERR_INVALID_ARGUMENT);
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(fixture, o, &m), CG_OK);
    uint8_t px[W * H * 4], out[W * H * 4] = {0};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
    cg_image src = {px, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image dst = {out, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    CHECK_STATUS(cg_model_stylize(m, &src, &dst, o, NULL, NULL), CG_OK);
    CHECK(memcmp(px, out, sizeof px) == 0);
    cg_model_free(m);
    cg_options_free(o);
}

static void test_bad_paths(void) {
    cg_model *m = NOT_NULL;
    /* Not UTF-8: refused with a message, never a crash. */
    const char *not_utf8[] = {"\xff", "\xc3\x28.safetensors", "/tmp/\xed\xa0\x80.pth",
                              "\x80\x80\x80"};
    for (size_t i = 0; i < sizeof not_utf8 / sizeof not_utf8[0]; i++) {
        m = NOT_NULL;
        CHECK_STATUS(cg_model_load(not_utf8[i], NULL, &m), CG_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE("UTF-8");
        CHECK(m == NULL);
    }
    /* A folder is not a style file. */
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load(tmp, NULL, &m), CG_ERR_IO);
    CHECK(m == NULL);
    CHECK_MESSAGE(tmp);
    /* The empty string names neither a shipped style nor a file. */
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load("", NULL, &m), CG_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
    /* An empty file and a file of zeros. */
    char path[4096];
    snprintf(path, sizeof path, "%s/empty.safetensors", tmp);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    fclose(f);
    CHECK_STATUS(cg_model_load(path, NULL, &m), CG_ERR_FORMAT);
    CHECK_MESSAGE("empty");
    snprintf(path, sizeof path, "%s/zeros.pth", tmp);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    for (int i = 0; i < 256; i++) fputc(0, f);
    fclose(f);
    CHECK_STATUS(cg_model_load(path, NULL, &m), CG_ERR_FORMAT);
    CHECK_MESSAGE("zeros.pth");
    CHECK(m == NULL);
}

/* Handles used after their _free. Undefined behaviour by the contract, so this checks the
 * safeguard, not a guarantee: a freed handle is poisoned and recognised while its memory
 * has not been handed out again, which is the case right after the free. */
static void test_freed_handles(void) {
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(fixture, NULL, &m), CG_OK);
    cg_options *o = NULL;
    CHECK_STATUS(cg_options_new(&o), CG_OK);
    uint8_t px[W * H * 4] = {0}, out[W * H * 4] = {0};
    cg_image src = {px, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};
    cg_image dst = {out, W, H, W * 4, CG_PIXEL_FORMAT_RGBA8};

    /* The wrong kind of handle. */
    CHECK_STATUS(cg_model_stylize((const cg_model *)o, &src, &dst, NULL, NULL, NULL),
                 CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("not a live cg_model");

    cg_options_free(o);
    CHECK_STATUS(cg_options_set_strength(o, 0.5f), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("not a live cg_options");
    CHECK_STATUS(cg_model_stylize(m, &src, &dst, o, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("not a live cg_options");
    cg_model *m2 = NOT_NULL;
    CHECK_STATUS(cg_model_load(fixture, o, &m2), CG_ERR_INVALID_ARGUMENT);
    CHECK(m2 == NULL);
    cg_options_free(o); /* double free: ignored */
    CHECK_MESSAGE("not a live cg_options");

    cg_model_free(m);
    CHECK_STATUS(cg_model_stylize(m, &src, &dst, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("not a live cg_model");
    cg_model_free(m); /* double free: ignored */
    CHECK_MESSAGE("not a live cg_model");

    /* Nothing was corrupted: the library still works. */
    CHECK_STATUS(cg_model_load(fixture, NULL, &m), CG_OK);
    CHECK_STATUS(cg_model_stylize(m, &src, &dst, NULL, NULL, NULL), CG_OK);
    cg_model_free(m);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FIXTURE_MODEL TEMP_DIR [--no-freed]\n", argv[0]);
        return 2;
    }
    fixture = argv[1];
    tmp = argv[2];
    int freed = !(argc > 3 && strcmp(argv[3], "--no-freed") == 0);
    test_null_everywhere();
    test_malformed_images();
    test_bad_values();
    test_bad_paths();
    if (freed) test_freed_handles();
    printf("test_abuse: ok\n");
    return 0;
}
