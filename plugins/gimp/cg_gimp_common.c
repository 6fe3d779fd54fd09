/*
 * cg_gimp_common.c: pixels, progress, Cancel and preview for the CycleGAN GIMP plug-in,
 * shared by the GIMP 2.10 and GIMP 3 fronts. See cg_gimp_common.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include "cg_gimp_common.h"

/* The preview paints at most this long a side, so it stays quick. */
#define CG_GIMP_PREVIEW_MAX_SIDE 512
#define CG_GIMP_PREVIEW_SIDE 256
#define CG_GIMP_PREVIEW_DELAY_MS 300

#if GTK_CHECK_VERSION (3, 0, 0)
#define cg_vbox_new(spacing) gtk_box_new (GTK_ORIENTATION_VERTICAL, (spacing))
#else
#define cg_vbox_new(spacing) gtk_vbox_new (FALSE, (spacing))
#endif

/* ---------------------------------------------------------------- values and names */

void
cg_gimp_values_init (CgGimpValues *values)
{
  const char *first = cg_style_count () > 0 ? cg_style_name (0) : NULL;

  memset (values, 0, sizeof *values);
  g_strlcpy (values->style, first ? first : "monet", sizeof values->style);
  values->strength = 1.0;
  values->scale    = 0.0;
  values->backend  = CG_BACKEND_AUTO;
  values->max_memory_mib = 0;
  values->precision = CG_PRECISION_AUTO;
}

gboolean
cg_gimp_values_set_style (CgGimpValues *values, const gchar *style)
{
  if (style == NULL || *style == '\0' || strlen (style) >= sizeof values->style)
    return FALSE;
  g_strlcpy (values->style, style, sizeof values->style);
  return TRUE;
}

gboolean
cg_gimp_precision_from_name (const gchar *name, gint32 *precision)
{
  static const struct { const gchar *name; gint32 value; } names[] = {
    { "auto", CG_PRECISION_AUTO },
    { "f32",  CG_PRECISION_F32 },
    { "fp32", CG_PRECISION_F32 },
    { "bf16", CG_PRECISION_BF16 },
  };
  guint i;

  for (i = 0; name != NULL && i < G_N_ELEMENTS (names); i++)
    if (g_ascii_strcasecmp (name, names[i].name) == 0)
      {
        *precision = names[i].value;
        return TRUE;
      }
  return FALSE;
}

const gchar *
cg_gimp_precision_name (gint32 precision)
{
  switch (precision)
    {
    case CG_PRECISION_F32:
      return "f32";
    case CG_PRECISION_BF16:
      return "bf16";
    default:
      return "auto";
    }
}

gboolean
cg_gimp_style_is_shipped (const gchar *style)
{
  size_t i, n = cg_style_count ();

  for (i = 0; style != NULL && i < n; i++)
    if (g_strcmp0 (cg_style_name (i), style) == 0)
      return TRUE;
  return FALSE;
}

gchar *
cg_gimp_style_procedure (const gchar *style_name)
{
  gchar *lower = g_ascii_strdown (style_name, -1);
  gchar *p, *name;

  for (p = lower; *p; p++)
    if (! g_ascii_isalnum (*p) && *p != '-')
      *p = '-';
  name = g_strconcat (CG_GIMP_PROC "-", lower, NULL);
  g_free (lower);
  return name;
}

const gchar *
cg_gimp_style_for_procedure (const gchar *procedure_name)
{
  size_t i, n = cg_style_count ();

  for (i = 0; procedure_name != NULL && i < n; i++)
    {
      const char *style = cg_style_name (i);
      gchar      *proc  = cg_gimp_style_procedure (style);
      gboolean    same  = strcmp (proc, procedure_name) == 0;

      g_free (proc);
      if (same)
        return style;
    }
  return NULL;
}

gchar *
cg_gimp_style_label (size_t index)
{
  const char *label = cg_style_label (index);
  const char *name  = cg_style_name (index);

  if (label != NULL && *label != '\0')
    return g_strdup (label);
  return g_strdup_printf ("%s style", name ? name : "?");
}

gchar *
cg_gimp_title (const gchar *shipped_style)
{
  size_t i, n = cg_style_count ();

  for (i = 0; shipped_style != NULL && i < n; i++)
    if (g_strcmp0 (cg_style_name (i), shipped_style) == 0)
      return cg_gimp_style_label (i);
  return g_strdup ("Style transfer (CycleGAN)");
}

