/* cyclegan.hpp: a header-only C++17 wrapper over the C API in cyclegan.h.
 *
 *   cyclegan::options opts;
 *   opts.strength(0.8f).scale(0);                     // 0 = auto working size
 *   cyclegan::model monet("monet", opts);             // throws cyclegan::error on failure
 *   std::vector<std::uint8_t> rgba(w * h * 4);
 *   cyclegan::image_view img(rgba, w, h, cyclegan::pixel_format::rgba8);
 *   monet.stylize(img, img, opts, [](float done) { std::printf("%.0f%%\r", done * 100); });
 *
 * - Handles (options, model, trainer) are RAII, move-only, and free what they own.
 * - Every failing call throws cyclegan::error, which carries the cg_status and the library's
 *   message; a progress callable returning false cancels with cyclegan::cancelled (a
 *   cyclegan::error with status CG_ERR_CANCELLED). An exception thrown by the callable
 *   cancels the work and is rethrown unchanged once the library has returned; it never
 *   crosses the C code.
 * - image_view describes pixels the caller owns (like std::span: it neither owns nor copies);
 *   built from a container it checks that the buffer is large enough.
 * The threading and memory rules are those of cyclegan.h and docs/c-api.md.
 */
#ifndef CYCLEGAN_HPP
#define CYCLEGAN_HPP

#include <cyclegan.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace cyclegan {

/// A failed call: status() is the cg_status, what() "status text: message".
class error : public std::runtime_error {
public:
    error(cg_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    cg_status status() const noexcept { return status_; }

private:
    cg_status status_;
};

/// The progress callable returned false (CG_ERR_CANCELLED); the destination is unchanged.
class cancelled : public error {
public:
    explicit cancelled(const std::string &message) : error(CG_ERR_CANCELLED, message) {}
};

namespace impl {

inline void check(cg_status status) {
    if (status == CG_OK) return;
    // Copy the message first: it lives until the next cg_ call on this thread.
    std::string message = cg_status_str(status);
    const char *detail = cg_last_error_message();
    if (detail != nullptr && *detail != '\0') message += std::string(": ") + detail;
    if (status == CG_ERR_CANCELLED) throw cancelled(message);
    throw error(status, message);
}

template <class F>
struct progress_context {
    F *callable;
    std::exception_ptr exception;
};

/// The C callback: calls the C++ callable, never lets an exception out.
template <class F>
bool progress_trampoline(void *user_data, float fraction) noexcept {
    auto *ctx = static_cast<progress_context<F> *>(user_data);
    try {
        if constexpr (std::is_void_v<std::invoke_result_t<F &, float>>) {
            (*ctx->callable)(fraction);
            return true;
        } else {
            return static_cast<bool>((*ctx->callable)(fraction));
        }
    } catch (...) {
        ctx->exception = std::current_exception();
        return false;
    }
}

/// Runs `call(progress_fn, user_data)` with `f` as the progress callback and turns the
/// outcome into a return or an exception.
template <class F, class Call>
void with_progress(F &f, Call &&call) {
    static_assert(std::is_invocable_v<F &, float>,
                  "a progress callable takes the fraction done (float) and returns bool "
                  "(false cancels) or void");
    progress_context<F> ctx{&f, nullptr};
    cg_status status = call(&progress_trampoline<F>, static_cast<void *>(&ctx));
    if (ctx.exception) std::rethrow_exception(ctx.exception);
    check(status);
}

}  // namespace impl

/// Where the work runs; `automatic` picks a GPU when one is compiled in and present.
enum class backend : cg_backend {
    automatic = CG_BACKEND_AUTO,
    cpu = CG_BACKEND_CPU,
    cuda = CG_BACKEND_CUDA,
    metal = CG_BACKEND_METAL,
};

/// Pixel layouts of an image_view (16-bit samples are native-endian, floats 0..1).
enum class pixel_format : cg_pixel_format {
    rgb8 = CG_PIXEL_FORMAT_RGB8,
    rgba8 = CG_PIXEL_FORMAT_RGBA8,
    rgb16 = CG_PIXEL_FORMAT_RGB16,
    rgba16 = CG_PIXEL_FORMAT_RGBA16,
    rgba_f32 = CG_PIXEL_FORMAT_RGBA_F32,
};

constexpr std::size_t bytes_per_pixel(pixel_format f) noexcept {
    switch (f) {
    case pixel_format::rgb8: return 3;
    case pixel_format::rgba8: return 4;
    case pixel_format::rgb16: return 6;
    case pixel_format::rgba16: return 8;
    case pixel_format::rgba_f32: return 16;
    }
    return 0;
}

/// A non-owning view of pixels: `height` rows of `width` pixels, `stride` bytes apart
/// (0 = packed rows). Views made from const data can be read, not written.
class image_view {
public:
    template <class T>
    image_view(T *data, std::uint32_t width, std::uint32_t height, pixel_format format,
               std::size_t stride = 0)
        : writable_(!std::is_const_v<T>) {
        static_assert(std::is_trivially_copyable_v<T>, "pixels must be plain numbers");
        image_.data = const_cast<std::uint8_t *>(
            reinterpret_cast<const std::uint8_t *>(static_cast<const void *>(data)));
        image_.width = width;
        image_.height = height;
        image_.format = static_cast<cg_pixel_format>(format);
        image_.stride = stride != 0 ? stride : static_cast<std::size_t>(width) * bytes_per_pixel(format);
    }

