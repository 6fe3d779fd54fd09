/*
 * cyclegan: CycleGAN style transfer (Monet and friends) as a C library.
 *
 * Link with `pkg-config --cflags --libs cyclegan`. See docs/c-api.md for an example.
 *
 * Conventions that hold for every declaration below:
 * - Every fallible function returns a cg_status: CG_OK (0) or a CG_ERR_* code. On failure,
 *   cg_last_error_message() says why, on the thread that made the call.
 * - Out-params (`T **out`) are set to NULL on entry and written only on success; the object
 *   written belongs to the caller, who releases it with the matching `_free` function.
 *   Every `_free` accepts NULL and does nothing.
 * - The library never keeps a pointer the caller passed in once a call returns (strings,
 *   buffers, options, callbacks).
 * - No function aborts the process or unwinds into the caller: an internal bug is reported
 *   as CG_ERR_PANIC.
 * - Functions without a handle argument are thread-safe. A loaded cg_model is immutable and
 *   may be used by any number of threads at once; a cg_options handle may be read by
 *   concurrent calls but needs exclusive access while it is being set.
 * - Using a handle after its `_free` is undefined behaviour. As a safeguard, freed handles
 *   are poisoned: most such calls return CG_ERR_INVALID_ARGUMENT and a second `_free` is
 *   ignored, but not every case can be caught.
 * - Enumerations (cg_status, cg_backend, cg_pixel_format) are fixed-width integers with
 *   named values; any other value passed in is rejected with CG_ERR_INVALID_ARGUMENT.
 */


#ifndef CYCLEGAN_H
#define CYCLEGAN_H

/* Generated with cbindgen:0.29.4 */

/* Generated from src/capi: do not edit; run scripts/check-header.sh --update. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * The ABI version this header describes. Raised on any change that breaks binary
 * compatibility (a removed function, a changed signature or struct layout); adding
 * functions or options does not raise it. Compare with `cg_abi_version()` at start-up.
 */
#define CG_ABI_VERSION 1

/**
 * A loaded style model. Create with `cg_model_load` or `cg_model_load_from_memory`, free
 * with `cg_model_free`.
 */
typedef struct cg_model cg_model;

/**
 * Settings for loading and stylizing. Create with `cg_options_new`, free with
 * `cg_options_free`.
 */
typedef struct cg_options cg_options;

/**
 * A training run. Create with `cg_trainer_new`, free with `cg_trainer_free`.
 */
typedef struct cg_trainer cg_trainer;

/**
 * Result of every fallible `cg_` function: `CG_OK` (0) or one of the `CG_ERR_*` codes.
 * New codes may be added in later versions; treat an unknown one as a generic failure and
 * show `cg_last_error_message()`.
 */
typedef uint32_t cg_status;

/**
 * A compute backend: one of the `CG_BACKEND_*` values.
 */
typedef uint32_t cg_backend;

/**
 * The arithmetic of the forward passes: one of the `CG_PRECISION_*` values.
 */
typedef uint32_t cg_precision;

/**
 * Layout of the pixels of a `cg_image`: one of the `CG_PIXEL_FORMAT_*` values. Channels are
 * interleaved in the order named; alpha is straight (not premultiplied). 16-bit and float
 * samples are in the machine's native byte order.
 */
typedef uint32_t cg_pixel_format;

/**
 * A pixel buffer owned by the caller. The library never keeps a `cg_image` or its `data`
 * after the call it was passed to returns.
 *
 * Row `y` starts at `data + y * stride`; a row holds `width` pixels of `format`, and bytes
 * between the end of a row's pixels and the next row (padding) are never read or written.
 * `data` must point to at least `(height - 1) * stride + width * bytes_per_pixel` bytes; it
 * need not be aligned.
 */
typedef struct {
    /**
     * First byte of the first row.
     */
    uint8_t *data;
    /**
     * Pixels per row, at least 1.
     */
    uint32_t width;
    /**
     * Rows, at least 1.
     */
    uint32_t height;
    /**
     * Bytes from the start of one row to the start of the next, at least
     * `width * bytes_per_pixel`.
     */
    size_t stride;
    /**
     * One of the `CG_PIXEL_FORMAT_*` values.
     */
    cg_pixel_format format;
} cg_image;

/**
 * Progress callback: receives `user_data` as given to `cg_model_stylize` and the fraction
 * done, increasing over the call and ending at 1. Return true to continue, false to cancel.
 * It is called on the thread that called `cg_model_stylize`, and must return normally (no
 * C++ exception or longjmp out of it).
 */
