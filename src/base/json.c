/* json.c - jansson helpers: load a JSON file with a size limit and an
 * error that names the file, line and column.
 */
#include "base.h"

#include <jansson.h>
#include <stdlib.h>

sem_status js_load_file(const char *path, size_t max_bytes, json_t **out, sem_err *err)
{
    char *data;
    size_t len;
    sem_status s = fs_read_file(path, max_bytes, &data, &len, err);
    if (s != SEM_OK) return s;
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    free(data);
    if (!root)
        return sem_errf(err, SEM_ECORRUPT, "%s: invalid JSON at line %d column %d: %s", path,
                        je.line, je.column, je.text);
    *out = root;
    return SEM_OK;
}
