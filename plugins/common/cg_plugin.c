/* cg_plugin: see cg_plugin.h. */
#define _GNU_SOURCE /* strtod_l, newlocale */
#include "cg_plugin.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ option table */

typedef enum
{
  KIND_STYLE,  /* the style name or path, kept in the settings */
  KIND_FLOAT,  /* a number, or "auto" for 0 when auto_zero */
  KIND_UINT,   /* a whole number */
  KIND_MEMORY, /* a memory size (cg_plugin_parse_memory) */
  KIND_NAME,   /* a name libcyclegan parses (from_name) into a uint32_t */
  KIND_CHOICE  /* one of a fixed list of names (choices), set as a uint32_t */
} Kind;

/* A name of a KIND_CHOICE option and the value it sets. */
typedef struct
{
  const char *name;
  uint32_t    value;
} Choice;

/* The precision names, as the CLI's --precision takes them (fp32 is a synonym of f32). */
static const Choice precisions[] = {
  { "auto", CG_PRECISION_AUTO },
  { "f32",  CG_PRECISION_F32 },
  { "fp32", CG_PRECISION_F32 },
  { "bf16", CG_PRECISION_BF16 },
  { NULL,   0 },
};

typedef struct
{
  const char *name;
  Kind        kind;
  const char *wants; /* "needs ..." text for a value that does not parse */
  cg_status (*set_float) (cg_options *, float);
  cg_status (*set_u32) (cg_options *, uint32_t);
  cg_status (*set_u64) (cg_options *, uint64_t);
  cg_status (*from_name) (const char *, uint32_t *);
  int         auto_zero;  /* KIND_FLOAT: "auto" means 0 */
  int         is_backend; /* KIND_NAME: the value is the cache's backend key */
  const Choice *choices;  /* KIND_CHOICE: the names, NULL-terminated */
} Option;

/* One row per option. */
static const Option options[] = {
  { "style",      KIND_STYLE,  "a shipped style name or a style file", 0, 0, 0, 0, 0, 0, 0 },
  { "strength",   KIND_FLOAT,  "a number from 0 to 1", cg_options_set_strength, 0, 0, 0, 0, 0, 0 },
  { "scale",      KIND_FLOAT,  "a fraction of the input size (1 = native) or auto",
                  cg_options_set_scale, 0, 0, 0, 1, 0, 0 },
  { "detail",     KIND_FLOAT,  "a number from 0 to 4", cg_options_set_detail, 0, 0, 0, 0, 0, 0 },
  { "tile",       KIND_UINT,   "a whole number of pixels, at least 64 (0 = automatic)",
                  0, cg_options_set_tile_size, 0, 0, 0, 0, 0 },
  { "device",     KIND_NAME,   "a device name", 0, cg_options_set_backend, 0,
                  cg_backend_from_name, 0, 1, 0 },
  { "max-memory", KIND_MEMORY, "a memory size such as 1500M or 2G (0 = automatic)",
                  0, 0, cg_options_set_memory_limit, 0, 0, 0, 0 },
  { "precision",  KIND_CHOICE, "auto, f32 or bf16", 0, cg_options_set_precision, 0, 0, 0, 0,
                  precisions },
};

#define N_OPTIONS (sizeof options / sizeof options[0])

static const Option *
find_option (const char *key)
{
  size_t i;

  for (i = 0; i < N_OPTIONS; i++)
    if (strcasecmp (options[i].name, key) == 0)
      return &options[i];
  return NULL;
}

static int
fail (char *err, size_t err_len, const char *key, const char *value, const char *reason)
{
  if (err != NULL && err_len > 0)
    (void) snprintf (err, err_len, "%s=%s: %s", key, value, reason);
  return 0;
}

static locale_t       c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void
make_c_locale (void)
{
  c_locale = newlocale (LC_ALL_MASK, "C", (locale_t) 0);
}

/* A number in the C locale (hosts may run in a locale with a decimal comma). */
static int
parse_number (const char *text, double *out)
{
  char  *end = NULL;
  double v;

  (void) pthread_once (&c_locale_once, make_c_locale);
  if (text == NULL || *text == '\0' || c_locale == (locale_t) 0)
    return 0;
  errno = 0;
  v = strtod_l (text, &end, c_locale);
  if (end == text || *end != '\0' || errno != 0 || isnan (v) || fabs (v) > 1e30)
    return 0;
  *out = v;
  return 1;
}