typedef bool (*cg_progress_fn)(void *user_data, float fraction);

/**
 * The losses of the latest training iteration, named as the seed logs them.
 */
typedef struct {
    /**
     * Everything the generators minimise: gan + lambda_cycle x cycle + lambda_identity x
     * identity.
     */
    double g;
    /**
     * Mean adversarial loss of the two generators.
     */
    double gan;
    /**
     * Mean of the two reconstruction L1 losses.
     */
    double cycle;
    /**
     * Mean of the two identity L1 losses.
     */
    double identity;
    /**
     * Content-domain discriminator loss.
     */
    double d_a;
    /**
     * Style-domain discriminator loss.
     */
    double d_b;
} cg_train_losses;

/**
 * Success.
 */
#define CG_OK 0

/**
 * A NULL where a value is required, a value out of its documented range, a buffer too
 * small for its size and stride, an unknown style name, or an unknown enum value.
 */
#define CG_ERR_INVALID_ARGUMENT 1

/**
 * A file could not be read (missing, unreadable).
 */
#define CG_ERR_IO 2

/**
 * Data was read but is not what it claims to be (corrupt or truncated weights, unknown
 * tensor layout).
 */
#define CG_ERR_FORMAT 3

/**
 * Valid input that this build cannot handle (e.g. a pickle feature of a .pth file).
 */
#define CG_ERR_UNSUPPORTED 4

/**
 * The requested backend is not compiled into this library or has no usable device.
 */
#define CG_ERR_BACKEND_UNAVAILABLE 5

/**
 * The progress callback returned false; outputs were left unchanged.
 */
#define CG_ERR_CANCELLED 6

/**
 * A bug inside the library was caught at the boundary (a Rust panic). The call had no
 * effect on its outputs; the library remains usable, but please report the message.
 */
#define CG_ERR_PANIC 7

/**
 * The compute backend failed (device error, device out of memory, internal tensor error).
 */
#define CG_ERR_COMPUTE 8

/**
 * A buffer the call needed could not be allocated (a very large image, or too little memory
 * left in the process). Nothing was changed and the library remains usable: retry with a
 * smaller image or scale, or after freeing memory.
 */
#define CG_ERR_OUT_OF_MEMORY 9

/**
 * The best available: CUDA, then Metal, then the CPU. The default.
 */
#define CG_BACKEND_AUTO 0

/**
 * The CPU; always available.
 */
#define CG_BACKEND_CPU 1

/**
 * The first NVIDIA GPU, through the backend library `libcyclegan_backend_cuda.so` loaded at
 * run time (docs/gpu.md); `cg_backend_describe` says whether it was found and why not.
 */
#define CG_BACKEND_CUDA 2

/**
 * The first Apple GPU; needs a library built with the `metal` feature.
 */
#define CG_BACKEND_METAL 3

/**
 * bf16 products where the machine is fast at them and they stay within the documented
 * error bounds of f32 (CPUs with AVX-512 BF16 or AMX), f32 elsewhere. The default.
 */
#define CG_PRECISION_AUTO 0

/**
 * f32 throughout.
 */
#define CG_PRECISION_F32 1

/**
 * bf16 products with f32 accumulation; stylizing returns CG_ERR_UNSUPPORTED where the
 * backend has no such path.
 */
#define CG_PRECISION_BF16 2

/**
 * 8-bit R, G, B: 3 bytes per pixel.
 */
#define CG_PIXEL_FORMAT_RGB8 0

/**
 * 8-bit R, G, B, A: 4 bytes per pixel.
 */
#define CG_PIXEL_FORMAT_RGBA8 1

/**
 * 16-bit R, G, B (`uint16_t`, 0..65535): 6 bytes per pixel.
 */
#define CG_PIXEL_FORMAT_RGB16 2

/**
 * 16-bit R, G, B, A (`uint16_t`, 0..65535): 8 bytes per pixel.
 */
#define CG_PIXEL_FORMAT_RGBA16 3

/**
 * 32-bit float R, G, B, A in 0..1: 16 bytes per pixel. Input values outside 0..1 are
 * clamped and NaN reads as 0.
 */
#define CG_PIXEL_FORMAT_RGBA_F32 4

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The library's version as `major << 16 | minor << 8 | patch` (0.1.0 is 0x000100).
 * Thread-safe.
 */
uint32_t cg_version(void);

/**
 * The ABI version of the loaded library; equal to `CG_ABI_VERSION` when the library
 * matches the header the caller was compiled with. Thread-safe.
 */
