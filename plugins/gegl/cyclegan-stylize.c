/*
 * cyclegan:stylize, a GEGL operation: repaints the whole input in a painter's style with
 * libcyclegan (the `gegl` command line, GIMP 3's GEGL filters, any GEGL graph).
 *
 * A thin adapter: it reads the input region as non-linear 16-bit RGBA ("R'G'B'A u16": the
 * encoding pixels have in a file, so the result matches the cyclegan CLI; 16 bits keep
 * high-bit-depth images smooth and convert 8-bit ones exactly), hands it to
 * cg_model_stylize and writes the result. The properties become cg_options through the
 * shared glue in plugins/common/cg_plugin.c (which also keeps the loaded model, per
 * process, while the style and device stay the same). Any failure is a GEGL warning
 * (g_warning) and leaves the input unchanged.
 *
 * Build: see install.sh (gcc -shared -fPIC -I. ... cyclegan-stylize.c ../common/cg_plugin.c
 * $(pkg-config --cflags --libs gegl-0.4) -lcyclegan, rpath $ORIGIN).
 */

#ifdef GEGL_PROPERTIES

property_string (style, "Style", "monet")
  description ("A shipped style name (monet) or the path of a style file "
               "(.safetensors, or a .pth generator checkpoint)")

property_double (strength, "Strength", 1.0)
  description ("0 keeps the photo, 1 is the full style")
  value_range (0.0, 1.0)

property_double (scale, "Scale", 0.0)
  description ("Working resolution as a fraction of the input (1 = native); "
               "0 = auto (long side 384 px, the scale the styles were trained at)")
  value_range (0.0, 4.0)

property_double (detail, "Detail", 0.5)
  description ("How much of the photo's fine detail to restore when working below "
               "native size (0 = none)")
  value_range (0.0, 4.0)

property_string (device, "Device", "auto")
  description ("Compute device: auto, cpu, cuda (or gpu) or metal")

property_string (max_memory, "Maximum memory", "")
  description ("Memory one run may use, e.g. 1500M or 2G (no unit = bytes); "
               "empty or 0 = automatic (the smaller of 2 GiB and half the free memory)")

property_string (precision, "Precision", "auto")
  description ("Arithmetic: auto (bf16 products where the CPU has fast instructions "
               "for them, else f32), f32 (the exact path) or bf16")

#else

#define GEGL_OP_FILTER
#define GEGL_OP_NAME     cyclegan_stylize
#define GEGL_OP_C_SOURCE cyclegan-stylize.c

/* gegl-op.h expands GObject boilerplate that -Wextra flags (function-type casts, unused
 * parameters); our own code is checked with every warning on. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-function-type"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "gegl-op.h"
#pragma GCC diagnostic pop

#include <string.h>

#include "cyclegan.h"
#include "cg_plugin.h"

static bool
report_progress (void *user_data, float fraction)
{
  gegl_operation_progress (user_data, fraction, "");
  return true;
}

static const Babl *
working_format (GeglOperation *operation)
{
  return babl_format_with_space ("R'G'B'A u16",
                                 gegl_operation_get_source_space (operation, "input"));
}

static void
prepare (GeglOperation *operation)
{
  const Babl *format = working_format (operation);

  gegl_operation_set_format (operation, "input", format);
  gegl_operation_set_format (operation, "output", format);
}

/* A whole-image operation: every output pixel depends on the whole input (instance
 * normalization sees the entire picture), so ask for all of it and compute it at once. */
static GeglRectangle
get_required_for_output (GeglOperation       *operation,
                         const gchar         *input_pad,
                         const GeglRectangle *roi)
{
  const GeglRectangle *in = gegl_operation_source_get_bounding_box (operation, "input");

  (void) input_pad;
  (void) roi;
  if (in != NULL)
    return *in;
  return *GEGL_RECTANGLE (0, 0, 0, 0);
}

static GeglRectangle
get_cached_region (GeglOperation       *operation,
                   const GeglRectangle *roi)
{
  const GeglRectangle *in = gegl_operation_source_get_bounding_box (operation, "input");

  (void) roi;
  if (in != NULL)
    return *in;
  return *GEGL_RECTANGLE (0, 0, 0, 0);
}

