/*
 * cg_gimp_common: the part of the CycleGAN GIMP plug-in that GIMP 2.10 and GIMP 3 share.
 *
 * It moves pixels between GEGL buffers and libcyclegan, reports progress, offers a Cancel
 * window and a preview widget. It knows nothing about how a libgimp generation names
 * images, drawables or procedure arguments: the fronts (gimp2/, gimp3/) do that and hand
 * in GeglBuffers and a rectangle. Compiled once per front, against that front's libgimp,
 * GEGL and GTK (2 or 3).
 */
#ifndef CG_GIMP_COMMON_H
#define CG_GIMP_COMMON_H

#include <gtk/gtk.h>
#include <gegl.h>

#include "cyclegan.h"

G_BEGIN_DECLS

/* The general procedure; each shipped style gets CG_GIMP_PROC "-" NAME as well. */
#define CG_GIMP_PROC "plug-in-cyclegan"
#define CG_GIMP_BINARY "cyclegan"
#define CG_GIMP_MENU "<Image>/Filters/Artistic"
#define CG_GIMP_GENERAL_LABEL "Style _Transfer (CycleGAN)..."
#define CG_GIMP_AUTHOR "The cyclegan authors"
#define CG_GIMP_DATE "2025"

/* Longest style path kept in the remembered values (bytes, NUL included). */
#define CG_GIMP_STYLE_MAX 4096

/* What the user chose: saved between runs ("last values") by the fronts. Plain data, no
 * pointers, so it can be stored with gimp_set_data as it is. */
typedef struct
{
  gchar   style[CG_GIMP_STYLE_MAX]; /* a shipped style name ("monet") or a style file path */
  gdouble strength;                 /* 0..1 */
  gdouble scale;                    /* 0 = auto, else (0, 4] of the input size */
  gint32  backend;                  /* CG_BACKEND_* */
  gint32  max_memory_mib;           /* memory limit in MiB; 0 = the library's default */
  gint32  precision;                /* CG_PRECISION_* */
} CgGimpValues;

/* The memory-limit field's range in MiB (the library's minimum is 128 MiB; 0 = default). */
#define CG_GIMP_MAX_MEMORY_MAX 1048576

/* The defaults: the first shipped style, strength 1, scale auto, backend auto, memory
 * limit automatic, precision auto. */
void cg_gimp_values_init (CgGimpValues *values);

/* Copies `style` into values->style; FALSE (values unchanged) if NULL, empty or too long. */
gboolean cg_gimp_values_set_style (CgGimpValues *values, const gchar *style);

/* The precision names, as the CLI's --precision takes them: "auto", "f32" (or "fp32"),
 * "bf16", any case. FALSE (*precision unchanged) for anything else. */
gboolean     cg_gimp_precision_from_name (const gchar *name, gint32 *precision);
/* The name of a CG_PRECISION_* value ("auto" for an unknown one). */
const gchar *cg_gimp_precision_name (gint32 precision);

/* TRUE for the name of a style built into the library. */
gboolean cg_gimp_style_is_shipped (const gchar *style);

/* "plug-in-cyclegan-NAME" for shipped style NAME (lower-cased, other characters than
 * a-z, 0-9 and '-' become '-'); free with g_free. */
gchar *cg_gimp_style_procedure (const gchar *style_name);

/* The shipped style whose procedure is `procedure_name`, or NULL. */
const gchar *cg_gimp_style_for_procedure (const gchar *procedure_name);

/* Menu label for shipped style `index` (from cg_style_label, else "<name> style"); free
 * with g_free. */
gchar *cg_gimp_style_label (size_t index);

/* The title of the filter: the shipped style's label, or the general name for NULL; free
 * with g_free. */
gchar *cg_gimp_title (const gchar *shipped_style);

/* A short text for a cg_ failure: "<what>: <reason>"; free with g_free. */
gchar *cg_gimp_error_text (const gchar *what, cg_status status);

/* Why `path` cannot be used as a style, or NULL if it loads (free with g_free): "not a
 * style file ..." for a file that is neither safetensors nor a PyTorch checkpoint (rather
 * than the loader's "header too large"), else the loader's reason. Loads the file on the
 * CPU: call it when the choice changes, not on every redraw. */
gchar *cg_gimp_style_file_problem (const gchar *path);

/* The error text for a failed cg_model_load of `style` (see cg_gimp_error_text), which
 * says "not a style file" for files that are not one. */
gchar *cg_gimp_style_error_text (const gchar *what, const gchar *style, cg_status status);

/* The plug-in's own help, shown by the dialog's Help button (GIMP's manual is often not
 * installed, and has no page for a third-party filter). */
const gchar *cg_gimp_help_text (void);
void         cg_gimp_show_help (GtkWidget *parent);

/* The filter. `src` is the drawable's buffer, `dst` its shadow buffer, `rect` the part to
 * change in drawable coordinates (the selection bounds). On CG_GIMP_DONE the stylized
 * rectangle has been written into `dst` (and nothing else); on any other result `dst` is
 * untouched, so the caller merges the shadow only on success. */
typedef struct
{
  GeglBuffer         *src;
  GeglBuffer         *dst;
  GeglRectangle       rect;
  const CgGimpValues *values;
  const gchar        *title;        /* progress text, e.g. "Monet style" */
  gboolean            cancel_window; /* show a window with a Cancel button (needs GTK) */
} CgGimpJob;

typedef enum
{
  CG_GIMP_DONE,
  CG_GIMP_CANCELLED,
  CG_GIMP_FAILED
} CgGimpResult;

/* Runs the job; on CG_GIMP_FAILED *error_text (if not NULL) gets a message to show (free
 * with g_free). Reports progress with gimp_progress_init/update. Pixels travel as
 * R'G'B'A u8 for 8-bit drawables and R'G'B'A u16 for deeper ones (16/32-bit integer,
 * half and float: values outside 0..1 are clipped); grey drawables are read as grey RGB
 * and written back as grey by GEGL. */
CgGimpResult cg_gimp_run (const CgGimpJob *job, gchar **error_text);

/* The preview: the whole rectangle, stylized at the working resolution the values give
 * (at most 512 pixels on the long side, so it stays quick), with the strength blended in
 * and shown over a checkerboard. Computing blocks the dialog for a moment, so updates wait
 * until the values have been still for 300 ms. */
typedef struct _CgGimpPreview CgGimpPreview;

CgGimpPreview *cg_gimp_preview_new (GeglBuffer *src, const GeglRectangle *rect);
/* The widget to pack into a dialog: the picture, a "Preview" check box, a status line. */
GtkWidget     *cg_gimp_preview_widget (CgGimpPreview *preview);
/* Call whenever a value changes (and once at the start). */
void           cg_gimp_preview_update (CgGimpPreview *preview, const CgGimpValues *values);
/* Frees the preview state; call before the dialog holding the widget is destroyed. */
void           cg_gimp_preview_free (CgGimpPreview *preview);

G_END_DECLS

#endif /* CG_GIMP_COMMON_H */