gchar *
cg_gimp_error_text (const gchar *what, cg_status status)
{
  const char *why = cg_last_error_message ();

  if (why == NULL || *why == '\0')
    why = cg_status_str (status);
  return g_strdup_printf ("%s: %s", what, why);
}

/* Whether the first bytes of a file look like something cg_model_load reads: safetensors
 * (a little-endian u64 header length, then '{'), a zip archive (PyTorch 1.6+) or a pickle
 * (legacy PyTorch: protocol opcode 0x80). */
static gboolean
looks_like_style (const gchar *path)
{
  guchar  head[9] = { 0 };
  FILE   *f = g_fopen (path, "rb");
  size_t  n;

  if (f == NULL)
    return TRUE; /* let the loader say why it cannot be read */
  n = fread (head, 1, sizeof head, f);
  fclose (f);
  if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
    return TRUE;
  if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)
    return TRUE;
  return n == sizeof head && head[8] == '{' && head[5] == 0 && head[6] == 0 && head[7] == 0;
}

gchar *
cg_gimp_style_error_text (const gchar *what, const gchar *style, cg_status status)
{
  if (status == CG_ERR_FORMAT && style != NULL && ! cg_gimp_style_is_shipped (style)
      && ! looks_like_style (style))
    {
      gchar *base = g_path_get_basename (style);
      gchar *text = g_strdup_printf ("%s: %s is not a style file (choose a CycleGAN "
                                     ".safetensors or .pth file)", what, base);

      g_free (base);
      return text;
    }
  return cg_gimp_error_text (what, status);
}

gchar *
cg_gimp_style_file_problem (const gchar *path)
{
  cg_options *opts = NULL;
  cg_model   *model = NULL;
  cg_status   status;

  if (path == NULL || *path == '\0')
    return g_strdup ("Choose a style file");
  status = cg_options_new (&opts);
  if (status == CG_OK)
    status = cg_options_set_backend (opts, CG_BACKEND_CPU);
  if (status == CG_OK)
    status = cg_model_load (path, opts, &model);
  cg_model_free (model);
  cg_options_free (opts);
  return status == CG_OK ? NULL : cg_gimp_style_error_text ("Cannot use this style", path,
                                                            status);
}

const gchar *
cg_gimp_help_text (void)
{
  return
    "Repaints the selection (or the whole layer) in the manner of a painter, with a "
    "CycleGAN network running on this computer.\n\n"
    "Style: a style built into the plug-in (Monet), or a style file: a .safetensors file "
    "made by \"cyclegan import\" or \"cyclegan train\", or a CycleGAN .pth generator "
    "checkpoint.\n\n"
    "Strength: 1 applies the full style, 0 keeps the photo; values between blend the two.\n\n"
    "Scale: the working resolution, which sets the size of the brush strokes. The styles "
    "were learnt on 256-pixel paintings, so 0 (auto) paints at a size near that; 1 paints "
    "at the image's own size (fine strokes, a lighter style), 0.5 at half its size.\n\n"
    "Device: where the work runs; Automatic uses a GPU when the plug-in was built with "
    "one and it is present.\n\n"
    "Precision: the arithmetic. Automatic uses bf16 products where the processor has fast "
    "instructions for them (faster; the colours may differ from f32 by a level or two) and "
    "f32 elsewhere. f32 is the reference arithmetic; bf16 fails on a processor without "
    "those instructions.\n\n"
    "The preview shows the selection painted at the working size; OK paints the layer. "
    "Edit > Undo restores the original. Alpha is kept; grey layers stay grey.\n\n"
    "More: plugins/gimp/README.md in the cyclegan sources.";
}

void
cg_gimp_show_help (GtkWidget *parent)
{
  GtkWidget *dialog = gtk_message_dialog_new (parent ? GTK_WINDOW (gtk_widget_get_toplevel (parent)) : NULL,
                                              GTK_DIALOG_MODAL | GTK_DIALOG_DESTROY_WITH_PARENT,
                                              GTK_MESSAGE_INFO, GTK_BUTTONS_CLOSE,
                                              "Style transfer (CycleGAN)");

  gtk_message_dialog_format_secondary_text (GTK_MESSAGE_DIALOG (dialog), "%s",
                                            cg_gimp_help_text ());
  gtk_window_set_title (GTK_WINDOW (dialog), "CycleGAN help");
  gtk_dialog_run (GTK_DIALOG (dialog));
  gtk_widget_destroy (dialog);
}