int
cg_plugin_parse_memory (const char *text, uint64_t *bytes)
{
  static const struct { const char *unit; uint64_t mult; } units[] = {
    { "", 1 }, { "b", 1 },
    { "k", 1ull << 10 }, { "kb", 1ull << 10 }, { "kib", 1ull << 10 },
    { "m", 1ull << 20 }, { "mb", 1ull << 20 }, { "mib", 1ull << 20 },
    { "g", 1ull << 30 }, { "gb", 1ull << 30 }, { "gib", 1ull << 30 },
  };
  char        number[64];
  const char *p = text;
  const char *unit;
  size_t      n, i;
  double      v;

  if (text == NULL)
    return 0;
  while (*p == ' ')
    p++;
  if (*p == '\0' || strcasecmp (p, "auto") == 0 || strcasecmp (p, "default") == 0)
    {
      *bytes = 0;
      return 1;
    }
  unit = p;
  while ((*unit >= '0' && *unit <= '9') || *unit == '.')
    unit++;
  n = (size_t) (unit - p);
  if (n == 0 || n >= sizeof number)
    return 0;
  memcpy (number, p, n);
  number[n] = '\0';
  while (*unit == ' ')
    unit++;
  if (!parse_number (number, &v))
    return 0;
  for (i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcasecmp (unit, units[i].unit) == 0)
      {
        v *= (double) units[i].mult;
        if (!(v >= 0.0) || v > 9.2e18)
          return 0;
        *bytes = (uint64_t) v;
        return 1;
      }
  return 0;
}

/* Reports a setter's refusal with the library's reason. */
static int
check (cg_status st, char *err, size_t err_len, const char *key, const char *value)
{
  if (st == CG_OK)
    return 1;
  return fail (err, err_len, key, value, cg_last_error_message ());
}

static int
unknown (char *err, size_t err_len, const char *key)
{
  char names[256] = "";
  size_t i;

  for (i = 0; i < N_OPTIONS; i++)
    {
      if (i > 0)
        (void) strncat (names, ", ", sizeof names - strlen (names) - 1);
      (void) strncat (names, options[i].name, sizeof names - strlen (names) - 1);
    }
  if (err != NULL && err_len > 0)
    (void) snprintf (err, err_len, "unknown option \"%s\" (use %s)", key, names);
  return -1;
}

int
cg_plugin_set (cg_plugin_settings *s, const char *key, const char *value, char *err,
               size_t err_len)
{
  const Option *o = find_option (key);
  double        v;
  uint64_t      bytes;
  uint32_t      id;
  char          why[128];

  if (o == NULL)
    return unknown (err, err_len, key);
  if (value == NULL)
    value = "";
  switch (o->kind)
    {
    case KIND_STYLE:
      if (*value == '\0')
        return fail (err, err_len, key, value, "needs a shipped style name or a style file");
      if (strlen (value) >= sizeof s->style)
        return fail (err, err_len, key, "...", "the style path is too long");
      (void) memcpy (s->style, value, strlen (value) + 1);
      return 1;
    case KIND_FLOAT:
      if (o->auto_zero && strcasecmp (value, "auto") == 0)
        return check (o->set_float (s->opts, 0.0f), err, err_len, key, value);
      if (*value == '\0')
        return 1;
      if (!parse_number (value, &v))
        break;
      return check (o->set_float (s->opts, (float) v), err, err_len, key, value);
    case KIND_UINT:
      if (*value == '\0')
        return 1;
      if (!parse_number (value, &v) || v != floor (v) || v < 0.0 || v > 4294967295.0)
        break;
      return check (o->set_u32 (s->opts, (uint32_t) v), err, err_len, key, value);
    case KIND_MEMORY:
      if (!cg_plugin_parse_memory (value, &bytes))
        break;
      return check (o->set_u64 (s->opts, bytes), err, err_len, key, value);
    case KIND_NAME:
      if (*value == '\0')
        value = "auto";
      /* libcyclegan parses the name; its message lists the known ones. */
      if (!check (o->from_name (value, &id), err, err_len, key, value))
        return 0;
      if (!check (o->set_u32 (s->opts, id), err, err_len, key, value))
        return 0;
      if (o->is_backend)
        s->backend = id;
      return 1;
    case KIND_CHOICE:
      {
        const Choice *c;

        if (*value == '\0')
          value = o->choices[0].name;
        for (c = o->choices; c->name != NULL; c++)
          if (strcasecmp (c->name, value) == 0)
            return check (o->set_u32 (s->opts, c->value), err, err_len, key, value);
        break;
      }
    }
  (void) snprintf (why, sizeof why, "needs %s", o->wants);
  return fail (err, err_len, key, value, why);
}

