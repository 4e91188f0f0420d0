/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* A shared object that is not a dray module: no dray_module_init. */
__attribute__((visibility("default"))) int not_the_entry(void);

__attribute__((visibility("default"))) int
not_the_entry(void)
{
    return 1;
}
