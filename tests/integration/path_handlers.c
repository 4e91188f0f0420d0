/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* A handler library for test_module_path: exports the registration symbol
 * and registers nothing (it needs no symbol from the core). */
struct dray_server;

__attribute__((visibility("default"))) int dray_register_handlers(struct dray_server *s);

int
dray_register_handlers(struct dray_server *s)
{
    (void)s;
    return 0;
}