int
cg_plugin_set_number (cg_plugin_settings *s, const char *key, double value, char *err,
                      size_t err_len)
{
  const Option *o = find_option (key);
  char          text[64];

  if (o == NULL)
    return unknown (err, err_len, key);
  (void) snprintf (text, sizeof text, "%.9g", value);
  switch (o->kind)
    {
    case KIND_FLOAT:
      return check (o->set_float (s->opts, (float) value), err, err_len, key, text);
    case KIND_UINT:
      if (value != floor (value) || value < 0.0 || value > 4294967295.0)
        return fail (err, err_len, key, text, "needs a whole number");
      return check (o->set_u32 (s->opts, (uint32_t) value), err, err_len, key, text);
    case KIND_MEMORY: /* a number is MiB */
      if (!(value >= 0.0) || value > 8.0e12)
        return fail (err, err_len, key, text, "needs a size in MiB");
      return check (o->set_u64 (s->opts, (uint64_t) (value * 1048576.0)), err, err_len,
                    key, text);
    default:
      return fail (err, err_len, key, text, "needs a name, not a number");
    }
}

int
cg_plugin_settings_init (cg_plugin_settings *s, char *err, size_t err_len)
{
  memset (s, 0, sizeof *s);
  (void) memcpy (s->style, "monet", sizeof "monet");
  s->backend = CG_BACKEND_AUTO;
  if (cg_options_new (&s->opts) != CG_OK)
    {
      if (err != NULL && err_len > 0)
        (void) snprintf (err, err_len, "%s", cg_last_error_message ());
      s->opts = NULL;
      return 0;
    }
  return 1;
}

void
cg_plugin_settings_clear (cg_plugin_settings *s)
{
  cg_options_free (s->opts);
  s->opts = NULL;
}

/* ------------------------------------------------------------------ model cache */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static char           *cache_style;
static cg_backend      cache_backend;
static cg_model       *cache_model;

const cg_model *
cg_plugin_cache_acquire (const cg_plugin_settings *s, char *err, size_t err_len)
{
  cg_model *model = NULL;
  char     *style;

  pthread_mutex_lock (&cache_lock);
  if (cache_model != NULL && cache_backend == s->backend && strcmp (cache_style, s->style) == 0)
    return cache_model;

  if (cg_model_load (s->style, s->opts, &model) != CG_OK)
    {
      if (err != NULL && err_len > 0)
        (void) snprintf (err, err_len, "cannot load the style \"%s\": %s", s->style,
                         cg_last_error_message ());
      pthread_mutex_unlock (&cache_lock);
      return NULL;
    }
  style = strdup (s->style);
  if (style == NULL)
    {
      cg_model_free (model);
      if (err != NULL && err_len > 0)
        (void) snprintf (err, err_len, "out of memory");
      pthread_mutex_unlock (&cache_lock);
      return NULL;
    }
  cg_model_free (cache_model);
  free (cache_style);
  cache_model   = model;
  cache_style   = style;
  cache_backend = s->backend;
  return cache_model;
}

void
cg_plugin_cache_release (void)
{
  pthread_mutex_unlock (&cache_lock);
}

void
cg_plugin_cache_clear (void)
{
  pthread_mutex_lock (&cache_lock);
  cg_model_free (cache_model);
  free (cache_style);
  cache_model = NULL;
  cache_style = NULL;
  pthread_mutex_unlock (&cache_lock);
}
