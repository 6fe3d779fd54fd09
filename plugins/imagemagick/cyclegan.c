/*
 * cyclegan, an ImageMagick 6 filter module: repaints every image of the list in a painter's
 * style with libcyclegan.
 *
 *   convert in.jpg -process "cyclegan style=monet strength=0.8" out.jpg
 *   mogrify -path out -process "cyclegan style=monet" *.jpg
 *
 * Arguments, all optional, as key=value: style (a shipped style name or the path of a style
 * file; default monet), strength (0..1, default 1), scale (a fraction in (0, 4], or auto/0;
 * default auto), detail (0..4, default 0.5), tile (working pixels per tile, >= 64, default
 * 512), device (auto, cpu, cuda or metal; default auto).
 *
 * Pixels go in as 16-bit RGB(A) (ShortPixel, the full Q16 precision) and come back at the
 * image's depth (see stylize_image); alpha is kept, and an image without alpha gets none. The loaded model is cached for the whole process, so a
 * mogrify batch loads it once.
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
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magick/MagickCore.h>

#include "cyclegan.h"

#define TAG "cyclegan"
#define PROGRESS_TAG "cyclegan/Image"

ModuleExport size_t cycleganImage (Image **images, const int argc, const char **argv,
                                   ExceptionInfo *exception);

typedef struct
{
  const char *style;
  float       strength;
  float       scale;
  float       detail;
  unsigned    tile;
  cg_backend  backend;
} Settings;

/* The model of the previous call, kept for the life of the process: ImageMagick unloads a
 * filter module after every call, so the module pins itself (see pin_module) to keep it. */
static pthread_mutex_t model_lock = PTHREAD_MUTEX_INITIALIZER;
static char           *model_style;
static cg_backend      model_backend;
static cg_model       *model_cached;

