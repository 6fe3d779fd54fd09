/*
 * cyclegan:stylize, a GEGL operation: repaints the whole input in a painter's style with
 * libcyclegan (the `gegl` command line, GIMP 3's GEGL filters, any GEGL graph).
 *
 * A thin adapter: it reads the input region as non-linear 16-bit RGBA ("R'G'B'A u16": the
 * encoding pixels have in a file, so the result matches the cyclegan CLI; 16 bits keep
 * high-bit-depth images smooth and convert 8-bit ones exactly), hands it to
 * cg_model_stylize and writes the result. The model is loaded once per op instance and
 * reused while the style and device stay the same. Any failure is a GEGL warning
 * (g_warning) and leaves the input unchanged.
 *
 * Build: see install.sh (gcc -shared -fPIC -I. ... $(pkg-config --cflags --libs gegl-0.4)
 * -lcyclegan, rpath $ORIGIN).
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
               "0 = auto (long side 512 px, the scale the styles were trained at)")
  value_range (0.0, 4.0)

property_double (detail, "Detail", 0.5)
  description ("How much of the photo's fine detail to restore when working below "
               "native size (0 = none)")
  value_range (0.0, 4.0)

property_string (device, "Device", "auto")
  description ("Compute device: auto, cpu, cuda or metal")

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

/* What the op keeps between calls: the loaded model and what it was loaded with. */
typedef struct
{
  GMutex    lock;
  gchar    *style;
  gchar    *device;
  cg_model *model;
} Cache;

/* The op instance's cache, created on first use (safely, should two threads process). */
static Cache *
cache_get (GeglProperties *o)
{
  if (g_once_init_enter (&o->user_data))
    {
      Cache *cache = g_new0 (Cache, 1);

      g_mutex_init (&cache->lock);
      g_once_init_leave (&o->user_data, cache);
    }
  return o->user_data;
}

static void
cache_clear (Cache *cache)
{
  cg_model_free (cache->model);
  cache->model = NULL;
  g_clear_pointer (&cache->style, g_free);
  g_clear_pointer (&cache->device, g_free);
}

static gboolean
parse_device (const gchar *name, cg_backend *out)
{
  if (name == NULL || name[0] == '\0' || g_ascii_strcasecmp (name, "auto") == 0)
    *out = CG_BACKEND_AUTO;
  else if (g_ascii_strcasecmp (name, "cpu") == 0)
    *out = CG_BACKEND_CPU;
  else if (g_ascii_strcasecmp (name, "cuda") == 0)
    *out = CG_BACKEND_CUDA;
  else if (g_ascii_strcasecmp (name, "metal") == 0)
    *out = CG_BACKEND_METAL;
  else
    return FALSE;
  return TRUE;
}

/* The model for the current style and device, loading it if they changed. Call with the
 * cache locked. Returns NULL after a g_warning. */
static const cg_model *
cache_model (Cache *cache, const gchar *style, const gchar *device)
{
  cg_backend  backend;
  cg_options *opts = NULL;
  cg_model   *model = NULL;
  cg_status   st;

  if (cache->model != NULL &&
      g_strcmp0 (cache->style, style) == 0 &&
      g_strcmp0 (cache->device, device) == 0)
    return cache->model;

  cache_clear (cache);
  if (style == NULL || style[0] == '\0')
    {
      g_warning ("cyclegan:stylize: no style given (e.g. style=monet)");
      return NULL;
    }
  if (!parse_device (device, &backend))
    {
      g_warning ("cyclegan:stylize: unknown device \"%s\" (use auto, cpu, cuda or metal)",
                 device);
      return NULL;
    }
  st = cg_options_new (&opts);
  if (st == CG_OK)
    st = cg_options_set_backend (opts, backend);
  if (st == CG_OK)
    st = cg_model_load (style, opts, &model);
  if (st != CG_OK)
    g_warning ("cyclegan:stylize: cannot load style \"%s\": %s", style,
               cg_last_error_message ());
  cg_options_free (opts);
  if (model == NULL)
    return NULL;

  cache->model  = model;
  cache->style  = g_strdup (style);
  cache->device = g_strdup (device);
  return model;
}

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

/* Runs the model over `pixels` (width x height RGBA, 16 bits per sample) in place. */
static gboolean
stylize_pixels (GeglOperation *operation,
                GeglProperties *o,
                guint16 *pixels,
                gint width,
                gint height)
{
  Cache          *cache = cache_get (o);
  const cg_model *model;
  cg_options     *opts = NULL;
  cg_image        image;
  cg_status       st;
  gboolean        ok = FALSE;

  image.data   = (uint8_t *) pixels;
  image.width  = (uint32_t) width;
  image.height = (uint32_t) height;
  image.stride = (size_t) width * 4 * sizeof (guint16);
  image.format = CG_PIXEL_FORMAT_RGBA16;

  g_mutex_lock (&cache->lock);
  model = cache_model (cache, o->style, o->device);
  if (model != NULL)
    {
      st = cg_options_new (&opts);
      if (st == CG_OK)
        st = cg_options_set_strength (opts, (float) o->strength);
      if (st == CG_OK)
        st = cg_options_set_scale (opts, (float) o->scale);
      if (st == CG_OK)
        st = cg_options_set_detail (opts, (float) o->detail);
      if (st == CG_OK)
        st = cg_model_stylize (model, &image, &image, opts, report_progress, operation);
      if (st == CG_OK)
        ok = TRUE;
      else
        g_warning ("cyclegan:stylize: %s", cg_last_error_message ());
      cg_options_free (opts);
    }
  g_mutex_unlock (&cache->lock);
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
finalize (GObject *object)
{
  GeglProperties *o = GEGL_PROPERTIES (object);

  if (o->user_data != NULL)
    {
      Cache *cache = o->user_data;

      cache_clear (cache);
      g_mutex_clear (&cache->lock);
      g_free (cache);
      o->user_data = NULL;
    }
  G_OBJECT_CLASS (gegl_op_parent_class)->finalize (object);
}

static void
gegl_op_class_init (GeglOpClass *klass)
{
  GObjectClass             *object_class    = G_OBJECT_CLASS (klass);
  GeglOperationClass       *operation_class = GEGL_OPERATION_CLASS (klass);
  GeglOperationFilterClass *filter_class    = GEGL_OPERATION_FILTER_CLASS (klass);

  object_class->finalize                   = finalize;
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
