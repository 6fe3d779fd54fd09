/*
 * cyclegan-gimp2.c: the GIMP 2.10 front of the CycleGAN plug-in.
 *
 * Registers Filters > Artistic > "<Style> style" (plug-in-cyclegan-NAME) for every style
 * built into libcyclegan and "Style Transfer (CycleGAN)..." (plug-in-cyclegan), shows the
 * dialog, and hands the drawable's buffers to cg_gimp_common.c.
 */
#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include "cg_gimp_common.h"

static void query (void);
static void run (const gchar      *name,
                 gint              nparams,
                 const GimpParam  *param,
                 gint             *nreturn_vals,
                 GimpParam       **return_vals);

const GimpPlugInInfo PLUG_IN_INFO = { NULL, NULL, query, run };

MAIN ()

static const GimpParamDef style_args[] = {
  { GIMP_PDB_INT32,    "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1), RUN-WITH-LAST-VALS (2) }" },
  { GIMP_PDB_IMAGE,    "image",    "Input image" },
  { GIMP_PDB_DRAWABLE, "drawable", "Input drawable (RGB or grey; indexed is refused)" },
};

static const GimpParamDef general_args[] = {
  { GIMP_PDB_INT32,    "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1), RUN-WITH-LAST-VALS (2) }" },
  { GIMP_PDB_IMAGE,    "image",    "Input image" },
  { GIMP_PDB_DRAWABLE, "drawable", "Input drawable (RGB or grey; indexed is refused)" },
  { GIMP_PDB_STRING,   "style",    "A shipped style name (\"monet\") or the path of a style file (.safetensors or CycleGAN .pth generator)" },
  { GIMP_PDB_FLOAT,    "strength", "How strongly to apply the style, 0..1 (1 = full)" },
  { GIMP_PDB_FLOAT,    "scale",    "Working resolution as a fraction of the selection size, 0..4 (0 = auto: a long side of 384 pixels; larger values give finer brush strokes)" },
};

static void
query (void)
{
  size_t i, n = cg_style_count ();

  gimp_install_procedure (CG_GIMP_PROC,
                          "Repaint in the style of a painter with a CycleGAN model",
                          "Applies a CycleGAN style (a shipped style name, or a .safetensors "
                          "or .pth style file) to the selection of the drawable. Alpha is "
                          "kept; grey layers stay grey; indexed layers are refused.",
                          CG_GIMP_AUTHOR, CG_GIMP_AUTHOR, CG_GIMP_DATE,
                          CG_GIMP_GENERAL_LABEL, "RGB*, GRAY*", GIMP_PLUGIN,
                          G_N_ELEMENTS (general_args), 0, general_args, NULL);
  gimp_plugin_menu_register (CG_GIMP_PROC, CG_GIMP_MENU);

  for (i = 0; i < n; i++)
    {
      gchar *proc  = cg_gimp_style_procedure (cg_style_name (i));
      gchar *label = cg_gimp_style_label (i);
      gchar *blurb = g_strdup_printf ("Repaint the selection: %s (CycleGAN)", label);

      gimp_install_procedure (proc, blurb,
                              "Applies a CycleGAN style built into the plug-in to the "
                              "selection of the drawable, at full strength and automatic "
                              "scale when run non-interactively.",
                              CG_GIMP_AUTHOR, CG_GIMP_AUTHOR, CG_GIMP_DATE,
                              label, "RGB*, GRAY*", GIMP_PLUGIN,
                              G_N_ELEMENTS (style_args), 0, style_args, NULL);
      gimp_plugin_menu_register (proc, CG_GIMP_MENU);
      g_free (blurb);
      g_free (label);
      g_free (proc);
    }
}

/* ---------------------------------------------------------------- dialog */

typedef struct
{
  CgGimpValues  *values;
  gboolean       general;     /* the style can be chosen */
  GtkWidget     *dialog;
  GtkWidget     *style_combo;
  GtkWidget     *file_button;
  CgGimpPreview *preview;
  gint           n_styles;    /* combo index n_styles = "Style file" */
  gchar         *checked;     /* the style file last tried, and whether it loaded */
  gboolean       checked_ok;
} Dialog;