uint32_t cg_abi_version(void);

/**
 * A short, static, English description of `status` ("invalid argument"); for an unknown
 * code, "unknown status". Never NULL; the string lives as long as the library is loaded.
 * Thread-safe.
 */
const char *cg_status_str(cg_status status);

/**
 * Why the most recent `cg_status`-returning call on this thread failed, in words that name
 * the offending value ("strength 1.5 is outside 0..1"); "" if that call succeeded or none
 * was made. Never NULL. The string belongs to the library and stays valid until the next
 * `cg_` call on this thread; copy it to keep it. Each thread has its own message.
 */
const char *cg_last_error_message(void);

/**
 * Creates options with the defaults: backend auto, threads 0 (all cores), strength 1,
 * scale 0 (auto), tile size 0 (chosen by the memory plan), memory limit 0 (the smaller of
 * 2 GiB and half the available memory), detail 0.5. On success `*out` holds a new handle the caller
 * owns and must release with `cg_options_free`; on failure `*out` is NULL.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `out` is NULL.
 *
 * Thread-safety: setters need exclusive access to the handle; once configured, one
 * handle may be passed to any number of concurrent `cg_model_load`/`cg_model_stylize` calls.
 */
cg_status cg_options_new(cg_options **out);

/**
 * Releases options created by `cg_options_new`. NULL is a no-op. The handle must not be in
 * use by another call; models loaded with it do not refer to it and stay valid. Using the
 * handle afterwards is undefined behaviour, though the library recognises most such pointers
 * (a second `cg_options_free` is ignored, other calls return CG_ERR_INVALID_ARGUMENT).
 */
void cg_options_free(cg_options *opts);

/**
 * Chooses the backend models are loaded on (`CG_BACKEND_*`). The choice is checked when the
 * model is loaded: `cg_model_load` returns CG_ERR_BACKEND_UNAVAILABLE for a backend this
 * build or machine lacks (except AUTO, which falls back to the CPU).
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `backend` is not a
 * `CG_BACKEND_*` value (the options are then unchanged).
 */
cg_status cg_options_set_backend(cg_options *opts, cg_backend backend);

/**
 * Limits the CPU threads stylizing computes with. `threads` > 0: calls using these options
 * run on a pool of that many worker threads owned by the handle (started on first use and
 * stopped by `cg_options_free`, which waits for them to exit); calls sharing the handle
 * share the pool, so together they use at most `threads` threads. 0, the default: the
 * process-wide pool, sized by the RAYON_NUM_THREADS environment variable or else one thread
 * per logical CPU. The calling thread waits while the workers compute, and runs the progress
 * callback.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `threads` exceeds 1024.
 */
cg_status cg_options_set_threads(cg_options *opts, uint32_t threads);

/**
 * Forces tiles of `tile_size` working pixels, at least 64 (tiles are at least 160 pixels
 * wide, so smaller values act as 160); 0 (the default) lets the
 * memory plan choose: the whole image in one piece when it fits the memory limit (see
 * `cg_options_set_memory_limit`), otherwise the largest tiles that fit. Tiles overlap and
 * are normalized with whole-image statistics, so they leave no seams; larger tiles are
 * faster and use more memory.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `tile_size` is 1..63.
 */
cg_status cg_options_set_tile_size(cg_options *opts, uint32_t tile_size);

/**
 * Limits the memory one stylize call may use, in bytes, the image and the model included:
 * the call runs the whole image in one piece when that fits and in smaller tiles when it
 * does not, and fails with CG_ERR_INVALID_ARGUMENT naming the size it needs when even
 * the smallest tile does not. 0 (the default): the smaller of 2 GiB and half of the memory
 * available when the call starts.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `bytes` is 1 .. 128 MiB - 1.
 */
cg_status cg_options_set_memory_limit(cg_options *opts, uint64_t bytes);

/**
 * The working size a `width` x `height` input gets with these options (scale), so that a
 * front end can show it or size a preview the way `cg_model_stylize` will. `opts` may be
 * NULL for the defaults. On success `*out_width` and `*out_height` are written.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if an out-pointer is NULL, `opts` is not a live
 * handle, or a side is 0.
 */
cg_status cg_options_working_size(const cg_options *opts,
                                  uint32_t width,
                                  uint32_t height,
                                  uint32_t *out_width,
                                  uint32_t *out_height);