/* Options for one call: strength, scale, backend, memory limit and precision from
 * `values`. */
static cg_status
make_options (const CgGimpValues *values, gdouble strength, gdouble scale,
              cg_options **out)
{
  cg_options *opts = NULL;
  cg_status   status;

  *out = NULL;
  status = cg_options_new (&opts);
  if (status == CG_OK)
    status = cg_options_set_strength (opts, (float) strength);
  if (status == CG_OK)
    status = cg_options_set_scale (opts, (float) scale);
  if (status == CG_OK)
    status = cg_options_set_backend (opts, (cg_backend) values->backend);
  if (status == CG_OK && values->max_memory_mib > 0)
    status = cg_options_set_memory_limit (opts, (uint64_t) values->max_memory_mib << 20);
  if (status == CG_OK)
    status = cg_options_set_precision (opts, (cg_precision) values->precision);
  if (status != CG_OK)
    {
      cg_options_free (opts);
      return status;
    }
  *out = opts;
  return CG_OK;
}

/* ---------------------------------------------------------------- the filter */

/* In interactive runs the engine works on a worker thread while the main thread keeps the
 * Cancel window alive and reports progress (libgimp and GTK are used from the main thread
 * only). Cancel sets a flag the engine's progress callback returns; the engine stops at its
 * next report. Non-interactive runs call the engine directly. */

typedef struct
{
  /* set up by the main thread */
  const cg_model   *model;
  cg_image         *image;
  const cg_options *opts;
  /* shared, atomic */
  gint              cancel;
  gint              permille;  /* progress reported by the engine, 0..1000 */
  gint              done;
  /* result, read after the join */
  cg_status         status;
  gchar            *error;     /* "Stylizing failed: ..." (the reason is thread-local) */
} Task;

typedef struct
{
  GtkWidget *window;
  GtkWidget *label;
  GtkWidget *bar;
  gboolean   cancelled;
} CancelWindow;

static void
on_cancel_response (GtkDialog *dialog, gint response, gpointer data)
{
  CancelWindow *w = data;

  (void) dialog;
  (void) response;
  w->cancelled = TRUE;
}

static gboolean
on_cancel_delete (GtkWidget *widget, GdkEvent *event, gpointer data)
{
  CancelWindow *w = data;

  (void) widget;
  (void) event;
  w->cancelled = TRUE;
  return TRUE; /* keep the window until the run ends */
}

static void
pump_events (void)
{
  while (gtk_events_pending ())
    gtk_main_iteration ();
}

static void
cancel_window_show (CancelWindow *w, const gchar *title)
{
  GtkWidget *box;

  w->window = gtk_dialog_new_with_buttons (title, NULL, 0,
                                           "_Cancel", GTK_RESPONSE_CANCEL,
                                           NULL);
  gtk_window_set_resizable (GTK_WINDOW (w->window), FALSE);
  gimp_window_set_transient (GTK_WINDOW (w->window));
  box = gtk_dialog_get_content_area (GTK_DIALOG (w->window));
  gtk_container_set_border_width (GTK_CONTAINER (box), 12);
  gtk_box_set_spacing (GTK_BOX (box), 6);
  w->label = gtk_label_new ("Painting... Cancel leaves the image unchanged.");
  gtk_box_pack_start (GTK_BOX (box), w->label, FALSE, FALSE, 0);
  w->bar = gtk_progress_bar_new ();
  gtk_widget_set_size_request (w->bar, 320, -1);
  gtk_box_pack_start (GTK_BOX (box), w->bar, FALSE, FALSE, 0);
  g_signal_connect (w->window, "response", G_CALLBACK (on_cancel_response), w);
  g_signal_connect (w->window, "delete-event", G_CALLBACK (on_cancel_delete), w);
  gtk_widget_show_all (w->window);
  pump_events ();
}

static bool
task_progress (void *user_data, float fraction)
{
  Task *task = user_data;

  g_atomic_int_set (&task->permille, (gint) CLAMP (fraction * 1000.0f, 0.0f, 1000.0f));
  return ! g_atomic_int_get (&task->cancel);
}

