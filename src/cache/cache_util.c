/* cache_util.c - the small file-system helpers of the cache room: agent id
 * validation (ids become file names, so this is the one gate between a
 * request header and a path) and quarantine (moving a bad cache file aside
 * so it is never loaded again but can still be inspected).
 *
 * Quarantine names are <cache_dir>/quarantine/<basename>.<wall ms>.corrupt,
 * with -<n> appended before .corrupt if that name is taken; the rename never
 * replaces an existing file (renameat2 RENAME_NOREPLACE where the file
 * system supports it, else link + unlink, which also refuses to replace).
 *
 * Thread: persist (quarantine does disk I/O); cache_agent_id_valid: any.
 */
#include "cache/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool cache_agent_id_valid(const char *id)
{
    if (!id || id[0] == '\0' || id[0] == '.') return false;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok || n >= CACHE_MAX_AGENT_ID) return false;
    }
    return true;
}

/* Renames src to dst unless dst exists. 0, or an errno (EEXIST if taken). */
static int rename_noreplace(const char *src, const char *dst)
{
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    /* The file system lacks RENAME_NOREPLACE: link refuses to replace too. */
    if (link(src, dst) != 0) return errno;
    if (unlink(src) != 0) {
        int e = errno;
        unlink(dst);
        return e;
    }
    return 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

sem_status cache_quarantine(const char *cache_dir, const char *path, sem_err *err)
{
    char qdir[4096], dst[4096];
    if (!fs_join(qdir, sizeof qdir, cache_dir, "quarantine"))
        return sem_errf(err, SEM_EINVAL, "%s: quarantine: cache dir path too long", path);
    sem_status s = fs_mkdirs(qdir, err);
    if (s != SEM_OK) return s;
    const char *base = base_name(path);
    uint64_t ms = clk_wall_ms();
    for (unsigned n = 0; n < 1000; n++) {
        char name[512];
        int k = n == 0 ? snprintf(name, sizeof name, "%s.%" PRIu64 ".corrupt", base, ms)
                       : snprintf(name, sizeof name, "%s.%" PRIu64 "-%u.corrupt", base, ms, n);
        if (k < 0 || (size_t)k >= sizeof name || !fs_join(dst, sizeof dst, qdir, name))
            return sem_errf(err, SEM_EINVAL, "%s: quarantine: name too long", path);
        int e = rename_noreplace(path, dst);
        if (e == EEXIST) continue;
        if (e == ENOENT)
            return sem_errf(err, SEM_ENOTFOUND, "%s: quarantine: %s", path, strerror(e));
        if (e != 0)
            return sem_errf(err, SEM_EIO, "%s: quarantine to %s: %s", path, dst, strerror(e));
        /* Make the move durable: the new entry, the removed one, and the
         * quarantine directory's own entry if we just created it. */
        s = fs_fsync_parent_dir(dst, err);
        if (s == SEM_OK) s = fs_fsync_parent_dir(path, err);
        if (s == SEM_OK) s = fs_fsync_parent_dir(qdir, err);
        return s;
    }
    return sem_errf(err, SEM_EEXIST, "%s: quarantine: no free name under %s", path, qdir);
}
