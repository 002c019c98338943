// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * What the configuration files add to a pull's options: lazyerofs's own file (util/config.h:
 * the proxy, the mirrors of each registry). Options given with -o come first: their mirrors
 * are tried before the file's, and a proxy given there is not replaced.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"
#include "util/config.h"

/* The names a registry may be configured under: Docker Hub has three. */
static size_t registry_names(const char *registry, const char *names[3])
{
	if (!strcmp(registry, "registry-1.docker.io") || !strcmp(registry, "docker.io") ||
	    !strcmp(registry, "index.docker.io")) {
		names[0] = "docker.io";
		names[1] = "index.docker.io";
		names[2] = "registry-1.docker.io";
		return 3;
	}
	names[0] = registry;
	return 1;
}

static int set_if_unset(char **field, const char *value)
{
	if (*field || !value)
		return 0;
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

static bool is_one_of(const char *name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(name, names[i]))
			return true;
	return false;
}

int oci_options_apply_config(struct oci_options *o, const struct oci_ref *ref,
			     const struct util_config *cfg, struct util_error *err)
{
	const char *names[3];
	size_t n = 0;
	int r;

	util_err_clear(err);
	if (set_if_unset(&o->proxy, cfg->proxy) < 0 ||
	    set_if_unset(&o->no_proxy, cfg->no_proxy) < 0)
		return -ENOMEM;
	if (!ref->is_url)
		n = registry_names(ref->registry, names);
	/* Every mirror of the file is checked, so that a mistake shows on the first mount and
	 * not only on the first of that registry's. */
	for (size_t i = 0; i < cfg->n_registries; i++) {
		const struct util_config_registry *reg = &cfg->registries[i];
		bool ours = is_one_of(reg->name, names, n);

		for (size_t j = 0; j < reg->n_mirrors; j++) {
			struct oci_mirror m = { .caps = OCI_CAP_PULL | OCI_CAP_RESOLVE };
			struct util_error e = UTIL_ERROR_INIT;

			r = oci_mirror_url_parse(reg->mirrors[j], &m.url, &e);
			if (r < 0) {
				r = util_err_set(err, r == -ENOMEM ? r : -EINVAL,
						 "%s: line %u: a mirror of %s: %s", cfg->path,
						 reg->lines[j], reg->name, e.message);
				util_err_printable(err);
				return r;
			}
			r = 0;
			if (ours && asprintf(&m.from, "%s line %u", cfg->path, reg->lines[j]) < 0)
				r = -ENOMEM;
			if (ours && r == 0)
				r = oci_options_add_mirror(o, &m);
			oci_mirror_free(&m);
			if (r < 0)
				return r;
		}
	}
	return 0;
}