static gpointer
task_run (gpointer data)
{
  Task *task = data;

  task->status = cg_model_stylize (task->model, task->image, task->image, task->opts,
                                   task_progress, task);
  if (task->status != CG_OK)
    task->error = cg_gimp_error_text ("Stylizing failed", task->status);
  g_atomic_int_set (&task->done, 1);
  return NULL;
}

/* Non-interactive: progress straight to GIMP from the engine's thread (the main one). */
static bool
direct_progress (void *user_data, float fraction)
{
  gint *shown = user_data;
  gint  permille = (gint) CLAMP (fraction * 1000.0f, 0.0f, 1000.0f);

  if (permille >= 1000 || permille - *shown >= 10)
    {
      *shown = permille;
      gimp_progress_update (fraction);
    }
  return TRUE;
}

/* Runs the task on a worker thread behind a Cancel window; returns the engine's status. */
static cg_status
run_with_cancel_window (Task *task, const gchar *title)
{
  CancelWindow w = { NULL, NULL, NULL, FALSE };
  GThread     *thread;
  gint         shown = -1, ticks = 0;

  cancel_window_show (&w, title);
  thread = g_thread_new ("cyclegan-stylize", task_run, task);
  while (! g_atomic_int_get (&task->done))
    {
      gint permille;

      g_usleep (50 * 1000);
      pump_events ();
      if (w.cancelled && ! g_atomic_int_get (&task->cancel))
        {
          g_atomic_int_set (&task->cancel, 1);
          gtk_label_set_text (GTK_LABEL (w.label), "Cancelling at the next tile...");
          gtk_widget_set_sensitive (w.window, FALSE);
        }
      permille = g_atomic_int_get (&task->permille);
      if (permille != shown)
        {
          shown = permille;
          gimp_progress_update (permille / 1000.0);
          gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (w.bar), permille / 1000.0);
        }
      else if (++ticks % 5 == 0 && permille == 0)
        {
          /* Nothing reported yet (one tile, or the statistics pass): show activity. */
          gimp_progress_pulse ();
          gtk_progress_bar_pulse (GTK_PROGRESS_BAR (w.bar));
        }
    }
  g_thread_join (thread);
  gtk_widget_destroy (w.window);
  pump_events ();
  return task->status;
}

/* TRUE when the buffer holds 8-bit samples. */
static gboolean
cg_gimp_buffer_is_8bit (GeglBuffer *buffer)
{
  const Babl *format = gegl_buffer_get_format (buffer);

  return babl_format_get_type (format, 0) == babl_type ("u8");
}

CgGimpResult
cg_gimp_run (const CgGimpJob *job, gchar **error_text)
{
  const GeglRectangle *r       = &job->rect;
  const gboolean       deep    = ! cg_gimp_buffer_is_8bit (job->src);
  const gsize          bpp     = deep ? 8 : 4;
  const Babl          *format  = babl_format (deep ? "R'G'B'A u16" : "R'G'B'A u8");
  cg_options          *opts    = NULL;
  cg_model            *model   = NULL;
  guint8              *data    = NULL;
  gchar               *message = NULL;
  CgGimpResult         result  = CG_GIMP_FAILED;
  cg_status            status;
  cg_image             image;
  gsize                stride;

  if (error_text)
    *error_text = NULL;
  if (r->width <= 0 || r->height <= 0)
    return CG_GIMP_DONE;

  stride = (gsize) r->width * bpp;
  if (stride > G_MAXINT || (gsize) r->height > G_MAXSIZE / stride)
    {
      message = g_strdup_printf ("The area %d x %d is too large", r->width, r->height);
      goto out;
    }

  gimp_progress_init (job->title);

  status = make_options (job->values, job->values->strength, job->values->scale, &opts);
  if (status != CG_OK)
    {
      message = cg_gimp_error_text ("Invalid settings", status);
      goto out;
    }
  status = cg_model_load (job->values->style, opts, &model);
  if (status != CG_OK)
    {
      gchar *what = g_strdup_printf ("Could not load the style \"%s\"", job->values->style);

      message = cg_gimp_error_text (what, status);
      g_free (what);
      goto out;
    }

  data = g_try_malloc (stride * (gsize) r->height);
  if (data == NULL)
    {
      message = g_strdup_printf ("Not enough memory for an area of %d x %d pixels",
                                 r->width, r->height);
      goto out;
    }
  gegl_buffer_get (job->src, r, 1.0, format, data, (gint) stride, GEGL_ABYSS_NONE);

  image.data   = data;
  image.width  = (uint32_t) r->width;
  image.height = (uint32_t) r->height;
  image.stride = stride;
  image.format = deep ? CG_PIXEL_FORMAT_RGBA16 : CG_PIXEL_FORMAT_RGBA8;

  /* In place: the library reads the whole source before writing. */
  if (job->cancel_window)
    {
      Task task;

      memset (&task, 0, sizeof task);
      task.model = model;
      task.image = &image;
      task.opts = opts;
      status = run_with_cancel_window (&task, job->title);
      message = task.error;
    }
  else
    {
      gint shown = -1;

      status = cg_model_stylize (model, &image, &image, opts, direct_progress, &shown);
      if (status != CG_OK)
        message = cg_gimp_error_text ("Stylizing failed", status);
    }
  if (status == CG_ERR_CANCELLED)
    {
      g_clear_pointer (&message, g_free);
      result = CG_GIMP_CANCELLED;
      goto out;
    }
  if (status != CG_OK)
    goto out;

  gegl_buffer_set (job->dst, r, 0, format, data, (gint) stride);
  gegl_buffer_flush (job->dst);
  gimp_progress_update (1.0);
  result = CG_GIMP_DONE;

out:
  g_free (data);
  cg_model_free (model);
  cg_options_free (opts);
  if (message != NULL)
    {
      if (error_text)
        *error_text = message;
      else
        g_free (message);
    }
  return result;
}

