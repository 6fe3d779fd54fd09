/*
 * cyclegan-gimp3.c: the GIMP 3 front of the CycleGAN plug-in.
 *
 * Registers Filters > Artistic > "<Style> style" (plug-in-cyclegan-NAME) for every style
 * built into libcyclegan and "Style Transfer (CycleGAN)..." (plug-in-cyclegan, arguments
 * style, strength, scale, precision), builds the dialog from the procedure's arguments, and
 * hands the drawable's buffers to cg_gimp_common.c. GIMP stores the last values itself.
 */
#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include "cg_gimp_common.h"

#define STYLE_FILE_NICK "file"

#define PRECISION_BLURB                                                                  \
  "The arithmetic: auto (bf16 products where the processor has fast instructions for "   \
  "them, f32 elsewhere), f32 (the reference) or bf16 (fails without those instructions)"

typedef struct
{
  GimpPlugIn parent_instance;
} CgPlugIn;

typedef struct
{
  GimpPlugInClass parent_class;
} CgPlugInClass;

GType cg_plug_in_get_type (void);

#define CG_TYPE_PLUG_IN (cg_plug_in_get_type ())

G_DEFINE_TYPE (CgPlugIn, cg_plug_in, GIMP_TYPE_PLUG_IN)

GIMP_MAIN (CG_TYPE_PLUG_IN)

static GimpValueArray *run (GimpProcedure        *procedure,
                            GimpRunMode           run_mode,
                            GimpImage            *image,
                            GimpDrawable        **drawables,
                            GimpProcedureConfig  *config,
                            gpointer              run_data);

static GList *
query_procedures (GimpPlugIn *plug_in)
{
  GList  *list = NULL;
  size_t  i, n = cg_style_count ();

  (void) plug_in;
  for (i = n; i > 0; i--)
    list = g_list_prepend (list, cg_gimp_style_procedure (cg_style_name (i - 1)));
  return g_list_prepend (list, g_strdup (CG_GIMP_PROC));
}

static GimpChoice *
device_choice_new (void)
{
  return gimp_choice_new_with_values ("auto",  CG_BACKEND_AUTO,  "Automatic (GPU if available)", NULL,
                                      "cpu",   CG_BACKEND_CPU,   "CPU", NULL,
                                      "cuda",  CG_BACKEND_CUDA,  "NVIDIA GPU (CUDA)", NULL,
                                      "metal", CG_BACKEND_METAL, "Apple GPU (Metal)", NULL,
                                      NULL);
}

static GimpChoice *
precision_choice_new (void)
{
  return gimp_choice_new_with_values ("auto", CG_PRECISION_AUTO, "Automatic", NULL,
                                      "f32",  CG_PRECISION_F32,  "f32", NULL,
                                      "bf16", CG_PRECISION_BF16, "bf16", NULL,
                                      NULL);
}

static GimpChoice *
style_choice_new (void)
{
  GimpChoice *choice = gimp_choice_new ();
  size_t      i, n = cg_style_count ();

  for (i = 0; i < n; i++)
    {
      gchar *label = cg_gimp_style_label (i);

      gimp_choice_add (choice, cg_style_name (i), (gint) i, label, NULL);
      g_free (label);
    }
  gimp_choice_add (choice, STYLE_FILE_NICK, (gint) n, "Style file...",
                   "The style file chosen below");
  return choice;
}

