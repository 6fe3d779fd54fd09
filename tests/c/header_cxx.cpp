// The header compiles as C++ and the library is usable from it, with RAII ownership.
// Usage: header_cxx FIXTURE_MODEL
#include "cyclegan.h"

#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

namespace {

struct ModelFree {
    void operator()(cg_model *m) const { cg_model_free(m); }
};
struct OptionsFree {
    void operator()(cg_options *o) const { cg_options_free(o); }
};
using Model = std::unique_ptr<cg_model, ModelFree>;
using Options = std::unique_ptr<cg_options, OptionsFree>;

int fail(const char *what) {
    std::fprintf(stderr, "%s: %s\n", what, cg_last_error_message());
    return 1;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (cg_abi_version() != CG_ABI_VERSION) return fail("abi");

    cg_options *raw_opts = nullptr;
    if (cg_options_new(&raw_opts) != CG_OK) return fail("options");
    Options opts(raw_opts);
    if (cg_options_set_threads(opts.get(), 1) != CG_OK) return fail("threads");

    cg_model *raw_model = nullptr;
    if (cg_model_load(argv[1], opts.get(), &raw_model) != CG_OK) return fail("load");
    Model model(raw_model);

    std::vector<uint8_t> pixels(8 * 8 * 3, 100);
    cg_image img{pixels.data(), 8, 8, 8 * 3, CG_PIXEL_FORMAT_RGB8};
    float last = 0.0f;
    cg_progress_fn progress = [](void *user, float f) -> bool {
        *static_cast<float *>(user) = f;
        return true;
    };
    if (cg_model_stylize(model.get(), &img, &img, opts.get(), progress, &last) != CG_OK)
        return fail("stylize");
    if (last != 1.0f) return fail("progress");
    if (std::strcmp(cg_status_str(CG_ERR_CANCELLED), "cancelled") != 0) return fail("status");
    std::printf("header_cxx: ok (%zu styles)\n", cg_style_count());
    return 0;
}