/**
 * Sets the arithmetic of the forward passes: a `CG_PRECISION_*` value (default AUTO).
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `precision` is not a
 * `CG_PRECISION_*` value (the options are then unchanged).
 */
cg_status cg_options_set_precision(cg_options *opts, cg_precision precision);

/**
 * Sets how strongly the style is applied, 0..1 (default 1): 0 returns the input, values in
 * between blend linearly with the original.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `strength` is outside 0..1
 * or NaN.
 */
cg_status cg_options_set_strength(cg_options *opts, float strength);

/**
 * Sets the working resolution, which sizes the brush strokes: the styles were trained on
 * 256-pixel paintings, so on a large photo native resolution gives a fine texture rather
 * than a painting. 0 (default) = auto: a long side of 384 pixels, or native if smaller;
 * otherwise the fraction of the input size, in (0, 4] (1 = native). The output is always
 * the input's size.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `scale` is negative, above
 * 4 or NaN.
 */
cg_status cg_options_set_scale(cg_options *opts, float scale);

/**
 * Sets how much of the photo's fine luminance detail is added back when the working
 * resolution is below native, 0..4 (default 0.5; 0 = none, a softer, more painterly look).
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if `opts` is NULL or `detail` is outside 0..4 or
 * NaN.
 */
cg_status cg_options_set_detail(cg_options *opts, float detail);

/**
 * The backend a user-facing name stands for ("auto", "cpu", "cuda" or "gpu", "metal"; any
 * case), so that plug-ins take the same names as the command line. On success `*out` is
 * written.
 *
 * Returns CG_OK, or CG_ERR_INVALID_ARGUMENT if a pointer is NULL, the name is not UTF-8 or
 * names no backend (the message lists the known names).
 */
cg_status cg_backend_from_name(const char *name, cg_backend *out);

/**
 * Whether `backend` can run on this machine: for CG_BACKEND_CUDA, a backend library was
 * found, passed its checks and opened its GPU (the status `cg_backend_describe` gives).
 * CG_BACKEND_AUTO and CG_BACKEND_CPU are always available; an unknown value gives false.
 * The first call looks for the backend libraries and opens a GPU, which can take a
 * moment; later calls give the same answer. Thread-safe.
 */
bool cg_backend_is_available(cg_backend backend);

/**
 * Writes one line of text saying what `backend` is on this machine into `buf`: "cpu: ready
 * (built in)", "cuda: ready: NVIDIA H200, 139.8 GiB (138.2 GiB free)
 * (/usr/lib/cyclegan/libcyclegan_backend_cuda.so)", or why it cannot run ("cuda: no cuda
 * backend: libcyclegan_backend_cuda.so is not in ...", "... was refused: it is truncated
 * or corrupt ..."). The same text as the `cyclegan backends` command.
 *
 * Follows snprintf: writes at most `len - 1` bytes and a NUL (truncating the text if it
 * does not fit; nothing when `len` is 0, and then `buf` may be NULL), and returns the
 * text's full length in bytes without the NUL, so a return value `>= len` means it was
 * truncated. An unknown backend value gives a text saying so. Thread-safe.
 */
size_t cg_backend_describe(cg_backend backend, char *buf, size_t len);

/**
 * Loads a style: a shipped style name (see `cg_style_name`, e.g. "monet") or the path of a
 * `.safetensors` style file or a PyTorch `.pth` generator checkpoint. `name_or_path` is
 * UTF-8 and NUL-terminated; it is not kept. `opts` may be NULL for the defaults; only its
 * backend is used here. On success `*out` holds a new handle the caller owns and must release
 * with `cg_model_free`; on failure `*out` is NULL.
 *
 * Returns CG_OK; CG_ERR_INVALID_ARGUMENT if `name_or_path` or `out` is NULL, not UTF-8, or
 * names no shipped style and no file, or if `opts` is not a live options handle; CG_ERR_IO
 * if the file cannot be read (missing, a folder, unreadable); CG_ERR_FORMAT if
 * it is not a valid style; CG_ERR_UNSUPPORTED for checkpoint features this build cannot read;
 * CG_ERR_BACKEND_UNAVAILABLE if the chosen backend is missing; CG_ERR_OUT_OF_MEMORY if the
 * weights cannot be allocated; CG_ERR_COMPUTE if the device fails.
 *
 * Thread-safe: any number of models may be loaded concurrently.
 */
cg_status cg_model_load(const char *name_or_path, const cg_options *opts, cg_model **out);