/* ---------------------------------------------------------------- preview */

/* The preview is painted on a worker thread (a loaded model may be used from any thread),
 * so the dialog stays responsive; the main thread polls for the result. Only one worker
 * runs at a time: values that change meanwhile cancel it at its next progress report and
 * start a new one when it has stopped. */

typedef struct
{
  gint   *cancel;      /* the preview's flag, read atomically */
  gchar  *style;
  gint32  backend;
  gint32  precision;
  gdouble engine_scale;
  guint8 *original;    /* borrowed from the preview, which outlives the worker */
  gint    width;
  gint    height;
  /* results */
  guint8 *styled;
  gchar  *note;        /* why it failed, or NULL */
  gboolean cancelled;
} PreviewJob;

struct _CgGimpPreview
{
  GeglBuffer    *src;
  GeglRectangle  rect;

  GtkWidget     *box;
  GtkWidget     *image;
  GtkWidget     *toggle;
  GtkWidget     *status;

  CgGimpValues   values;        /* the latest values asked for */
  guint          timeout_id;    /* debounce */
  guint          poll_id;       /* waiting for the worker */

  GThread       *worker;
  PreviewJob    *job;
  gint           job_done;      /* atomic */
  gint           cancel;        /* atomic */

  /* Used only by the worker (or after it was joined): the model for (style, backend). */
  cg_model      *model;
  gchar         *model_style;
  gint32         model_backend;

  /* The picture shown: for (style, backend, precision, scale), at strength 1. */
  gchar         *picture_style;
  gint32         picture_backend;
  gint32         picture_precision;
  gdouble        picture_scale;
  guint8        *original;      /* RGBA u8, width x height */
  guint8        *styled;        /* the same stylized, or NULL */
  gint           width;
  gint           height;
  gchar         *note;          /* what the picture shows, or why there is none */
};

/* The working size the library will use for a w x h input at `scale`: asked of the
 * library (cg_options_working_size), so the preview follows its automatic size. */
static void
working_size (gdouble scale, gint w, gint h, gint *ww, gint *wh)
{
  cg_options *opts = NULL;
  uint32_t    uw = 0, uh = 0;

  if (cg_options_new (&opts) != CG_OK || cg_options_set_scale (opts, (float) scale) != CG_OK
      || cg_options_working_size (opts, (uint32_t) MAX (1, w), (uint32_t) MAX (1, h), &uw,
                                  &uh) != CG_OK)
    {
      /* Not expected (scale comes from a checked range): the input size, capped later. */
      uw = (uint32_t) MAX (1, w);
      uh = (uint32_t) MAX (1, h);
    }
  cg_options_free (opts);
  *ww = (gint) MIN (uw, (uint32_t) G_MAXINT);
  *wh = (gint) MIN (uh, (uint32_t) G_MAXINT);
}