/* A style file is usable when it loads; the result is kept until another file is chosen. */
static gboolean
style_file_usable (Dialog *d, const gchar *file)
{
  if (file == NULL)
    return FALSE;
  if (g_strcmp0 (d->checked, file) != 0)
    {
      gchar *problem = cg_gimp_style_file_problem (file);

      g_free (d->checked);
      d->checked = g_strdup (file);
      d->checked_ok = problem == NULL;
      if (problem != NULL)
        gtk_widget_set_tooltip_text (d->file_button, problem);
      else
        gtk_widget_set_tooltip_text (d->file_button, NULL);
      g_free (problem);
    }
  return d->checked_ok;
}

/* The Help button: the plug-in's own page, not GIMP's manual. */
static void
help_func (const gchar *help_id, gpointer help_data)
{
  (void) help_id;
  (void) help_data;
  cg_gimp_show_help (NULL);
}

static void
dialog_changed (Dialog *d)
{
  gboolean ok = TRUE;

  if (d->general)
    {
      gint   index = 0;
      gchar *file  = NULL;

      gimp_int_combo_box_get_active (GIMP_INT_COMBO_BOX (d->style_combo), &index);
      if (index < d->n_styles)
        cg_gimp_values_set_style (d->values, cg_style_name ((size_t) index));
      else
        {
          file = gtk_file_chooser_get_filename (GTK_FILE_CHOOSER (d->file_button));
          /* OK stays off until the chosen file loads as a style. */
          ok = style_file_usable (d, file) && cg_gimp_values_set_style (d->values, file);
          g_free (file);
        }
      gtk_widget_set_sensitive (d->file_button, index >= d->n_styles);
      gtk_dialog_set_response_sensitive (GTK_DIALOG (d->dialog), GTK_RESPONSE_OK, ok);
    }
  if (ok)
    cg_gimp_preview_update (d->preview, d->values);
  else if (d->general && d->checked != NULL)
    {
      /* Say why in the preview's place: it shows the loader's reason. */
      CgGimpValues v = *d->values;

      cg_gimp_values_set_style (&v, d->checked);
      cg_gimp_preview_update (d->preview, &v);
    }
}

static void
on_combo_changed (GtkWidget *widget, gpointer data)
{
  (void) widget;
  dialog_changed (data);
}

static void
on_file_set (GtkWidget *widget, gpointer data)
{
  Dialog *d = data;

  (void) widget;
  gimp_int_combo_box_set_active (GIMP_INT_COMBO_BOX (d->style_combo), d->n_styles);
  dialog_changed (d);
}

static void
on_double_changed (GtkAdjustment *adjustment, gpointer data)
{
  Dialog  *d = data;
  gdouble *target = g_object_get_data (G_OBJECT (adjustment), "cg-target");

  *target = gtk_adjustment_get_value (adjustment);
  dialog_changed (d);
}

static void
on_backend_changed (GtkWidget *widget, gpointer data)
{
  Dialog *d = data;
  gint    backend = CG_BACKEND_AUTO;

  gimp_int_combo_box_get_active (GIMP_INT_COMBO_BOX (widget), &backend);
  d->values->backend = backend;
  dialog_changed (d);
}

static void
on_precision_changed (GtkWidget *widget, gpointer data)
{
  Dialog *d = data;
  gint    precision = CG_PRECISION_AUTO;

  gimp_int_combo_box_get_active (GIMP_INT_COMBO_BOX (widget), &precision);
  d->values->precision = precision;
  dialog_changed (d);
}

static GtkWidget *
style_combo_new (Dialog *d)
{
  GtkWidget *combo = g_object_new (GIMP_TYPE_INT_COMBO_BOX, NULL);
  gint       i, active = d->n_styles;

  for (i = 0; i < d->n_styles; i++)
    {
      gchar *label = cg_gimp_style_label ((size_t) i);

      gimp_int_combo_box_append (GIMP_INT_COMBO_BOX (combo),
                                 GIMP_INT_STORE_VALUE, i,
                                 GIMP_INT_STORE_LABEL, label, -1);
      if (g_strcmp0 (cg_style_name ((size_t) i), d->values->style) == 0)
        active = i;
      g_free (label);
    }
  gimp_int_combo_box_append (GIMP_INT_COMBO_BOX (combo),
                             GIMP_INT_STORE_VALUE, d->n_styles,
                             GIMP_INT_STORE_LABEL, "Style file...", -1);
  gimp_int_combo_box_set_active (GIMP_INT_COMBO_BOX (combo), active);
  return combo;
}