/* Why a call failed: a reason and the argument or file it concerns. */
typedef struct
{
  char reason[1024];
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

static int
parse_float (const char *text, float *out)
{
  char  *end = NULL;
  double v;

  if (*text == '\0')
    return 0;
  errno = 0;
  v = InterpretLocaleValue (text, &end);
  if (end == text || *end != '\0' || errno != 0 || isnan (v) || fabs (v) > 1e30)
    return 0;
  *out = (float) v;
  return 1;
}

static int
parse_backend (const char *text, cg_backend *out)
{
  if (LocaleCompare (text, "auto") == 0)
    *out = CG_BACKEND_AUTO;
  else if (LocaleCompare (text, "cpu") == 0)
    *out = CG_BACKEND_CPU;
  else if (LocaleCompare (text, "cuda") == 0)
    *out = CG_BACKEND_CUDA;
  else if (LocaleCompare (text, "metal") == 0)
    *out = CG_BACKEND_METAL;
  else
    return 0;
  return 1;
}

/* Reads the key=value arguments into `s` (whose style points into `style_buf`); the
 * ranges are checked by libcyclegan's setters. Returns 0 after filling `f`. */
static int
parse_settings (const int argc, const char **argv, Settings *s, char *style_buf,
                size_t style_size, Failure *f)
{
  int i;

  s->style    = "monet";
  s->strength = 1.0f;
  s->scale    = 0.0f;
  s->detail   = 0.5f;
  s->tile     = 512;
  s->backend  = CG_BACKEND_AUTO;

  for (i = 0; i < argc; i++)
    {
      const char *arg = argv[i];
      const char *eq  = strchr (arg, '=');
      const char *value;
      size_t      key_len;
      float       v;

      if (eq == NULL || eq == arg)
        return set_failure (f, "arguments are key=value (style, strength, scale, detail, "
                               "tile, device)", arg);
      key_len = (size_t) (eq - arg);
      value   = eq + 1;

#define KEY_IS(name) (key_len == sizeof (name) - 1 && LocaleNCompare (arg, name, key_len) == 0)
      if (KEY_IS ("style"))
        {
          if (*value == '\0' || strlen (value) >= style_size)
            return set_failure (f, "style needs a shipped style name or a style file", arg);
          (void) memcpy (style_buf, value, strlen (value) + 1);
          s->style = style_buf;
        }
      else if (KEY_IS ("strength"))
        {
          if (!parse_float (value, &s->strength))
            return set_failure (f, "strength needs a number from 0 to 1", arg);
        }
      else if (KEY_IS ("scale"))
        {
          if (LocaleCompare (value, "auto") == 0)
            s->scale = 0.0f;
          else if (!parse_float (value, &s->scale))
            return set_failure (f, "scale needs a fraction of the input size (1 = native) "
                                   "or auto", arg);
        }
      else if (KEY_IS ("detail"))
        {
          if (!parse_float (value, &s->detail))
            return set_failure (f, "detail needs a number from 0 to 4", arg);
        }
      else if (KEY_IS ("tile"))
        {
          if (!parse_float (value, &v) || v != floorf (v) || v < 0.0f || v > 1e6f)
            return set_failure (f, "tile needs a whole number of pixels, at least 64", arg);
          s->tile = (unsigned) v;
        }
      else if (KEY_IS ("device"))
        {
          if (!parse_backend (value, &s->backend))
            return set_failure (f, "device needs auto, cpu, cuda or metal", arg);
        }
      else
        return set_failure (f, "unknown argument (use style, strength, scale, detail, tile, "
                               "device)", arg);
#undef KEY_IS
    }
  return 1;
}

/* Builds the stylize options. Returns NULL after filling `f` if libcyclegan rejects a
 * value. */
static cg_options *
make_options (const Settings *s, Failure *f)
{
  cg_options *opts = NULL;
  char        what[64] = "options";
  cg_status   st;

  if ((st = cg_options_new (&opts)) != CG_OK)
    ;
  else if ((st = cg_options_set_strength (opts, s->strength)) != CG_OK)
    (void) snprintf (what, sizeof what, "strength=%g", (double) s->strength);
  else if ((st = cg_options_set_scale (opts, s->scale)) != CG_OK)
    (void) snprintf (what, sizeof what, "scale=%g", (double) s->scale);
  else if ((st = cg_options_set_detail (opts, s->detail)) != CG_OK)
    (void) snprintf (what, sizeof what, "detail=%g", (double) s->detail);
  else if ((st = cg_options_set_tile_size (opts, s->tile)) != CG_OK)
    (void) snprintf (what, sizeof what, "tile=%u", s->tile);
  else if ((st = cg_options_set_backend (opts, s->backend)) != CG_OK)
    (void) snprintf (what, sizeof what, "device");
  if (st == CG_OK)
    return opts;
  set_failure (f, cg_last_error_message (), what);
  cg_options_free (opts);
  return NULL;
}

/* The model for the style and backend: the cached one if it matches, else a new load.
 * Call with model_lock held. Returns NULL after filling `f`. */
static const cg_model *
get_model (const Settings *s, const cg_options *opts, Failure *f)
{
  cg_model *model = NULL;
  char     *style;

  if (model_cached != NULL && model_backend == s->backend &&
      strcmp (model_style, s->style) == 0)
    return model_cached;

  if (cg_model_load (s->style, opts, &model) != CG_OK)
    {
      set_failure (f, "cannot load the style", s->style);
      (void) snprintf (f->reason, sizeof f->reason, "%s: cannot load the style: %s", TAG,
                       cg_last_error_message ());
      return NULL;
    }
  style = strdup (s->style);
  if (style == NULL)
    {
      cg_model_free (model);
      set_failure (f, "out of memory", s->style);
      return NULL;
    }
  cg_model_free (model_cached);
  free (model_style);
  model_cached  = model;
  model_style   = style;
  model_backend = s->backend;
  return model_cached;
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
  char            style[PATH_MAX + 1];
  Settings        settings;
  cg_options     *opts = NULL;
  const cg_model *model = NULL;
  Image          *image;
  int             ok;

  if (images == NULL || *images == NULL)
    return MagickImageFilterSignature;
  pin_module ();

  pthread_mutex_lock (&model_lock);
  ok = parse_settings (argc, argv, &settings, style, sizeof style, &failure) &&
       (opts = make_options (&settings, &failure)) != NULL &&
       (model = get_model (&settings, opts, &failure)) != NULL;
  for (image = GetFirstImageInList (*images); ok && image != NULL;
       image = GetNextImageInList (image))
    ok = stylize_image (image, model, opts, exception, &failure);
  cg_options_free (opts);
  pthread_mutex_unlock (&model_lock);

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