/* The properties as settings; FALSE after writing `err`. */
static gboolean
read_settings (GeglProperties *o, cg_plugin_settings *s, gchar *err, gsize err_len)
{
  return cg_plugin_settings_init (s, err, err_len) &&
         (o->style == NULL || o->style[0] == '\0' ||
          cg_plugin_set (s, "style", o->style, err, err_len) == 1) &&
         cg_plugin_set_number (s, "strength", o->strength, err, err_len) == 1 &&
         cg_plugin_set_number (s, "scale", o->scale, err, err_len) == 1 &&
         cg_plugin_set_number (s, "detail", o->detail, err, err_len) == 1 &&
         cg_plugin_set (s, "device", o->device, err, err_len) == 1 &&
         cg_plugin_set (s, "max-memory", o->max_memory, err, err_len) == 1 &&
         cg_plugin_set (s, "precision", o->precision, err, err_len) == 1;
}

/* Runs the model over `pixels` (width x height RGBA, 16 bits per sample) in place. */
static gboolean
stylize_pixels (GeglOperation *operation,
                GeglProperties *o,
                guint16 *pixels,
                gint width,
                gint height)
{
  cg_plugin_settings settings;
  const cg_model    *model;
  cg_image           image;
  gchar              err[CG_PLUGIN_ERROR_MAX];
  gboolean           ok = FALSE;

  image.data   = (uint8_t *) pixels;
  image.width  = (uint32_t) width;
  image.height = (uint32_t) height;
  image.stride = (size_t) width * 4 * sizeof (guint16);
  image.format = CG_PIXEL_FORMAT_RGBA16;

  if (!read_settings (o, &settings, err, sizeof err))
    g_warning ("cyclegan:stylize: %s", err);
  else if ((model = cg_plugin_cache_acquire (&settings, err, sizeof err)) == NULL)
    g_warning ("cyclegan:stylize: %s", err);
  else
    {
      if (cg_model_stylize (model, &image, &image, settings.opts, report_progress,
                            operation) == CG_OK)
        ok = TRUE;
      else
        g_warning ("cyclegan:stylize: %s", cg_last_error_message ());
      cg_plugin_cache_release ();
    }
  cg_plugin_settings_clear (&settings);
  return ok;
}

static gboolean
process (GeglOperation       *operation,
         GeglBuffer          *input,
         GeglBuffer          *output,
         const GeglRectangle *result,
         gint                 level)
{
  GeglProperties *o = GEGL_PROPERTIES (operation);
  const Babl     *format = working_format (operation);
  const GeglRectangle *bounds = gegl_operation_source_get_bounding_box (operation, "input");
  GeglRectangle   rect = bounds != NULL ? *bounds : *gegl_buffer_get_extent (input);
  guint16        *pixels = NULL;
  gsize           n_samples;

  (void) result;
  (void) level;
  if (rect.width <= 0 || rect.height <= 0)
    return TRUE;

  if (gegl_rectangle_is_infinite_plane (&rect))
    {
      g_warning ("cyclegan:stylize: the input is unbounded; crop it first");
    }
  else if (!g_size_checked_mul (&n_samples, (gsize) rect.width, (gsize) rect.height) ||
           !g_size_checked_mul (&n_samples, n_samples, 4) ||
           (pixels = g_try_new (guint16, n_samples)) == NULL)
    {
      g_warning ("cyclegan:stylize: not enough memory for a %d x %d image",
                 rect.width, rect.height);
    }
  else
    {
      gegl_buffer_get (input, &rect, 1.0, format, pixels, GEGL_AUTO_ROWSTRIDE,
                       GEGL_ABYSS_NONE);
      if (stylize_pixels (operation, o, pixels, rect.width, rect.height))
        {
          gegl_buffer_set (output, &rect, 0, format, pixels, GEGL_AUTO_ROWSTRIDE);
          g_free (pixels);
          return TRUE;
        }
    }

  /* The failure was reported: pass the input through unchanged. */
  g_free (pixels);
  gegl_buffer_copy (input, &rect, GEGL_ABYSS_NONE, output, &rect);
  return TRUE;
}

static void
gegl_op_class_init (GeglOpClass *klass)
{
  GeglOperationClass       *operation_class = GEGL_OPERATION_CLASS (klass);
  GeglOperationFilterClass *filter_class    = GEGL_OPERATION_FILTER_CLASS (klass);

  operation_class->prepare                 = prepare;
  operation_class->get_required_for_output = get_required_for_output;
  operation_class->get_cached_region       = get_cached_region;
  operation_class->threaded                = FALSE;
  filter_class->process                    = process;

  gegl_operation_class_set_keys (operation_class,
    "name",        "cyclegan:stylize",
    "title",       "CycleGAN style transfer",
    "categories",  "artistic",
    "description", "Repaints the image in a painter's style (Monet by default) with "
                   "a CycleGAN generator (libcyclegan).",
    NULL);
}

#endif
