/* Everything but pixels: versions, statuses, styles, options, loading, argument checks.
 * Usage: test_api FIXTURE_MODEL TEMP_DIR [--no-shipped]
 * --no-shipped skips loading the embedded Monet model (slow under valgrind). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void *const NOT_NULL = (void *)&NOT_NULL;

static void test_versions(void) {
    uint32_t v = cg_version();
    CHECK(v != 0);
    CHECK(cg_abi_version() == CG_ABI_VERSION);
    printf("version %u.%u.%u, abi %u\n", v >> 16, (v >> 8) & 0xff, v & 0xff, cg_abi_version());
}

static void test_status_strings(void) {
    const cg_status all[] = {CG_OK,
                             CG_ERR_INVALID_ARGUMENT,
                             CG_ERR_IO,
                             CG_ERR_FORMAT,
                             CG_ERR_UNSUPPORTED,
                             CG_ERR_BACKEND_UNAVAILABLE,
                             CG_ERR_CANCELLED,
                             CG_ERR_PANIC,
                             CG_ERR_COMPUTE,
                             CG_ERR_OUT_OF_MEMORY};
    const size_t n = sizeof all / sizeof all[0];
    CHECK(CG_OK == 0);
    for (size_t i = 0; i < n; i++) {
        const char *s = cg_status_str(all[i]);
        CHECK(s != NULL && s[0] != '\0');
        CHECK(strcmp(s, "unknown status") != 0);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, cg_status_str(all[j])) != 0);
    }
    CHECK(strcmp(cg_status_str(CG_OK), "ok") == 0);
    CHECK(strcmp(cg_status_str(12345), "unknown status") == 0);
    CHECK(strcmp(cg_status_str((cg_status)-1), "unknown status") == 0);
}

static void test_styles(void) {
    size_t n = cg_style_count();
    CHECK(n >= 1);
    int has_monet = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(cg_style_name(i) != NULL && cg_style_label(i) != NULL);
        if (strcmp(cg_style_name(i), "monet") == 0) {
            has_monet = 1;
            CHECK(strcmp(cg_style_label(i), "Monet style") == 0);
        }
    }
    CHECK(has_monet);
    CHECK(cg_style_name(n) == NULL && cg_style_label(n) == NULL);
    CHECK(cg_style_name(SIZE_MAX) == NULL && cg_style_label(SIZE_MAX) == NULL);
    /* Static strings: the same pointer every time. */
    CHECK(cg_style_name(0) == cg_style_name(0));
}

static void test_backends(void) {
    CHECK(cg_backend_is_available(CG_BACKEND_CPU));
    CHECK(cg_backend_is_available(CG_BACKEND_AUTO));
    CHECK(!cg_backend_is_available(99));
    printf("cuda available: %d, metal available: %d\n", cg_backend_is_available(CG_BACKEND_CUDA),
           cg_backend_is_available(CG_BACKEND_METAL));
}