static GtkWidget *
file_button_new (Dialog *d)
{
  GtkWidget     *button = gtk_file_chooser_button_new ("Choose a CycleGAN style file",
                                                       GTK_FILE_CHOOSER_ACTION_OPEN);
  GtkFileFilter *filter = gtk_file_filter_new ();

  gtk_file_filter_set_name (filter, "Style files (*.safetensors, *.pth)");
  gtk_file_filter_add_pattern (filter, "*.safetensors");
  gtk_file_filter_add_pattern (filter, "*.pth");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (button), filter);
  filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (filter, "All files");
  gtk_file_filter_add_pattern (filter, "*");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (button), filter);
  if (! cg_gimp_style_is_shipped (d->values->style))
    gtk_file_chooser_set_filename (GTK_FILE_CHOOSER (button), d->values->style);
  return button;
}

static void
on_memory_changed (GtkSpinButton *spin, gpointer data)
{
  Dialog *d = data;

  d->values->max_memory_mib = gtk_spin_button_get_value_as_int (spin);
}

static GtkWidget *
backend_combo_new (gint32 active)
{
  static const struct { gint32 backend; const gchar *label; } all[] = {
    { CG_BACKEND_AUTO,  "Automatic (GPU if available)" },
    { CG_BACKEND_CPU,   "CPU" },
    { CG_BACKEND_CUDA,  "NVIDIA GPU (CUDA)" },
    { CG_BACKEND_METAL, "Apple GPU (Metal)" },
  };
  GtkWidget *combo = g_object_new (GIMP_TYPE_INT_COMBO_BOX, NULL);
  gboolean   found = FALSE;
  guint      i;

  for (i = 0; i < G_N_ELEMENTS (all); i++)
    if (cg_backend_is_available (all[i].backend))
      {
        gimp_int_combo_box_append (GIMP_INT_COMBO_BOX (combo),
                                   GIMP_INT_STORE_VALUE, all[i].backend,
                                   GIMP_INT_STORE_LABEL, all[i].label, -1);
        found = found || all[i].backend == active;
      }
  gimp_int_combo_box_set_active (GIMP_INT_COMBO_BOX (combo),
                                 found ? active : CG_BACKEND_AUTO);
  return combo;
}

static GtkWidget *
precision_combo_new (gint32 active)
{
  GtkWidget *combo = gimp_int_combo_box_new ("Automatic", CG_PRECISION_AUTO,
                                             "f32",       CG_PRECISION_F32,
                                             "bf16",      CG_PRECISION_BF16,
                                             NULL);

  if (active != CG_PRECISION_F32 && active != CG_PRECISION_BF16)
    active = CG_PRECISION_AUTO;
  gimp_int_combo_box_set_active (GIMP_INT_COMBO_BOX (combo), active);
  return combo;
}

static GtkObject *
scale_row (GtkTable *table, gint row, const gchar *label, gdouble *target,
           gdouble lower, gdouble upper, const gchar *tooltip, Dialog *d)
{
  GtkObject *adj = gimp_scale_entry_new (table, 0, row, label, 200, 6, *target,
                                         lower, upper, 0.01, 0.1, 2, TRUE, 0, 0,
                                         tooltip, NULL);

  g_object_set_data (G_OBJECT (adj), "cg-target", target);
  g_signal_connect (adj, "value-changed", G_CALLBACK (on_double_changed), d);
  return adj;
}

