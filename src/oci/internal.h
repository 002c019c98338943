/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Declarations shared by the oci module's files; not part of its public interface. */
#ifndef LAZYEROFS_OCI_INTERNAL_H
#define LAZYEROFS_OCI_INTERNAL_H

#include "oci/oci.h"

int oci_options_copy(struct oci_options *dst, const struct oci_options *src);

#endif