static GimpProcedure *
create_procedure (GimpPlugIn *plug_in, const gchar *name)
{
  const gchar   *shipped = cg_gimp_style_for_procedure (name);
  gboolean       general = strcmp (name, CG_GIMP_PROC) == 0;
  GimpProcedure *procedure;
  gchar         *label;
  CgGimpValues   defaults;

  if (! general && shipped == NULL)
    return NULL;
  cg_gimp_values_init (&defaults);

  procedure = gimp_image_procedure_new (plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN,
                                        run, NULL, NULL);
  gimp_procedure_set_image_types (procedure, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  label = general ? g_strdup (CG_GIMP_GENERAL_LABEL) : cg_gimp_title (shipped);
  gimp_procedure_set_menu_label (procedure, label);
  gimp_procedure_add_menu_path (procedure, CG_GIMP_MENU);
  gimp_procedure_set_attribution (procedure, CG_GIMP_AUTHOR, CG_GIMP_AUTHOR, CG_GIMP_DATE);

  if (general)
    {
      gimp_procedure_set_documentation (procedure,
                                        "Repaint in the style of a painter with a CycleGAN model",
                                        "Applies a CycleGAN style (a shipped style name, or a "
                                        ".safetensors or .pth style file) to the selection of "
                                        "one drawable. Alpha is kept; grey layers stay grey; "
                                        "indexed layers are refused.",
                                        name);
      gimp_procedure_add_string_argument (procedure, "style", "Style",
                                          "A shipped style name (\"monet\") or the path of a "
                                          "style file (.safetensors or CycleGAN .pth generator)",
                                          defaults.style, G_PARAM_READWRITE);
      gimp_procedure_add_double_argument (procedure, "strength", "Stre_ngth",
                                          "How strongly to apply the style (1 = full)",
                                          0.0, 1.0, 1.0, G_PARAM_READWRITE);
      gimp_procedure_add_double_argument (procedure, "scale", "Sc_ale (0 = auto)",
                                          "Working resolution as a fraction of the selection "
                                          "size; 0 = auto (a long side of 384 pixels); larger "
                                          "values give finer brush strokes",
                                          0.0, 4.0, 0.0, G_PARAM_READWRITE);
      /* An argument, unlike device and max-memory, because it changes the pixels: a
       * script that needs the reference result asks for f32. A string checked here, not a
       * choice: GIMP 3.0's Script-Fu turns an unknown choice into the default with only a
       * GLib warning, and a script asking for "fp64" must fail. The dialog shows
       * precision-choice instead (as style and style-choice). */
      gimp_procedure_add_string_argument (procedure, "precision", "Precision",
                                          PRECISION_BLURB, "auto", G_PARAM_READWRITE);
      /* Dialog only: the "style" argument is derived from these two. */
      gimp_procedure_add_choice_aux_argument (procedure, "style-choice", "St_yle",
                                              "A shipped style, or a style file",
                                              style_choice_new (), defaults.style,
                                              G_PARAM_READWRITE);
      gimp_procedure_add_file_aux_argument (procedure, "style-file", "Style _file",
                                            "A .safetensors or CycleGAN .pth style file",
                                            GIMP_FILE_CHOOSER_ACTION_OPEN, TRUE, NULL,
                                            G_PARAM_READWRITE);
    }
  else
    {
      gchar *blurb = g_strdup_printf ("Repaint the selection: %s (CycleGAN)", label);

      gimp_procedure_set_documentation (procedure, blurb,
                                        "Applies a CycleGAN style built into the plug-in to "
                                        "the selection of one drawable, at full strength and "
                                        "automatic scale when run non-interactively.",
                                        name);
      g_free (blurb);
      gimp_procedure_add_double_aux_argument (procedure, "strength", "Stre_ngth",
                                              "How strongly to apply the style (1 = full)",
                                              0.0, 1.0, 1.0, G_PARAM_READWRITE);
      gimp_procedure_add_double_aux_argument (procedure, "scale", "Sc_ale (0 = auto)",
                                              "Working resolution as a fraction of the "
                                              "selection size; 0 = auto (a long side of 384 "
                                              "pixels); larger values give finer brush strokes",
                                              0.0, 4.0, 0.0, G_PARAM_READWRITE);
    }
  /* The dialog's precision (for the general procedure, "precision" is derived from it). */
  gimp_procedure_add_choice_aux_argument (procedure, "precision-choice", "_Precision",
                                          PRECISION_BLURB, precision_choice_new (), "auto",
                                          G_PARAM_READWRITE);
  gimp_procedure_add_choice_aux_argument (procedure, "device", "_Device",
                                          "Where to compute", device_choice_new (), "auto",
                                          G_PARAM_READWRITE);
  gimp_procedure_add_int_aux_argument (procedure, "max-memory", "_Memory limit (MiB, 0 = auto)",
                                       "The most memory one run may use, in MiB: large images "
                                       "are then done in tiles. 0 = automatic (the smaller of "
                                       "2 GiB and half the free memory; at least 128)",
                                       0, CG_GIMP_MAX_MEMORY_MAX, 0, G_PARAM_READWRITE);
  g_free (label);
  return procedure;
}

/* No translations are shipped: tell GIMP not to look for a catalog. */
static gboolean
set_i18n (GimpPlugIn *plug_in, const gchar *procedure_name, gchar **gettext_domain,
          gchar **catalog_dir)
{
  (void) plug_in;
  (void) procedure_name;
  (void) gettext_domain;
  (void) catalog_dir;
  return FALSE;
}

static void
cg_plug_in_class_init (CgPlugInClass *klass)
{
  GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS (klass);

  plug_in_class->query_procedures = query_procedures;
  plug_in_class->create_procedure = create_procedure;
  plug_in_class->set_i18n = set_i18n;
}

static void
cg_plug_in_init (CgPlugIn *plug_in)
{
  (void) plug_in;
}

/* ---------------------------------------------------------------- values */

/* Reads the values from `config`. In the dialog (`from_dialog`) the general procedure's
 * style comes from style-choice/style-file; otherwise from the "style" argument. Returns
 * FALSE with *error set when they name no style. */
static gboolean
values_from_config (GimpProcedureConfig *config, const gchar *shipped, gboolean from_dialog,
                    CgGimpValues *values, gchar **error)
{
  gchar *style = NULL;

  cg_gimp_values_init (values);
  g_object_get (config, "strength", &values->strength, "scale", &values->scale, NULL);
  values->backend = gimp_procedure_config_get_choice_id (config, "device");
  g_object_get (config, "max-memory", &values->max_memory_mib, NULL);
  if (shipped != NULL || from_dialog)
    values->precision = gimp_procedure_config_get_choice_id (config, "precision-choice");
  else
    {
      gchar *name = NULL;

      g_object_get (config, "precision", &name, NULL);
      if (! cg_gimp_precision_from_name (name, &values->precision))
        {
          if (error)
            *error = g_strdup_printf ("precision \"%s\": use auto, f32 or bf16",
                                      name ? name : "");
          g_free (name);
          return FALSE;
        }
      g_free (name);
    }

  if (shipped != NULL)
    style = g_strdup (shipped);
  else if (! from_dialog)
    g_object_get (config, "style", &style, NULL);
  else
    {
      gchar *choice = NULL;

      g_object_get (config, "style-choice", &choice, NULL);
      if (g_strcmp0 (choice, STYLE_FILE_NICK) != 0)
        style = g_strdup (choice);
      else
        {
          GFile *file = NULL;

          g_object_get (config, "style-file", &file, NULL);
          if (file != NULL)
            style = g_file_get_path (file);
          g_clear_object (&file);
        }
      g_free (choice);
    }

  if (! cg_gimp_values_set_style (values, style))
    {
      if (error)
        *error = g_strdup (style == NULL ? "Choose a style file"
                                         : "The style must be a shipped style name or a "
                                           "style file path");
      g_free (style);
      return FALSE;
    }
  g_free (style);
  return TRUE;
}

/* ---------------------------------------------------------------- dialog */

typedef struct
{
  GimpProcedureConfig *config;
  const gchar         *shipped;
  CgGimpPreview       *preview;
  GtkWidget           *dialog;
  gchar               *checked;    /* the style file last tried, and whether it loaded */
  gboolean             checked_ok;
} Dialog;

/* OK is sensitive only when the values name a usable style: a shipped one, or a style
 * file that loads (tried once per file). */
static gboolean
dialog_style_usable (Dialog *d, const CgGimpValues *values, gboolean valid)
{
  gboolean ok = valid;

  if (valid && ! cg_gimp_style_is_shipped (values->style))
    {
      if (g_strcmp0 (d->checked, values->style) != 0)
        {
          gchar *problem = cg_gimp_style_file_problem (values->style);

          g_free (d->checked);
          d->checked = g_strdup (values->style);
          d->checked_ok = problem == NULL;
          g_free (problem);
        }
      ok = d->checked_ok;
    }
  gtk_dialog_set_response_sensitive (GTK_DIALOG (d->dialog), GTK_RESPONSE_OK, ok);
  return ok;
}

/* Help shows the plug-in's own text rather than asking for GIMP's manual. */
static void
on_dialog_response (GtkDialog *dialog, gint response, gpointer data)
{
  (void) data;
  if (response == GTK_RESPONSE_HELP)
    {
      g_signal_stop_emission_by_name (dialog, "response");
      cg_gimp_show_help (GTK_WIDGET (dialog));
    }
}

static void
on_config_notify (GObject *config, GParamSpec *pspec, gpointer data)
{
  Dialog       *d = data;
  CgGimpValues  values;
  gboolean      valid;

  (void) config;
  if (d->shipped == NULL && strcmp (pspec->name, "style-file") == 0)
    {
      GFile *file = NULL;

      g_object_get (d->config, "style-file", &file, NULL);
      if (file != NULL)
        g_object_set (d->config, "style-choice", STYLE_FILE_NICK, NULL);
      g_clear_object (&file);
    }
  valid = values_from_config (d->config, d->shipped, TRUE, &values, NULL);
  dialog_style_usable (d, &values, valid);
  /* An unusable file still goes to the preview, whose note then says why. */
  if (valid)
    cg_gimp_preview_update (d->preview, &values);
}

static gboolean
run_dialog (GimpProcedure *procedure, GimpProcedureConfig *config, const gchar *shipped,
            GimpDrawable *drawable, const GeglRectangle *rect, const gchar *title)
{
  Dialog        d = { config, shipped, NULL, NULL, NULL, FALSE };
  GtkWidget    *dialog, *hbox, *content;
  GeglBuffer   *buffer;
  CgGimpValues  values;
  gulong        handler;
  gboolean      ok, valid;

  gimp_ui_init (CG_GIMP_BINARY);
  dialog = gimp_procedure_dialog_new (procedure, config, title);
  d.dialog = dialog;
  g_signal_connect (dialog, "response", G_CALLBACK (on_dialog_response), NULL);

  /* Sliders with a number, as GIMP's own filters show them. */
  gimp_procedure_dialog_get_scale_entry (GIMP_PROCEDURE_DIALOG (dialog), "strength", 1.0);
  gimp_procedure_dialog_get_scale_entry (GIMP_PROCEDURE_DIALOG (dialog), "scale", 1.0);

  if (shipped == NULL)
    {
      GimpValueArray *file_only = gimp_value_array_new (1);
      GValue          value = G_VALUE_INIT;

      gimp_procedure_dialog_fill (GIMP_PROCEDURE_DIALOG (dialog), "style-choice", "style-file",
                                  "strength", "scale", "precision-choice", "device",
                                  "max-memory", NULL);
      /* The file chooser is active only while "Style file..." is chosen. */
      g_value_init (&value, G_TYPE_STRING);
      g_value_set_string (&value, STYLE_FILE_NICK);
      gimp_value_array_append (file_only, &value);
      g_value_unset (&value);
      gimp_procedure_dialog_set_sensitive_if_in (GIMP_PROCEDURE_DIALOG (dialog), "style-file",
                                                 NULL, "style-choice", file_only, TRUE);
    }
  else
    gimp_procedure_dialog_fill (GIMP_PROCEDURE_DIALOG (dialog), "strength", "scale",
                                "precision-choice", "device", "max-memory", NULL);

  /* The preview goes to the left of the generated widgets. */
  content = gtk_dialog_get_content_area (GTK_DIALOG (dialog));
  buffer = gimp_drawable_get_buffer (drawable);
  d.preview = cg_gimp_preview_new (buffer, rect);
  g_object_unref (buffer);
  hbox = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  gtk_container_set_border_width (GTK_CONTAINER (hbox), 6);
  gtk_box_pack_start (GTK_BOX (hbox), cg_gimp_preview_widget (d.preview), FALSE, FALSE, 0);
  gtk_box_pack_start (GTK_BOX (content), hbox, FALSE, FALSE, 0);
  gtk_box_reorder_child (GTK_BOX (content), hbox, 0);
  gtk_widget_show (hbox);

  handler = g_signal_connect (config, "notify", G_CALLBACK (on_config_notify), &d);
  valid = values_from_config (config, shipped, TRUE, &values, NULL);
  dialog_style_usable (&d, &values, valid);
  if (valid)
    cg_gimp_preview_update (d.preview, &values);

  ok = gimp_procedure_dialog_run (GIMP_PROCEDURE_DIALOG (dialog));

  g_signal_handler_disconnect (config, handler);
  cg_gimp_preview_free (d.preview);
  gtk_widget_destroy (dialog);
  g_free (d.checked);
  return ok;
}

/* ---------------------------------------------------------------- run */

static GimpValueArray *
fail (GimpProcedure *procedure, GimpPDBStatusType status, gchar *message)
{
  GError *error = NULL;

  if (message != NULL)
    {
      error = g_error_new_literal (GIMP_PLUG_IN_ERROR, 0, message);
      g_free (message);
    }
  return gimp_procedure_new_return_values (procedure, status, error);
}

static GimpValueArray *
run (GimpProcedure        *procedure,
     GimpRunMode           run_mode,
     GimpImage            *image,
     GimpDrawable        **drawables,
     GimpProcedureConfig  *config,
     gpointer              run_data)
{
  const gchar      *name    = gimp_procedure_get_name (procedure);
  const gchar      *shipped = cg_gimp_style_for_procedure (name);
  GimpDrawable     *drawable;
  CgGimpValues      values;
  CgGimpJob         job;
  gchar            *title, *error = NULL;
  GimpPDBStatusType status = GIMP_PDB_SUCCESS;
  gboolean          ui = FALSE;
  gint              x, y, w, h;

  (void) run_data;
  gegl_init (NULL, NULL);

  if (gimp_core_object_array_get_length ((GObject **) drawables) != 1)
    return fail (procedure, GIMP_PDB_CALLING_ERROR,
                 g_strdup ("Choose exactly one layer to paint"));
  drawable = drawables[0];
  if (gimp_item_is_group (GIMP_ITEM (drawable)))
    return fail (procedure, GIMP_PDB_EXECUTION_ERROR,
                 g_strdup ("Cannot paint a layer group: choose one of its layers"));
  if (gimp_drawable_is_indexed (drawable))
    return fail (procedure, GIMP_PDB_EXECUTION_ERROR,
                 g_strdup ("Indexed layers are not supported: convert the image to RGB "
                           "first (Image > Mode > RGB)"));
  if (! gimp_drawable_mask_intersect (drawable, &x, &y, &w, &h))
    return gimp_procedure_new_return_values (procedure, GIMP_PDB_SUCCESS, NULL);

  title = cg_gimp_title (shipped);
  if (run_mode == GIMP_RUN_INTERACTIVE)
    {
      GeglRectangle rect = { x, y, w, h };

      if (! run_dialog (procedure, config, shipped, drawable, &rect, title))
        {
          g_free (title);
          return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);
        }
      ui = TRUE;
    }
  else if (run_mode == GIMP_RUN_WITH_LAST_VALS && gimp_display_name () != NULL
           && gtk_init_check (NULL, NULL))
    {
      gimp_ui_init (CG_GIMP_BINARY);
      ui = TRUE;
    }

  /* Interactive runs take the style and precision from the dialog's choices and store them
   * in "style" and "precision" too, so that Repeat (last values) and the next dialog
   * agree. */
  if (! values_from_config (config, shipped, run_mode == GIMP_RUN_INTERACTIVE,
                            &values, &error))
    {
      g_free (title);
      return fail (procedure, GIMP_PDB_CALLING_ERROR, error);
    }
  if (shipped == NULL && run_mode == GIMP_RUN_INTERACTIVE)
    g_object_set (config, "style", values.style, "precision",
                  cg_gimp_precision_name (values.precision), NULL);

  memset (&job, 0, sizeof job);
  job.src = gimp_drawable_get_buffer (drawable);
  job.dst = gimp_drawable_get_shadow_buffer (drawable);
  job.rect.x = x;
  job.rect.y = y;
  job.rect.width = w;
  job.rect.height = h;
  job.values = &values;
  job.title = title;
  job.cancel_window = ui;

  switch (cg_gimp_run (&job, &error))
    {
    case CG_GIMP_DONE:
      g_clear_object (&job.dst);
      /* One undo step; merging the shadow applies the selection mask (feathering). */
      gimp_image_undo_group_start (image);
      gimp_drawable_merge_shadow (drawable, TRUE);
      gimp_drawable_update (drawable, x, y, w, h);
      gimp_image_undo_group_end (image);
      if (run_mode != GIMP_RUN_NONINTERACTIVE)
        gimp_displays_flush ();
      break;
    case CG_GIMP_CANCELLED:
      status = GIMP_PDB_CANCEL;
      break;
    case CG_GIMP_FAILED:
      status = GIMP_PDB_EXECUTION_ERROR;
      break;
    }
  gimp_progress_end ();
  g_clear_object (&job.dst);
  g_clear_object (&job.src);
  g_free (title);
  return fail (procedure, status, error);
}
