// A C++17 program that uses libcyclegan through include/cyclegan.hpp, built by
// tests/consumers.rs the way a user's project would: through the installed CMake package
// (CMakeLists.txt here) or pkg-config. Exercises RAII, errors, progress, cancel, views.
// Usage: consumer STYLE_NAME_OR_PATH
#include <cyclegan.hpp>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what);
        failures++;
    }
}

std::vector<std::uint8_t> picture(std::uint32_t w, std::uint32_t h) {
    std::vector<std::uint8_t> px(static_cast<std::size_t>(w) * h * 4);
    for (std::uint32_t y = 0; y < h; y++)
        for (std::uint32_t x = 0; x < w; x++) {
            std::uint8_t *p = &px[(static_cast<std::size_t>(y) * w + x) * 4];
            p[0] = static_cast<std::uint8_t>(x * 255 / w);
            p[1] = static_cast<std::uint8_t>(y * 255 / h);
            p[2] = static_cast<std::uint8_t>((x + y) * 7);
            p[3] = static_cast<std::uint8_t>(255 - x);
        }
    return px;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s STYLE\n", argv[0]);
        return 2;
    }
    try {
        cyclegan::check_abi();
        const auto v = cyclegan::version();
        std::printf("libcyclegan %u.%u.%u\n", v.major_version, v.minor_version, v.patch_version);
        bool has_monet = false;
        for (const auto &s : cyclegan::styles()) has_monet |= s.name == "monet";
        expect(has_monet, "styles() lists monet");
        expect(cyclegan::backend_available(cyclegan::backend::cpu), "the CPU is available");

        cyclegan::options opts;
        opts.backend(cyclegan::backend::cpu).threads(2).strength(0.8f).scale(0).detail(0.5f);
        cyclegan::model style(argv[1], opts);

        const std::uint32_t w = 64, h = 48;
        const std::vector<std::uint8_t> original = picture(w, h);
        std::vector<std::uint8_t> px = original;
        cyclegan::image_view img(px, w, h, cyclegan::pixel_format::rgba8);

        // Progress as a lambda: increasing fractions ending at 1.
        std::vector<float> seen;
        style.stylize(img, img, opts, [&](float f) {
            seen.push_back(f);
            return true;
        });
        expect(!seen.empty() && seen.back() == 1.0f, "progress ends at 1");
        for (std::size_t i = 1; i < seen.size(); i++) expect(seen[i] >= seen[i - 1], "progress increases");
        expect(px != original, "stylize changed the pixels");
        bool alpha_kept = true;
        for (std::size_t i = 3; i < px.size(); i += 4) alpha_kept &= px[i] == original[i];
        expect(alpha_kept, "alpha passes through");

        // A separate destination of another format, through a const source view.
        std::vector<std::uint16_t> rgb16(static_cast<std::size_t>(w) * h * 3);
        const cyclegan::image_view src(original, w, h, cyclegan::pixel_format::rgba8);
        style.stylize(src, cyclegan::image_view(rgb16, w, h, cyclegan::pixel_format::rgb16));
        bool nonzero = false;
        for (auto s : rgb16) nonzero |= s != 0;
        expect(nonzero, "the 16-bit destination was written");

        // Cancel: false from the callable, the image stays as it was.
        std::vector<std::uint8_t> before = px;
        try {
            style.stylize(img, img, opts, [](float) { return false; });
            expect(false, "cancel throws");
        } catch (const cyclegan::cancelled &e) {
            expect(e.status() == CG_ERR_CANCELLED, "cancelled carries CG_ERR_CANCELLED");
        }
        expect(px == before, "a cancelled call leaves the image unchanged");

        // An exception from the callable comes back unchanged, through the C code.
        try {
            style.stylize(img, img, opts, [](float) -> void { throw std::out_of_range("mine"); });
            expect(false, "the callable's exception is rethrown");
        } catch (const std::out_of_range &e) {
            expect(std::strcmp(e.what(), "mine") == 0, "the callable's own exception");
        }
        expect(px == before, "an exception leaves the image unchanged");

        // Errors carry the status and the library's message.
        try {
            cyclegan::model missing("no-such-style-here");
            expect(false, "an unknown style throws");
        } catch (const cyclegan::error &e) {
            expect(e.status() == CG_ERR_INVALID_ARGUMENT, "unknown style: CG_ERR_INVALID_ARGUMENT");
            expect(std::string(e.what()).find("no-such-style-here") != std::string::npos,
                   "the message names the style");
        }
        try {
            opts.strength(1.5f);
            expect(false, "strength 1.5 throws");
        } catch (const cyclegan::error &e) {
            expect(e.status() == CG_ERR_INVALID_ARGUMENT, "strength: CG_ERR_INVALID_ARGUMENT");
            expect(std::string(e.what()).find("1.5") != std::string::npos, "the message names 1.5");
        }
        try {
            std::vector<std::uint8_t> small(10);
            cyclegan::image_view too_small(small, w, h, cyclegan::pixel_format::rgba8);
            expect(false, "a too small buffer throws");
        } catch (const cyclegan::error &e) {
            expect(e.status() == CG_ERR_INVALID_ARGUMENT, "small buffer: CG_ERR_INVALID_ARGUMENT");
        }
        try {
            style.stylize(img, src);
            expect(false, "a read-only destination throws");
        } catch (const cyclegan::error &e) {
            expect(e.status() == CG_ERR_INVALID_ARGUMENT, "read-only destination");
        }

        // Handles move.
        cyclegan::model moved = std::move(style);
        expect(moved.get() != nullptr && style.get() == nullptr, "a model moves");
    } catch (const cyclegan::error &e) {
        std::fprintf(stderr, "cyclegan::error %u: %s\n", e.status(), e.what());
        return 1;
    }
    if (failures != 0) return 1;
    std::printf("consumer: ok\n");
    return 0;
}
