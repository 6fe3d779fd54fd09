/*
 * cyclegan, an ImageMagick 6 filter module: repaints every image of the list in a painter's
 * style with libcyclegan.
 *
 *   convert in.jpg -process "cyclegan style=monet strength=0.8" out.jpg
 *   mogrify -path out -process "cyclegan style=monet" *.jpg
 *
 * Arguments, all optional, as key=value: style (a shipped style name or the path of a style
 * file; default monet), strength (0..1, default 1), scale (a fraction in (0, 4], or auto/0;
 * default auto), detail (0..4, default 0.5), tile (working pixels per tile, >= 64; default
 * 0 = as the memory plan chooses), device (auto, cpu, cuda or metal; default auto),
 * max-memory (e.g. 1500M or 2G; default automatic), precision (auto, f32 or bf16; default
 * auto). They are parsed, and the model cached, by the shared glue in
 * plugins/common/cg_plugin.c.
 *
 * Pixels go in as 16-bit RGB(A) (ShortPixel, the full Q16 precision) and come back at the
 * image's depth (see stylize_image); alpha is kept, and an image without alpha gets none.
 * The loaded model is cached for the whole process, so a mogrify batch loads it once.
 *
 * Failures. ImageMagick writes the output even when a filter reports an error, and a
 * filter cannot stop that (it may not empty the image list, and a wrong signature or an
 * error exception still leaves the image to be written). So every failure here (a bad
 * argument, a style that does not load, a stylize error) is raised through
 * MagickFatalError: ImageMagick prints "convert: cyclegan: <reason> (<detail>)." and its
 * default fatal handler exits non-zero before anything is written. An application that
 * embeds MagickCore can catch it with SetFatalErrorHandler. Unreadable input files never
 * reach the filter: mogrify reports them and goes on with the rest.
 */

#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magick/MagickCore.h>

#include "cyclegan.h"
#include "cg_plugin.h"

#define TAG "cyclegan"
#define PROGRESS_TAG "cyclegan/Image"

ModuleExport size_t cycleganImage (Image **images, const int argc, const char **argv,
                                   ExceptionInfo *exception);

/* Why a call failed: a reason and the argument or file it concerns. */
typedef struct
{
  char reason[CG_PLUGIN_ERROR_MAX + 16];
  char detail[PATH_MAX + 64];
} Failure;

static int
set_failure (Failure *f, const char *reason, const char *detail)
{
  (void) snprintf (f->reason, sizeof f->reason, "%s: %s", TAG, reason);
  (void) snprintf (f->detail, sizeof f->detail, "%s", detail);
  return 0;
}

/* Keeps this module and libcyclegan loaded after ImageMagick's dlclose, so the cached model
 * and the library's worker threads stay valid across the calls of a mogrify batch. */
static void
pin_module (void)
{
  static int pinned;
  Dl_info    info;

  if (pinned)
    return;
  pinned = 1;
  if (dladdr ((void *) &pin_module, &info) != 0 && info.dli_fname != NULL)
    (void) dlopen (info.dli_fname, RTLD_NOW | RTLD_NODELETE);
}

/* Reads the key=value arguments into `s`. Returns 0 after filling `f`. */
static int
parse_settings (const int argc, const char **argv, cg_plugin_settings *s, Failure *f)
{
  char err[CG_PLUGIN_ERROR_MAX];
  int  i;

  if (!cg_plugin_settings_init (s, err, sizeof err))
    return set_failure (f, err, "options");
  for (i = 0; i < argc; i++)
    {
      const char *arg = argv[i];
      const char *eq  = strchr (arg, '=');
      char        key[64];
      size_t      key_len;

      if (eq == NULL || eq == arg || (key_len = (size_t) (eq - arg)) >= sizeof key)
        return set_failure (f, "arguments are key=value (style, strength, scale, detail, "
                               "tile, device, max-memory, precision)", arg);
      (void) memcpy (key, arg, key_len);
      key[key_len] = '\0';
      if (cg_plugin_set (s, key, eq + 1, err, sizeof err) != 1)
        return set_failure (f, err, arg);
    }
  return 1;
}

static bool
report_progress (void *user_data, float fraction)
{
  const Image     *image = user_data;
  MagickOffsetType done  = (MagickOffsetType) (fraction * 1000.0f);

  /* Offset extent-1 ends ImageMagick's -monitor line; stylize_image sends it at the end. */
  if (done > 999)
    done = 999;
  return SetImageProgress (image, PROGRESS_TAG, done, 1001) != MagickFalse;
}