static gboolean
run_dialog (const gchar *title, const gchar *proc, gboolean general, gint32 drawable,
            const GeglRectangle *rect, CgGimpValues *values)
{
  Dialog      d;
  GtkWidget  *hbox, *vbox, *table, *device, *memory, *precision;
  GeglBuffer *buffer;
  gint        row = 0;
  gboolean    ok;

  memset (&d, 0, sizeof d);
  d.values = values;
  d.general = general;
  d.n_styles = (gint) cg_style_count ();

  gimp_ui_init (CG_GIMP_BINARY, FALSE);
  d.dialog = gimp_dialog_new (title, CG_GIMP_BINARY, NULL, 0,
                              help_func, proc,
                              "_Cancel", GTK_RESPONSE_CANCEL,
                              "_OK", GTK_RESPONSE_OK,
                              NULL);
  gtk_dialog_set_alternative_button_order (GTK_DIALOG (d.dialog),
                                            GTK_RESPONSE_OK, GTK_RESPONSE_CANCEL, -1);
  gimp_window_set_transient (GTK_WINDOW (d.dialog));

  hbox = gtk_hbox_new (FALSE, 12);
  gtk_container_set_border_width (GTK_CONTAINER (hbox), 12);
  gtk_box_pack_start (GTK_BOX (gtk_dialog_get_content_area (GTK_DIALOG (d.dialog))),
                      hbox, TRUE, TRUE, 0);

  buffer = gimp_drawable_get_buffer (drawable);
  d.preview = cg_gimp_preview_new (buffer, rect);
  g_object_unref (buffer);
  gtk_box_pack_start (GTK_BOX (hbox), cg_gimp_preview_widget (d.preview), FALSE, FALSE, 0);

  vbox = gtk_vbox_new (FALSE, 0);
  gtk_box_pack_start (GTK_BOX (hbox), vbox, TRUE, TRUE, 0);
  table = gtk_table_new (7, 3, FALSE);
  gtk_table_set_col_spacings (GTK_TABLE (table), 6);
  gtk_table_set_row_spacings (GTK_TABLE (table), 6);
  gtk_box_pack_start (GTK_BOX (vbox), table, FALSE, FALSE, 0);

  if (general)
    {
      d.style_combo = style_combo_new (&d);
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, "St_yle:", 0.0, 0.5,
                                 d.style_combo, 2, FALSE);
      d.file_button = file_button_new (&d);
      gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, "Style _file:", 0.0, 0.5,
                                 d.file_button, 2, FALSE);
      g_signal_connect (d.style_combo, "changed", G_CALLBACK (on_combo_changed), &d);
      g_signal_connect (d.file_button, "file-set", G_CALLBACK (on_file_set), &d);
    }
  scale_row (GTK_TABLE (table), row++, "Stre_ngth:", &values->strength, 0.0, 1.0,
             "0 keeps the photo, 1 applies the full style", &d);
  scale_row (GTK_TABLE (table), row++, "Sc_ale (0 = auto):", &values->scale, 0.0, 4.0,
             "Working resolution as a fraction of the selection size: smaller values "
             "give larger brush strokes. 0 = auto (a long side of 384 pixels)", &d);
  device = backend_combo_new (values->backend);
  gimp_int_combo_box_get_active (GIMP_INT_COMBO_BOX (device), &values->backend);
  gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, "_Device:", 0.0, 0.5,
                             device, 2, FALSE);
  g_signal_connect (device, "changed", G_CALLBACK (on_backend_changed), &d);
  memory = gtk_spin_button_new_with_range (0, CG_GIMP_MAX_MEMORY_MAX, 64);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (memory), values->max_memory_mib);
  gimp_help_set_help_data (memory, "The most memory one run may use, in MiB: large images "
                           "are then done in tiles. 0 = automatic (the smaller of 2 GiB "
                           "and half the free memory; at least 128)", NULL);
  gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, "_Memory limit (MiB, 0 = auto):",
                             0.0, 0.5, memory, 1, FALSE);
  g_signal_connect (memory, "value-changed", G_CALLBACK (on_memory_changed), &d);
  precision = precision_combo_new (values->precision);
  gimp_int_combo_box_get_active (GIMP_INT_COMBO_BOX (precision), &values->precision);
  gimp_help_set_help_data (precision, "The arithmetic: Automatic uses bf16 products where "
                           "the processor has fast instructions for them, f32 elsewhere; "
                           "f32 is the reference; bf16 fails without those instructions",
                           NULL);
  gimp_table_attach_aligned (GTK_TABLE (table), 0, row++, "_Precision:", 0.0, 0.5,
                             precision, 2, FALSE);
  g_signal_connect (precision, "changed", G_CALLBACK (on_precision_changed), &d);

  gtk_widget_show_all (d.dialog);
  dialog_changed (&d);

  ok = gimp_dialog_run (GIMP_DIALOG (d.dialog)) == GTK_RESPONSE_OK;
  cg_gimp_preview_free (d.preview);
  gtk_widget_destroy (d.dialog);
  g_free (d.checked);
  return ok;
}

/* ---------------------------------------------------------------- run */

