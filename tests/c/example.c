/* Minimal use of libcyclegan: load a style, stylize an RGBA image in place, report progress.
 * Build: cc -std=c11 example.c $(pkg-config --cflags --libs cyclegan)
 * Run:   ./a.out [STYLE_NAME_OR_PATH]   (default "monet") */
#include <cyclegan.h>
#include <stdio.h>
#include <stdlib.h>

static bool on_progress(void *user_data, float fraction) {
    (void)user_data;
    fprintf(stderr, "\r%3.0f%%", fraction * 100.0f);
    return true; /* false would cancel: CG_ERR_CANCELLED, image unchanged */
}

int main(int argc, char **argv) {
    const char *style = argc > 1 ? argv[1] : "monet";
    if (cg_abi_version() != CG_ABI_VERSION) {
        fprintf(stderr, "libcyclegan ABI %u, header %u\n", cg_abi_version(), CG_ABI_VERSION);
        return 1;
    }

    /* An image the host already has: 64x48 RGBA8, rows packed (stride = width * 4). */
    const uint32_t width = 64, height = 48;
    uint8_t *pixels = malloc((size_t)width * height * 4);
    if (pixels == NULL) return 1;
    for (size_t i = 0; i < (size_t)width * height * 4; i++) pixels[i] = (uint8_t)(i % 251);
    cg_image image = {pixels, width, height, (size_t)width * 4, CG_PIXEL_FORMAT_RGBA8};

    cg_options *opts = NULL;
    cg_model *model = NULL;
    cg_status st = cg_options_new(&opts);
    if (st == CG_OK) st = cg_options_set_strength(opts, 0.8f);
    if (st == CG_OK) st = cg_model_load(style, opts, &model);
    if (st == CG_OK) st = cg_model_stylize(model, &image, &image, opts, on_progress, NULL);
    if (st != CG_OK)
        fprintf(stderr, "cyclegan: %s: %s\n", cg_status_str(st), cg_last_error_message());
    else
        fprintf(stderr, "\ndone: first pixel is now %u %u %u %u\n", pixels[0], pixels[1],
                pixels[2], pixels[3]);

    cg_model_free(model); /* NULL-safe, like every _free */
    cg_options_free(opts);
    free(pixels);
    return st == CG_OK ? 0 : 1;
}