/* Stylizes one image in place. Returns 0 after filling `f`.
 *
 * The pixels go in as 16-bit samples. They come back at the image's depth: 16 bits, or 8
 * for an 8-bit image, rounded by libcyclegan exactly as the CLI rounds its 8-bit output
 * (ImageMagick 6 truncates when it reduces 16-bit samples to 8 on writing, which would
 * leave half the samples one level low). */
static int
stylize_image (Image *image, const cg_model *model, const cg_options *opts,
               ExceptionInfo *exception, Failure *f)
{
  const int       alpha    = image->matte != MagickFalse;
  const int       eight    = image->depth <= 8;
  const char     *map      = alpha ? "RGBA" : "RGB";
  const size_t    channels = alpha ? 4 : 3;
  const size_t    width = image->columns, height = image->rows;
  unsigned short *pixels;
  cg_image        src, dst;

  if (width == 0 || height == 0 || width > UINT32_MAX || height > UINT32_MAX ||
      height > SIZE_MAX / width / channels / sizeof (*pixels))
    return set_failure (f, "the image is empty or too large", image->filename);
  if (image->colorspace != sRGBColorspace &&
      TransformImageColorspace (image, sRGBColorspace) == MagickFalse)
    return set_failure (f, "cannot convert the image to sRGB", image->filename);

  pixels = malloc (width * height * channels * sizeof (*pixels));
  if (pixels == NULL)
    return set_failure (f, "not enough memory for the image", image->filename);
  if (ExportImagePixels (image, 0, 0, width, height, map, ShortPixel, pixels,
                         exception) == MagickFalse)
    {
      free (pixels);
      return set_failure (f, "cannot read the image's pixels", image->filename);
    }

  src.data   = (uint8_t *) pixels;
  src.width  = (uint32_t) width;
  src.height = (uint32_t) height;
  src.stride = width * channels * sizeof (*pixels);
  src.format = alpha ? CG_PIXEL_FORMAT_RGBA16 : CG_PIXEL_FORMAT_RGB16;
  dst = src; /* in place; libcyclegan reads the whole source first */
  if (eight)
    {
      dst.stride = width * channels;
      dst.format = alpha ? CG_PIXEL_FORMAT_RGBA8 : CG_PIXEL_FORMAT_RGB8;
    }
  if (cg_model_stylize (model, &src, &dst, opts, report_progress, image) != CG_OK)
    {
      set_failure (f, cg_last_error_message (), image->filename);
      free (pixels);
      return 0;
    }
  (void) SetImageProgress (image, PROGRESS_TAG, 1000, 1001);
  if (ImportImagePixels (image, 0, 0, width, height, map, eight ? CharPixel : ShortPixel,
                         pixels) == MagickFalse)
    {
      free (pixels);
      return set_failure (f, "cannot write the image's pixels", image->filename);
    }
  free (pixels);
  return 1;
}

ModuleExport size_t
cycleganImage (Image **images, const int argc, const char **argv, ExceptionInfo *exception)
{
  static Failure  failure; /* large: kept off the stack */
  char               err[CG_PLUGIN_ERROR_MAX];
  cg_plugin_settings settings;
  const cg_model    *model = NULL;
  Image             *image;
  int                ok;

  if (images == NULL || *images == NULL)
    return MagickImageFilterSignature;
  pin_module ();

  ok = parse_settings (argc, argv, &settings, &failure);
  if (ok && (model = cg_plugin_cache_acquire (&settings, err, sizeof err)) == NULL)
    ok = set_failure (&failure, err, settings.style);
  if (ok)
    {
      for (image = GetFirstImageInList (*images); ok && image != NULL;
           image = GetNextImageInList (image))
        ok = stylize_image (image, model, settings.opts, exception, &failure);
      cg_plugin_cache_release ();
    }
  cg_plugin_settings_clear (&settings);

  if (!ok)
    {
      /* For a host that handles fatal errors without exiting, the error is also in
       * `exception`; the command-line tools exit here, before writing anything. */
      (void) ThrowMagickException (exception, GetMagickModule (), OptionError,
                                   failure.reason, "`%s'", failure.detail);
      MagickFatalError (OptionFatalError, failure.reason, failure.detail);
    }
  return MagickImageFilterSignature;
}