static void
free_pixels (guchar *pixels, gpointer data)
{
  (void) data;
  g_free (pixels);
}

static void
preview_show (CgGimpPreview *p, gboolean styled, gdouble strength)
{
  GdkPixbuf *pixbuf, *shown;
  guint8    *rgba;
  gsize      i, n = (gsize) p->width * p->height;
  gdouble    fit;
  gint       dw, dh;

  if (p->original == NULL)
    return;
  rgba = g_memdup2 (p->original, n * 4);
  if (styled && p->styled != NULL)
    for (i = 0; i < n * 4; i++)
      if (i % 4 != 3)
        rgba[i] = (guint8) CLAMP (floor (p->original[i]
                                         + strength * (p->styled[i] - p->original[i])
                                         + 0.5), 0, 255);
  pixbuf = gdk_pixbuf_new_from_data (rgba, GDK_COLORSPACE_RGB, TRUE, 8,
                                     p->width, p->height, p->width * 4,
                                     free_pixels, NULL);
  fit = MIN ((gdouble) CG_GIMP_PREVIEW_SIDE / p->width,
             (gdouble) CG_GIMP_PREVIEW_SIDE / p->height);
  dw = MAX (1, (gint) (p->width * fit + 0.5));
  dh = MAX (1, (gint) (p->height * fit + 0.5));
  shown = gdk_pixbuf_composite_color_simple (pixbuf, dw, dh, GDK_INTERP_BILINEAR,
                                             255, 8, 0x999999, 0x666666);
  gtk_image_set_from_pixbuf (GTK_IMAGE (p->image), shown);
  g_object_unref (shown);
  g_object_unref (pixbuf);
}

static void
preview_refresh (CgGimpPreview *p)
{
  gboolean on = gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (p->toggle));

  preview_show (p, on, p->values.strength);
  if (! on)
    gtk_label_set_text (GTK_LABEL (p->status), "Preview off: the original");
  else if (p->worker != NULL)
    gtk_label_set_text (GTK_LABEL (p->status), "Painting the preview...");
  else
    gtk_label_set_text (GTK_LABEL (p->status), p->note ? p->note : "");
}

static bool
preview_job_progress (void *user_data, float fraction)
{
  PreviewJob *job = user_data;

  (void) fraction;
  return ! g_atomic_int_get (job->cancel);
}

/* The worker thread: no GTK, no libgimp, only libcyclegan. */
static gpointer
preview_worker (gpointer data)
{
  CgGimpPreview *p   = data;
  PreviewJob    *job = p->job;
  CgGimpValues   v;
  cg_options    *opts = NULL;
  cg_status      status = CG_OK;
  cg_image       in, out;

  cg_gimp_values_init (&v);
  v.backend = job->backend;
  v.precision = job->precision;
  if (p->model == NULL || g_strcmp0 (p->model_style, job->style) != 0
      || p->model_backend != job->backend)
    {
      g_clear_pointer (&p->model, cg_model_free);
      g_clear_pointer (&p->model_style, g_free);
      status = make_options (&v, 1.0, 0.0, &opts);
      if (status == CG_OK)
        status = cg_model_load (job->style, opts, &p->model);
      cg_options_free (opts);
      opts = NULL;
      if (status != CG_OK)
        job->note = cg_gimp_style_error_text ("Cannot load the style", job->style, status);
      else
        {
          p->model_style = g_strdup (job->style);
          p->model_backend = job->backend;
        }
    }
  if (status == CG_OK)
    status = make_options (&v, 1.0, job->engine_scale, &opts);
  if (status == CG_OK)
    {
      job->styled = g_malloc ((gsize) job->width * job->height * 4);
      in.data = job->original;
      in.width = (uint32_t) job->width;
      in.height = (uint32_t) job->height;
      in.stride = (size_t) job->width * 4;
      in.format = CG_PIXEL_FORMAT_RGBA8;
      out = in;
      out.data = job->styled;
      status = cg_model_stylize (p->model, &in, &out, opts, preview_job_progress, job);
      if (status != CG_OK)
        {
          g_clear_pointer (&job->styled, g_free);
          job->cancelled = status == CG_ERR_CANCELLED;
          if (job->note == NULL)
            job->note = cg_gimp_error_text ("Preview failed", status);
        }
    }
  cg_options_free (opts);
  g_atomic_int_set (&p->job_done, 1);
  return NULL;
}