    /// A view of a contiguous container (std::vector, std::array, ...), checked to hold at
    /// least (height - 1) * stride + width * bytes_per_pixel bytes.
    template <class Container,
              class = decltype(std::data(std::declval<Container &>()) + std::size(std::declval<Container &>()))>
    image_view(Container &pixels, std::uint32_t width, std::uint32_t height, pixel_format format,
               std::size_t stride = 0)
        : image_view(std::data(pixels), width, height, format, stride) {
        using T = std::remove_pointer_t<decltype(std::data(pixels))>;
        const std::size_t have = std::size(pixels) * sizeof(T);
        if (width == 0 || height == 0 || have < size_bytes()) {
            throw error(CG_ERR_INVALID_ARGUMENT,
                        "image_view: the buffer holds " + std::to_string(have) + " bytes, " +
                            std::to_string(width) + "x" + std::to_string(height) + " needs " +
                            std::to_string(size_bytes()));
        }
    }

    std::uint8_t *data() const noexcept { return image_.data; }
    std::uint32_t width() const noexcept { return image_.width; }
    std::uint32_t height() const noexcept { return image_.height; }
    std::size_t stride() const noexcept { return image_.stride; }
    pixel_format format() const noexcept { return static_cast<pixel_format>(image_.format); }
    bool writable() const noexcept { return writable_; }
    /// Bytes the view spans: (height - 1) * stride + width * bytes_per_pixel.
    std::size_t size_bytes() const noexcept {
        if (image_.width == 0 || image_.height == 0) return 0;
        return (static_cast<std::size_t>(image_.height) - 1) * image_.stride +
               static_cast<std::size_t>(image_.width) * bytes_per_pixel(format());
    }
    /// The first byte of row `y` (not bounds-checked).
    std::uint8_t *row(std::uint32_t y) const noexcept { return image_.data + y * image_.stride; }

    const cg_image *c_image() const noexcept { return &image_; }
    /// The description to pass as a destination: like std::span, a const view still
    /// refers to writable pixels (check writable() first).
    cg_image *c_destination() const noexcept { return const_cast<cg_image *>(&image_); }

private:
    cg_image image_{};
    bool writable_;
};

/// Settings of a stylize call (and the backend of model loading). Setters chain.
class options {
public:
    options() {
        cg_options *raw = nullptr;
        impl::check(cg_options_new(&raw));
        handle_.reset(raw);
    }

    options &backend(cyclegan::backend b) {
        impl::check(cg_options_set_backend(get(), static_cast<cg_backend>(b)));
        return *this;
    }
    /// Worker threads owned by these options (0 = the process-wide pool).
    options &threads(std::uint32_t n) {
        impl::check(cg_options_set_threads(get(), n));
        return *this;
    }
    options &tile_size(std::uint32_t side) {
        impl::check(cg_options_set_tile_size(get(), side));
        return *this;
    }
    /// 0 keeps the photo, 1 is the full style.
    options &strength(float s) {
        impl::check(cg_options_set_strength(get(), s));
        return *this;
    }
    /// Working resolution: 0 = auto, else a fraction of the input size in (0, 4].
    options &scale(float s) {
        impl::check(cg_options_set_scale(get(), s));
        return *this;
    }
    options &detail(float d) {
        impl::check(cg_options_set_detail(get(), d));
        return *this;
    }

    cg_options *get() const noexcept { return handle_.get(); }

private:
    struct deleter {
        void operator()(cg_options *p) const noexcept { cg_options_free(p); }
    };
    std::unique_ptr<cg_options, deleter> handle_;
};

/// A loaded style. Immutable: any number of threads may stylize with one model at once.
class model {
public:
    /// Loads a shipped style name ("monet") or a .safetensors / .pth file.
    explicit model(const std::string &name_or_path) { load(name_or_path, nullptr); }
    model(const std::string &name_or_path, const options &opts) { load(name_or_path, opts.get()); }

    /// Loads a style from the bytes of a .safetensors or .pth file (copied, not kept).
    static model from_memory(const void *data, std::size_t size) {
        return from_memory(data, size, nullptr);
    }
    static model from_memory(const void *data, std::size_t size, const options &opts) {
        return from_memory(data, size, opts.get());
    }

