/* registry.c - the plain array of module descriptors. */
#include <string.h>

#include "mb_module.h"

#define MB_MODULE(id) extern const mb_module_desc mb_mod_##id;
#include "registry.def"
#undef MB_MODULE

const mb_module_desc *const mb_modules[] = {
#define MB_MODULE(id) &mb_mod_##id,
#include "registry.def"
#undef MB_MODULE
    NULL,
};

const mb_module_desc *mb_module_find(const char *id) {
  for (int i = 0; mb_modules[i]; i++)
    if (strcmp(mb_modules[i]->id, id) == 0) return mb_modules[i];
  return NULL;
}

int mb_module_param_index(const mb_module_desc *m, const char *id) {
  for (int i = 0; i < m->n_params; i++)
    if (strcmp(m->params[i].id, id) == 0) return i;
  return -1;
}