static void preview_schedule (CgGimpPreview *p, guint delay_ms);

static void
preview_job_free (PreviewJob *job)
{
  if (job == NULL)
    return;
  g_free (job->style);
  g_free (job->styled);
  g_free (job->note);
  g_free (job);
}

/* Waits for the worker (if any) and takes its result. */
static void
preview_join (CgGimpPreview *p)
{
  PreviewJob *job = p->job;

  if (p->worker == NULL)
    return;
  g_thread_join (p->worker);
  p->worker = NULL;
  p->job = NULL;
  if (! job->cancelled)
    {
      g_free (p->styled);
      p->styled = g_steal_pointer (&job->styled);
      if (job->note != NULL) /* an error replaces the description */
        {
          g_free (p->note);
          p->note = g_steal_pointer (&job->note);
        }
      g_free (p->picture_style);
      p->picture_style = g_strdup (job->style);
      p->picture_backend = job->backend;
      p->picture_precision = job->precision;
    }
  preview_job_free (job);
}

static gboolean
preview_poll (gpointer data)
{
  CgGimpPreview *p = data;

  if (! g_atomic_int_get (&p->job_done))
    return G_SOURCE_CONTINUE;
  p->poll_id = 0;
  preview_join (p);
  /* Values that changed meanwhile get a new preview at once; else show this one. */
  if (g_strcmp0 (p->picture_style, p->values.style) != 0
      || p->picture_backend != p->values.backend
      || p->picture_precision != p->values.precision || p->picture_scale != p->values.scale)
    preview_schedule (p, 0);
  preview_refresh (p);
  return G_SOURCE_REMOVE;
}

/* Starts the worker for the current values. */
static void
preview_start (CgGimpPreview *p)
{
  const CgGimpValues *v = &p->values;
  gint                ww, wh, pw, ph, longest = MAX (p->rect.width, p->rect.height);
  gdouble             f, f_read;
  PreviewJob         *job;

  working_size (v->scale, p->rect.width, p->rect.height, &ww, &wh);
  /* Paint at the working size, but at most CG_GIMP_PREVIEW_MAX_SIDE on the long side. */
  f = (gdouble) MIN (MAX (ww, wh), CG_GIMP_PREVIEW_MAX_SIDE) / longest;
  f_read = MIN (f, 1.0);
  pw = MAX (1, (gint) floor (p->rect.width * f_read + 0.5));
  ph = MAX (1, (gint) floor (p->rect.height * f_read + 0.5));

  if (p->original == NULL || pw != p->width || ph != p->height)
    {
      GeglRectangle scaled;

      g_clear_pointer (&p->original, g_free);
      g_clear_pointer (&p->styled, g_free);
      p->width = pw;
      p->height = ph;
      p->original = g_malloc ((gsize) pw * ph * 4);
      scaled.x = (gint) floor (p->rect.x * f_read);
      scaled.y = (gint) floor (p->rect.y * f_read);
      scaled.width = pw;
      scaled.height = ph;
      gegl_buffer_get (p->src, &scaled, f_read, babl_format ("R'G'B'A u8"),
                       p->original, pw * 4, GEGL_ABYSS_CLAMP);
    }
  g_clear_pointer (&p->styled, g_free);
  g_clear_pointer (&p->note, g_free);
  g_clear_pointer (&p->picture_style, g_free);
  p->picture_scale = v->scale;
  if (MAX (ww, wh) > CG_GIMP_PREVIEW_MAX_SIDE)
    p->note = g_strdup_printf ("Preview painted at %d x %d; the result is painted at "
                               "%d x %d (finer strokes)", pw, ph, ww, wh);
  else
    p->note = g_strdup_printf ("Painted at %d x %d, shown whole", ww, wh);

  job = g_new0 (PreviewJob, 1);
  job->cancel = &p->cancel;
  job->style = g_strdup (v->style);
  job->backend = v->backend;
  job->precision = v->precision;
  job->engine_scale = f / f_read; /* above 1 only when working above native size */
  job->original = p->original;
  job->width = pw;
  job->height = ph;
  p->job = job;
  g_atomic_int_set (&p->cancel, 0);
  g_atomic_int_set (&p->job_done, 0);
  p->worker = g_thread_new ("cyclegan-preview", preview_worker, p);
  p->poll_id = g_timeout_add (50, preview_poll, p);
}