/**
 * Loads a style from `len` bytes at `data` (the contents of a `.safetensors` or `.pth`
 * file). The bytes are copied during the call and not kept. `opts` may be NULL for the
 * defaults; only its backend is used. On success `*out` holds a new handle the caller owns
 * and must release with `cg_model_free`; on failure `*out` is NULL.
 *
 * Returns CG_OK; CG_ERR_INVALID_ARGUMENT if `data` or `out` is NULL; CG_ERR_FORMAT if the
 * bytes are not a valid style (an empty buffer included); CG_ERR_UNSUPPORTED,
 * CG_ERR_BACKEND_UNAVAILABLE and CG_ERR_COMPUTE as for `cg_model_load`.
 *
 * Thread-safe.
 */
cg_status cg_model_load_from_memory(const uint8_t *data,
                                    size_t len,
                                    const cg_options *opts,
                                    cg_model **out);

/**
 * Releases a model. NULL is a no-op. No other call may be using the model, and it must not be
 * used afterwards: that is undefined behaviour, though the library recognises most such
 * pointers (a second `cg_model_free` is ignored, other calls return CG_ERR_INVALID_ARGUMENT).
 */
void cg_model_free(cg_model *model);

/**
 * Applies `model`'s style to `src` and writes the result into `dst`.
 *
 * `dst` must have `src`'s width and height; its format may differ (an alpha channel the
 * destination lacks is dropped; one the source lacks is written opaque). `dst` may be `src`
 * itself or describe the same memory (in place): the source is read completely before the
 * destination is written. Alpha passes through unchanged. Only the pixel bytes of `dst` are
 * written, never its row padding, and only on success: on any error, including
 * cancellation, the destination is left byte for byte as it was.
 *
 * `opts` may be NULL for the defaults; its strength, scale, detail, tile size and threads
 * apply (the backend was fixed when the model was loaded). `progress` may be NULL; otherwise
 * it is called with `user_data` as described at `cg_progress_fn`.
 *
 * Returns CG_OK; CG_ERR_INVALID_ARGUMENT if `model`, `src` or `dst` is NULL, `model` or
 * `opts` is not a live handle (see `cg_model_free`), an image is malformed (NULL data, zero
 * size, stride too small, a byte span that overflows, unknown format) or the sizes differ;
 * CG_ERR_CANCELLED if `progress` returned false; CG_ERR_OUT_OF_MEMORY if a working buffer
 * cannot be allocated or the image does not fit the memory limit even in the smallest
 * tiles (`cg_options_set_memory_limit`); CG_ERR_COMPUTE if the device fails.
 *
 * Thread-safe: concurrent calls may share one model and one options handle (neither is
 * modified), as long as no call writes a buffer another call reads or writes and no thread
 * changes the options meanwhile.
 */
cg_status cg_model_stylize(const cg_model *model,
                           const cg_image *src,
                           cg_image *dst,
                           const cg_options *opts,
                           cg_progress_fn progress,
                           void *user_data);

/**
 * The number of styles built into the library; valid indices for `cg_style_name` and
 * `cg_style_label` are 0 to count - 1. Thread-safe.
 */
size_t cg_style_count(void);

/**
 * The name of shipped style `index` ("monet"), to pass to `cg_model_load`; NULL if `index`
 * is out of range. The string is static: valid for the life of the library, never freed by
 * the caller. Thread-safe.
 */
const char *cg_style_name(size_t index);

/**
 * The menu label of shipped style `index` ("Monet style", English); NULL if `index` is out
 * of range. The string is static, as for `cg_style_name`. Thread-safe.
 */
const char *cg_style_label(size_t index);

