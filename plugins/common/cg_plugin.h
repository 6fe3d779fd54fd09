/*
 * cg_plugin: the C glue the cyclegan host plug-ins share (GEGL, ImageMagick; GIMP uses the
 * memory-size parser). Plain C (no GLib), compiled into each plug-in by its install.sh.
 *
 * - Settings: a style and a cg_options built from host values by option name. Every option
 *   is one row of the table in cg_plugin.c (name, kind, setter); ranges are checked by
 *   libcyclegan's setters, device names are parsed by libcyclegan, precision names
 *   (auto, f32, bf16) by the table.
 * - The model cache: one model per process, keyed by style + backend, behind a mutex.
 * - cg_plugin_parse_memory: "1500M", "2G", "512MiB", "0"/"auto" (the library's default).
 *
 * Nothing here aborts: failures come back as a message in the caller's buffer.
 */
#ifndef CG_PLUGIN_H
#define CG_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "cyclegan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest style name or path (bytes, NUL included). */
#define CG_PLUGIN_STYLE_MAX 4097
/* Room for any message this file writes. */
#define CG_PLUGIN_ERROR_MAX 1024

typedef struct
{
  char        style[CG_PLUGIN_STYLE_MAX]; /* default "monet" */
  cg_backend  backend;                    /* what `device` chose; part of the cache key */
  cg_options *opts;                       /* owned */
} cg_plugin_settings;

/* Defaults: style monet, library-default options. Returns 0 after writing `err`. */
int  cg_plugin_settings_init (cg_plugin_settings *s, char *err, size_t err_len);
void cg_plugin_settings_clear (cg_plugin_settings *s);

/* Applies option `key` (style, strength, scale, detail, tile, device, max-memory,
 * precision)
 * from text. An empty value leaves the default. Returns 1, 0 after writing a message
 * "key=value: reason" into `err`, or -1 if no option has that name (err names the known
 * ones). */
int cg_plugin_set (cg_plugin_settings *s, const char *key, const char *value, char *err,
                   size_t err_len);
/* The same from a number (for hosts whose properties are numbers): numeric options only. */
int cg_plugin_set_number (cg_plugin_settings *s, const char *key, double value, char *err,
                          size_t err_len);

/* A memory size: a number with an optional unit B, K/KB/KiB, M/MB/MiB, G/GB/GiB (powers of
 * 1024, any case; no unit = bytes, as the CLI's --max-memory); "", "0", "auto" and
 * "default" give 0 (the library's default). Returns 0 if `text` is not one. */
int cg_plugin_parse_memory (const char *text, uint64_t *bytes);

/* The cached model for `s` (loaded with s->opts if the style or backend changed), with the
 * cache locked: use it, then call cg_plugin_cache_release. Returns NULL (cache unlocked)
 * after writing `err`. Thread-safe. */
const cg_model *cg_plugin_cache_acquire (const cg_plugin_settings *s, char *err,
                                         size_t err_len);
void            cg_plugin_cache_release (void);
/* Frees the cached model (e.g. when the module is unloaded). */
void            cg_plugin_cache_clear (void);

#ifdef __cplusplus
}
#endif

#endif /* CG_PLUGIN_H */