static void test_options(void) {
    CHECK_STATUS(cg_options_new(NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("NULL");

    cg_options *o = NOT_NULL;
    CHECK_STATUS(cg_options_new(&o), CG_OK);
    CHECK(o != NULL && o != NOT_NULL);
    CHECK(strcmp(cg_last_error_message(), "") == 0);

    /* Bad values: rejected with a message naming them, and the options stay usable. */
    CHECK_STATUS(cg_options_set_strength(o, 1.5f), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("strength 1.5");
    CHECK_STATUS(cg_options_set_strength(o, -0.1f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_strength(o, NAN), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_scale(o, -1.0f), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("scale");
    CHECK_STATUS(cg_options_set_scale(o, 4.5f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_tile_size(o, 63), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("tile size 63");
    CHECK_STATUS(cg_options_set_detail(o, -1.0f), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("detail");
    CHECK_STATUS(cg_options_set_threads(o, (uint32_t)-1), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("threads");
    CHECK_STATUS(cg_options_set_backend(o, 42), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("backend 42");

    /* Good values; a success clears the message. */
    CHECK_STATUS(cg_options_set_strength(o, 0.0f), CG_OK);
    CHECK(strcmp(cg_last_error_message(), "") == 0);
    CHECK_STATUS(cg_options_set_strength(o, 1.0f), CG_OK);
    CHECK_STATUS(cg_options_set_scale(o, 0.0f), CG_OK);
    CHECK_STATUS(cg_options_set_scale(o, 0.5f), CG_OK);
    CHECK_STATUS(cg_options_set_tile_size(o, 64), CG_OK);
    CHECK_STATUS(cg_options_set_detail(o, 0.0f), CG_OK);
    CHECK_STATUS(cg_options_set_threads(o, 0), CG_OK);
    CHECK_STATUS(cg_options_set_threads(o, 3), CG_OK);
    CHECK_STATUS(cg_options_set_backend(o, CG_BACKEND_CPU), CG_OK);

    /* NULL handles. */
    CHECK_STATUS(cg_options_set_strength(NULL, 1.0f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_scale(NULL, 0.0f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_tile_size(NULL, 512), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_detail(NULL, 0.5f), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_threads(NULL, 1), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_options_set_backend(NULL, CG_BACKEND_CPU), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("options is NULL");

    cg_options_free(o);
    cg_options_free(NULL);
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n > 0);
    CHECK(fseek(f, 0, SEEK_SET) == 0);
    uint8_t *buf = malloc((size_t)n);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void test_load(const char *fixture, const char *tmp, int shipped) {
    cg_model *m = NOT_NULL;

    if (shipped) {
        CHECK_STATUS(cg_model_load("monet", NULL, &m), CG_OK);
        CHECK(m != NULL && m != NOT_NULL);
        cg_model_free(m);
    }

    cg_options *cpu = NULL;
    CHECK_STATUS(cg_options_new(&cpu), CG_OK);
    CHECK_STATUS(cg_options_set_backend(cpu, CG_BACKEND_CPU), CG_OK);
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load(fixture, cpu, &m), CG_OK);
    CHECK(m != NULL && m != NOT_NULL);
    cg_model_free(m);

    /* Failures leave *out NULL. */
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load("/nonexistent/dir/style.safetensors", NULL, &m), CG_ERR_IO);
    CHECK(m == NULL);
    CHECK_MESSAGE("/nonexistent/dir/style.safetensors");

    char garbage[4096];
    snprintf(garbage, sizeof garbage, "%s/garbage.safetensors", tmp);
    FILE *f = fopen(garbage, "wb");
    CHECK(f != NULL);
    for (int i = 0; i < 1000; i++) fputc((i * 7919) & 0xff, f);
    fclose(f);
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load(garbage, cpu, &m), CG_ERR_FORMAT);
    CHECK(m == NULL);
    CHECK_MESSAGE("garbage.safetensors");

    m = NOT_NULL;
    CHECK_STATUS(cg_model_load("picasso", NULL, &m), CG_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
    CHECK_MESSAGE("monet");
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load(NULL, NULL, &m), CG_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
    CHECK_STATUS(cg_model_load(fixture, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_model_load("\xff\xfe", NULL, &m), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("UTF-8");

    /* From memory. */
    size_t len = 0;
    uint8_t *bytes = read_file(fixture, &len);
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load_from_memory(bytes, len, cpu, &m), CG_OK);
    CHECK(m != NULL && m != NOT_NULL);
    cg_model_free(m);
    m = NOT_NULL;
    CHECK_STATUS(cg_model_load_from_memory(bytes, len / 2, cpu, &m), CG_ERR_FORMAT);
    CHECK(m == NULL);
    CHECK_STATUS(cg_model_load_from_memory(bytes, 0, cpu, &m), CG_ERR_FORMAT);
    CHECK_STATUS(cg_model_load_from_memory(NULL, 10, cpu, &m), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_model_load_from_memory(bytes, len, cpu, NULL), CG_ERR_INVALID_ARGUMENT);
    free(bytes);

    /* A backend this build or machine lacks is an error, never a silent fallback. */
    if (!cg_backend_is_available(CG_BACKEND_METAL)) {
        cg_options *metal = NULL;
        CHECK_STATUS(cg_options_new(&metal), CG_OK);
        CHECK_STATUS(cg_options_set_backend(metal, CG_BACKEND_METAL), CG_OK);
        m = NOT_NULL;
        CHECK_STATUS(cg_model_load(fixture, metal, &m), CG_ERR_BACKEND_UNAVAILABLE);
        CHECK(m == NULL);
        CHECK_MESSAGE("Metal");
        cg_options_free(metal);
    }

    cg_options_free(cpu);
    cg_model_free(NULL);
}

static void test_stylize_arguments(const char *fixture) {
    cg_model *m = NULL;
    CHECK_STATUS(cg_model_load(fixture, NULL, &m), CG_OK);
    uint8_t px[4 * 4 * 4] = {0};
    uint8_t out[4 * 4 * 4] = {0};
    cg_image src = {px, 4, 4, 16, CG_PIXEL_FORMAT_RGBA8};
    cg_image dst = {out, 4, 4, 16, CG_PIXEL_FORMAT_RGBA8};

    CHECK_STATUS(cg_model_stylize(NULL, &src, &dst, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("model is NULL");
    CHECK_STATUS(cg_model_stylize(m, NULL, &dst, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(cg_model_stylize(m, &src, NULL, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);

    cg_image bad = dst;
    bad.width = 3;
    CHECK_STATUS(cg_model_stylize(m, &src, &bad, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("same size");
    bad = src;
    bad.stride = 15;
    CHECK_STATUS(cg_model_stylize(m, &bad, &dst, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("stride 15");
    bad = src;
    bad.format = 17;
    CHECK_STATUS(cg_model_stylize(m, &bad, &dst, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("pixel format 17");
    bad = dst;
    bad.data = NULL;
    CHECK_STATUS(cg_model_stylize(m, &src, &bad, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    bad = src;
    bad.height = 0;
    CHECK_STATUS(cg_model_stylize(m, &bad, &dst, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);
    /* A size whose byte span overflows is rejected before anything is read. */
    bad = src;
    bad.height = UINT32_MAX;
    bad.stride = SIZE_MAX / 2;
    CHECK_STATUS(cg_model_stylize(m, &bad, &dst, NULL, NULL, NULL), CG_ERR_INVALID_ARGUMENT);

    /* None of the failures wrote to dst. */
    for (size_t i = 0; i < sizeof out; i++) CHECK(out[i] == 0);
    CHECK_STATUS(cg_model_stylize(m, &src, &dst, NULL, NULL, NULL), CG_OK);
    cg_model_free(m);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FIXTURE_MODEL TEMP_DIR [--no-shipped]\n", argv[0]);
        return 2;
    }
    int shipped = !(argc > 3 && strcmp(argv[3], "--no-shipped") == 0);
    test_versions();
    test_status_strings();
    test_styles();
    test_backends();
    test_options();
    test_load(argv[1], argv[2], shipped);
    test_stylize_arguments(argv[1]);
    printf("test_api: ok\n");
    return 0;
}