static void
run (const gchar      *name,
     gint              nparams,
     const GimpParam  *param,
     gint             *nreturn_vals,
     GimpParam       **return_vals)
{
  static GimpParam  results[2];
  const gchar      *shipped = cg_gimp_style_for_procedure (name);
  gboolean          general = shipped == NULL;
  GimpRunMode       run_mode;
  gint32            image, drawable;
  CgGimpValues      values;
  CgGimpJob         job;
  gchar            *title = NULL;
  gchar            *error = NULL;
  GimpPDBStatusType status = GIMP_PDB_SUCCESS;
  gboolean          ui = FALSE;
  gint              x, y, w, h;

  *nreturn_vals = 1;
  *return_vals = results;
  results[0].type = GIMP_PDB_STATUS;

  if (nparams < 3 || (general && nparams < 3 + 3 && param[0].data.d_int32 == GIMP_RUN_NONINTERACTIVE))
    {
      results[0].data.d_status = GIMP_PDB_CALLING_ERROR;
      return;
    }
  run_mode = param[0].data.d_int32;
  image = param[1].data.d_image;
  drawable = param[2].data.d_drawable;

  gegl_init (NULL, NULL);

  /* Values: the defaults, then the last ones used with this procedure (interactive and
   * repeated runs) or the arguments (non-interactive runs; the device, memory limit and
   * precision are automatic). */
  cg_gimp_values_init (&values);
  if (run_mode != GIMP_RUN_NONINTERACTIVE)
    {
      CgGimpValues last;

      if (gimp_get_data_size (name) == sizeof last && gimp_get_data (name, &last))
        {
          last.style[sizeof last.style - 1] = '\0';
          values = last;
        }
    }
  if (! general)
    cg_gimp_values_set_style (&values, shipped);
  else if (run_mode == GIMP_RUN_NONINTERACTIVE)
    {
      values.strength = param[4].data.d_float;
      values.scale = param[5].data.d_float;
      if (! cg_gimp_values_set_style (&values, param[3].data.d_string))
        error = g_strdup ("The style must be a shipped style name or a style file path");
      else if (! (values.strength >= 0.0 && values.strength <= 1.0))
        error = g_strdup_printf ("strength %g is outside 0..1", values.strength);
      else if (! (values.scale >= 0.0 && values.scale <= 4.0))
        error = g_strdup_printf ("scale %g is outside 0..4 (0 = auto)", values.scale);
    }

  if (error == NULL && gimp_item_is_group (drawable))
    error = g_strdup ("Cannot paint a layer group: choose one of its layers");
  if (error == NULL && gimp_drawable_is_indexed (drawable))
    error = g_strdup ("Indexed layers are not supported: convert the image to RGB first "
                      "(Image > Mode > RGB)");
  if (error != NULL)
    {
      status = GIMP_PDB_EXECUTION_ERROR;
      goto done;
    }

  if (! gimp_drawable_mask_intersect (drawable, &x, &y, &w, &h))
    goto done; /* the selection misses this drawable: nothing to do */

  title = cg_gimp_title (shipped);

  if (run_mode == GIMP_RUN_INTERACTIVE)
    {
      GeglRectangle rect = { x, y, w, h };

      if (! run_dialog (title, name, general, drawable, &rect, &values))
        {
          status = GIMP_PDB_CANCEL;
          goto done;
        }
      ui = TRUE;
    }
  else if (run_mode == GIMP_RUN_WITH_LAST_VALS && gimp_display_name () != NULL
           && gtk_init_check (NULL, NULL))
    {
      gimp_ui_init (CG_GIMP_BINARY, FALSE);
      ui = TRUE;
    }

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
      g_object_unref (job.dst);
      job.dst = NULL;
      /* One undo step; merging the shadow applies the selection mask (feathering). */
      gimp_image_undo_group_start (image);
      gimp_drawable_merge_shadow (drawable, TRUE);
      gimp_drawable_update (drawable, x, y, w, h);
      gimp_image_undo_group_end (image);
      if (run_mode != GIMP_RUN_NONINTERACTIVE)
        gimp_displays_flush ();
      if (run_mode == GIMP_RUN_INTERACTIVE)
        gimp_set_data (name, &values, sizeof values);
      break;
    case CG_GIMP_CANCELLED:
      status = GIMP_PDB_CANCEL;
      break;
    case CG_GIMP_FAILED:
      status = GIMP_PDB_EXECUTION_ERROR;
      break;
    }
  gimp_progress_end ();
  if (job.dst != NULL)
    g_object_unref (job.dst);
  g_object_unref (job.src);

done:
  g_free (title);
  results[0].data.d_status = status;
  if (error != NULL)
    {
      if (run_mode == GIMP_RUN_INTERACTIVE)
        gimp_message (error);
      else
        {
          /* The caller (e.g. Script-Fu) reports it with the execution error. */
          *nreturn_vals = 2;
          results[1].type = GIMP_PDB_STRING;
          results[1].data.d_string = error; /* kept: GIMP reads it after run returns */
        }
    }
}