/**
 * Opens a training run described by `config_json`, a JSON object whose keys are the long
 * options of `cyclegan train` with `_` for `-`:
 *
 * ```json
 * {"content": "photos/", "style": "paintings/", "out": "run/", "iterations": 20000}
 * ```
 *
 * `out` (required) is the folder that receives `checkpoint.safetensors`; `content`, `style`
 * and a length (`epochs` or `iterations`, the total to reach) are required for a new run.
 * Optional: `decay_from`, `size`, `batch`, `lr`, `lambda_cycle`, `lambda_identity`, `pool`,
 * `ngf`, `blocks`, `ndf`, `seed`, `init` (a style file to fine-tune), `checkpoint_every`
 * (default 1000) and `resume` (true: continue the run in `out`; the other keys then
 * override the checkpoint's settings, e.g. a larger `iterations`). Unknown keys and wrong
 * types are refused. Settings left out take the seed recipe's values (the paper's).
 *
 * `opts` may be NULL; its backend and thread count apply. With CG_BACKEND_CUDA (or AUTO when
 * the CUDA backend library found a GPU) the whole run lives in that library, which reads
 * the folders and writes the same files (docs/gpu.md). The folders are listed now (a file
 * that is not an image is skipped); the networks are built, or read from the checkpoint.
 * On success `*out` holds a new handle the caller owns and must release with
 * `cg_trainer_free`; on failure `*out` is NULL and nothing on disk has changed.
 *
 * Returns CG_OK; CG_ERR_INVALID_ARGUMENT for NULL arguments, JSON that is not valid UTF-8 or
 * not a valid settings object, settings out of range, missing or empty folders, a new run
 * over an existing checkpoint or `resume` without one, a checkpoint whose network shapes
 * differ from the settings, and an `out` folder that cannot be created or written;
 * CG_ERR_IO if a folder or file cannot be read; CG_ERR_FORMAT for a corrupt checkpoint or
 * `init` file; CG_ERR_BACKEND_UNAVAILABLE if the chosen backend is missing.
 */
cg_status cg_trainer_new(const char *config_json, const cg_options *opts, cg_trainer **out);

/**
 * Trains up to `iterations` more iterations, stopping early at the end of the run; pass
 * UINT64_MAX to train to the end. The run's `out` folder receives the checkpoint and both
 * styles (`style.safetensors`, content -> style, and `inverse.safetensors`) at every
 * multiple of `checkpoint_every` and when the call returns, each atomically: killing the
 * process at any moment leaves the previous or the new file, never a torn one. This is
 * the loop `cyclegan train` runs, so both leave the same files.
 *
 * `progress` may be NULL; otherwise it is called after every iteration with `user_data` and
 * the fraction of the whole run done, on the calling thread. It must not call `cg_trainer_*`
 * functions on this trainer. Returning false stops after that iteration: the checkpoint is
 * written and the call returns CG_ERR_CANCELLED; the trainer stays usable (call again to
 * continue).
 *
 * Returns CG_OK (also when the run was already complete: nothing is done);
 * CG_ERR_INVALID_ARGUMENT if `trainer` is NULL or an earlier call failed; CG_ERR_CANCELLED
 * as above; CG_ERR_IO if the checkpoint cannot be written; CG_ERR_COMPUTE if the device
 * fails. After any error other than CG_ERR_CANCELLED the trainer refuses further runs and
 * exports: free it and open the run again with `"resume": true`, which continues from the
 * last checkpoint.
 *
 * Not thread-safe for one trainer: no other call may use it meanwhile.
 */
cg_status cg_trainer_run(cg_trainer *trainer,
                         uint64_t iterations,
                         cg_progress_fn progress,
                         void *user_data);

/**
 * Writes the content -> style generator as a style file (f16 safetensors with the run's
 * settings in its metadata) at `path`, a UTF-8 NUL-terminated path: the file that
 * `cg_model_load`, `cyclegan stylize --model` and the plug-ins load. The file is written
 * atomically (an existing one is replaced only once the new one is complete).
 *
 * Returns CG_OK; CG_ERR_INVALID_ARGUMENT if an argument is NULL or not UTF-8, or the trainer
 * failed earlier; CG_ERR_IO if the file cannot be written.
 *
 * Thread-safe with other calls that only read the trainer.
 */
cg_status cg_trainer_save_style(const cg_trainer *trainer, const char *path);

/**
 * Iterations completed so far, counting earlier runs of a resumed training; 0 for NULL or
 * a handle that is not live.
 */
uint64_t cg_trainer_iteration(const cg_trainer *trainer);

/**
 * Iterations in the whole run (its length); 0 for NULL or a handle that is not live.
 */
uint64_t cg_trainer_total_iterations(const cg_trainer *trainer);

/**
 * Copies the losses of the latest iteration this handle trained into `*out`.
 *
 * Returns CG_OK; CG_ERR_INVALID_ARGUMENT if an argument is NULL or no iteration has run
 * on this handle yet.
 */
cg_status cg_trainer_last_losses(const cg_trainer *trainer, cg_train_losses *out);

/**
 * Releases a trainer. NULL is a no-op; a handle that is not live (most double frees) is
 * left alone and reported through `cg_last_error_message()`. Nothing is saved: the
 * checkpoint on disk is the one the last `cg_trainer_run` wrote. No other call may be using
 * the trainer.
 */
void cg_trainer_free(cg_trainer *trainer);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* CYCLEGAN_H */
