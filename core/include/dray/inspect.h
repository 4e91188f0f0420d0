/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* Inspection API (queues, retry/scheduled/dead sets, processes, stats) and
 * configuration files. Included by dray.h. */
#ifndef DRAY_INSPECT_H
#define DRAY_INSPECT_H

#include "dray/dray.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* DRAY_INSPECT_H */