static gboolean
preview_timeout (gpointer data)
{
  CgGimpPreview *p  = data;
  gboolean       on = gtk_toggle_button_get_active (GTK_TOGGLE_BUTTON (p->toggle));
  gboolean       stale;

  p->timeout_id = 0;
  stale = p->picture_style == NULL || g_strcmp0 (p->picture_style, p->values.style) != 0
          || p->picture_backend != p->values.backend
          || p->picture_precision != p->values.precision || p->picture_scale != p->values.scale;
  if (on && stale)
    {
      if (p->worker != NULL)
        g_atomic_int_set (&p->cancel, 1); /* preview_poll starts the next one */
      else
        preview_start (p);
    }
  preview_refresh (p);
  return G_SOURCE_REMOVE;
}

static void
preview_schedule (CgGimpPreview *p, guint delay_ms)
{
  if (p->timeout_id != 0)
    g_source_remove (p->timeout_id);
  p->timeout_id = g_timeout_add (delay_ms, preview_timeout, p);
}

static void
on_preview_toggled (GtkToggleButton *button, gpointer data)
{
  (void) button;
  preview_schedule (data, 0);
}

CgGimpPreview *
cg_gimp_preview_new (GeglBuffer *src, const GeglRectangle *rect)
{
  CgGimpPreview *p = g_new0 (CgGimpPreview, 1);
  GtkWidget     *frame;

  p->src = g_object_ref (src);
  p->rect = *rect;
  cg_gimp_values_init (&p->values);

  p->box = cg_vbox_new (6);
  frame = gtk_frame_new (NULL);
  gtk_frame_set_shadow_type (GTK_FRAME (frame), GTK_SHADOW_IN);
  p->image = gtk_image_new ();
  gtk_widget_set_size_request (p->image, CG_GIMP_PREVIEW_SIDE, CG_GIMP_PREVIEW_SIDE);
  gtk_container_add (GTK_CONTAINER (frame), p->image);
  gtk_box_pack_start (GTK_BOX (p->box), frame, FALSE, FALSE, 0);
  p->toggle = gtk_check_button_new_with_mnemonic ("_Preview");
  gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (p->toggle), TRUE);
  gtk_box_pack_start (GTK_BOX (p->box), p->toggle, FALSE, FALSE, 0);
  p->status = gtk_label_new ("");
  gtk_label_set_line_wrap (GTK_LABEL (p->status), TRUE);
  /* Room for three lines from the start: a note that wraps must not grow the dialog and
   * move OK and Cancel from under the pointer. */
  {
    PangoFontMetrics *m = pango_context_get_metrics (gtk_widget_get_pango_context (p->status),
                                                     NULL, NULL);
    gint line = PANGO_PIXELS (pango_font_metrics_get_ascent (m)
                              + pango_font_metrics_get_descent (m));

    pango_font_metrics_unref (m);
    gtk_widget_set_size_request (p->status, CG_GIMP_PREVIEW_SIDE, 3 * line + 2);
  }
  gtk_box_pack_start (GTK_BOX (p->box), p->status, FALSE, FALSE, 0);
  g_signal_connect (p->toggle, "toggled", G_CALLBACK (on_preview_toggled), p);
  gtk_widget_show_all (p->box);
  return p;
}

GtkWidget *
cg_gimp_preview_widget (CgGimpPreview *preview)
{
  return preview->box;
}

void
cg_gimp_preview_update (CgGimpPreview *preview, const CgGimpValues *values)
{
  preview->values = *values;
  preview_schedule (preview, CG_GIMP_PREVIEW_DELAY_MS);
}

void
cg_gimp_preview_free (CgGimpPreview *p)
{
  if (p == NULL)
    return;
  if (p->timeout_id != 0)
    g_source_remove (p->timeout_id);
  if (p->poll_id != 0)
    g_source_remove (p->poll_id);
  /* Stops the worker at its next progress report; a preview painted as one tile (the
   * usual case) cannot be interrupted, so this waits for it. */
  g_atomic_int_set (&p->cancel, 1);
  preview_join (p);
  g_signal_handlers_disconnect_by_data (p->toggle, p);
  cg_model_free (p->model);
  g_free (p->model_style);
  g_free (p->picture_style);
  g_free (p->original);
  g_free (p->styled);
  g_free (p->note);
  g_object_unref (p->src);
  g_free (p);
}