    /// Stylizes `src` into `dst` (same size; may be the same pixels). On any exception,
    /// `dst` is unchanged.
    void stylize(const image_view &src, const image_view &dst) const {
        stylize_raw(src, dst, nullptr, nullptr, nullptr);
    }
    void stylize(const image_view &src, const image_view &dst, const options &opts) const {
        stylize_raw(src, dst, opts.get(), nullptr, nullptr);
    }
    /// `progress(float fraction)` is called on this thread with increasing fractions ending
    /// at 1; returning false cancels (cyclegan::cancelled), an exception it throws cancels
    /// and is rethrown here.
    template <class Progress>
    void stylize(const image_view &src, const image_view &dst, const options &opts,
                 Progress &&progress) const {
        writable_or_throw(dst);
        impl::with_progress(progress, [&](cg_progress_fn fn, void *user_data) {
            return cg_model_stylize(get(), src.c_image(), dst.c_destination(), opts.get(), fn,
                                    user_data);
        });
    }

    cg_model *get() const noexcept { return handle_.get(); }

private:
    model() = default;

    void load(const std::string &name_or_path, const cg_options *opts) {
        cg_model *raw = nullptr;
        impl::check(cg_model_load(name_or_path.c_str(), opts, &raw));
        handle_.reset(raw);
    }

    static model from_memory(const void *data, std::size_t size, const cg_options *opts) {
        model m;
        cg_model *raw = nullptr;
        impl::check(
            cg_model_load_from_memory(static_cast<const std::uint8_t *>(data), size, opts, &raw));
        m.handle_.reset(raw);
        return m;
    }

    static void writable_or_throw(const image_view &dst) {
        if (!dst.writable())
            throw error(CG_ERR_INVALID_ARGUMENT, "stylize: the destination view is read-only");
    }

    void stylize_raw(const image_view &src, const image_view &dst, const cg_options *opts,
                     cg_progress_fn fn, void *user_data) const {
        writable_or_throw(dst);
        impl::check(
            cg_model_stylize(get(), src.c_image(), dst.c_destination(), opts, fn, user_data));
    }

    struct deleter {
        void operator()(cg_model *p) const noexcept { cg_model_free(p); }
    };
    std::unique_ptr<cg_model, deleter> handle_;
};

/// A training run (see cg_trainer_new for the JSON settings).
class trainer {
public:
    explicit trainer(const std::string &config_json) { open(config_json, nullptr); }
    trainer(const std::string &config_json, const options &opts) { open(config_json, opts.get()); }

    /// Runs up to `iterations` more iterations; the callable is as for model::stylize.
    void run(std::uint64_t iterations) {
        impl::check(cg_trainer_run(get(), iterations, nullptr, nullptr));
    }
    template <class Progress>
    void run(std::uint64_t iterations, Progress &&progress) {
        impl::with_progress(progress, [&](cg_progress_fn fn, void *user_data) {
            return cg_trainer_run(get(), iterations, fn, user_data);
        });
    }
    void save_style(const std::string &path) const {
        impl::check(cg_trainer_save_style(get(), path.c_str()));
    }
    std::uint64_t iteration() const noexcept { return cg_trainer_iteration(get()); }
    std::uint64_t total_iterations() const noexcept { return cg_trainer_total_iterations(get()); }
    cg_train_losses last_losses() const {
        cg_train_losses losses{};
        impl::check(cg_trainer_last_losses(get(), &losses));
        return losses;
    }

    cg_trainer *get() const noexcept { return handle_.get(); }

private:
    void open(const std::string &config_json, const cg_options *opts) {
        cg_trainer *raw = nullptr;
        impl::check(cg_trainer_new(config_json.c_str(), opts, &raw));
        handle_.reset(raw);
    }
    struct deleter {
        void operator()(cg_trainer *p) const noexcept { cg_trainer_free(p); }
    };
    std::unique_ptr<cg_trainer, deleter> handle_;
};

/// A shipped style: `name` for model(name), `label` for menus.
struct style_info {
    std::string name;
    std::string label;
};

inline std::vector<style_info> styles() {
    std::vector<style_info> out;
    const std::size_t n = cg_style_count();
    for (std::size_t i = 0; i < n; i++) {
        const char *name = cg_style_name(i);
        const char *label = cg_style_label(i);
        out.push_back({name ? name : "", label ? label : ""});
    }
    return out;
}

struct version_info {
    unsigned major_version, minor_version, patch_version;
};

/// The library's version (not the header's).
inline version_info version() noexcept {
    const std::uint32_t v = cg_version();
    return {(v >> 16) & 0xffu, (v >> 8) & 0xffu, v & 0xffu};
}

/// Throws when the library's ABI is not the one this header was written for.
inline void check_abi() {
    if (cg_abi_version() != CG_ABI_VERSION)
        throw error(CG_ERR_UNSUPPORTED, "libcyclegan ABI " + std::to_string(cg_abi_version()) +
                                            ", header ABI " + std::to_string(CG_ABI_VERSION));
}

inline bool backend_available(backend b) noexcept {
    return cg_backend_is_available(static_cast<cg_backend>(b));
}

}  // namespace cyclegan

#endif  // CYCLEGAN_HPP
