/* fs.c - filesystem helpers: whole-file reads with a size limit, mkdir -p,
 * path joining, and the atomic write used by every on-disk state:
 *   unique temp in the target directory -> write -> fsync -> close ->
 *   rename -> fsync(directory).
 * errno becomes a sem_status here, once, with the failing step named.
 */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sem_status status_from_errno(int e)
{
    switch (e) {
    case ENOENT: return SEM_ENOTFOUND;
    case ENOMEM: return SEM_ENOMEM;
    case EEXIST: return SEM_EEXIST;
    case EACCES:
    case EPERM: return SEM_EAUTH;
    default: return SEM_EIO;
    }
}

sem_status fs_read_file(const char *path, size_t max_bytes, char **out_data, size_t *out_len,
                        sem_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sem_errf(err, status_from_errno(errno), "%s: open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sem_errf(err, SEM_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return sem_errf(err, SEM_ELIMIT, "%s: %lld bytes exceeds the limit of %zu", path,
                        (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *data = malloc(n + 1);
    if (!data) {
        close(fd);
        return sem_errf(err, SEM_ENOMEM, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, data + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(data);
            close(fd);
            return sem_errf(err, SEM_EIO, "%s: short read at byte %zu", path, got);
        }
        got += (size_t)r;
    }
    close(fd);
    data[n] = '\0';
    *out_data = data;
    *out_len = n;
    return SEM_OK;
}

bool fs_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fs_join(char *out, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/') la--;
    while (*b == '/') b++;
    int n = snprintf(out, cap, "%.*s/%s", (int)la, a, b);
    return n >= 0 && (size_t)n < cap;
}

sem_status fs_mkdirs(const char *path, sem_err *err)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return sem_errf(err, SEM_EINVAL, "mkdir: bad path length");
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0') continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return sem_errf(err, status_from_errno(errno), "mkdir %s: %s", tmp, strerror(errno));
        tmp[i] = c;
    }
    if (!fs_is_dir(path)) return sem_errf(err, SEM_EIO, "mkdir %s: exists and is not a directory", path);
    return SEM_OK;
}

sem_status fs_fsync_parent_dir(const char *path, sem_err *err)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return sem_errf(err, SEM_EINVAL, "%s: path too long", path);
        memcpy(dir, path, n ? n : 1);
        dir[n ? n : 1] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return sem_errf(err, SEM_EIO, "%s: open dir for fsync: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0) return sem_errf(err, SEM_EIO, "%s: fsync dir: %s", dir, strerror(e));
    return SEM_OK;
}

sem_status fs_write_atomic(const char *path, const void *data, size_t len, sem_err *err)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp) return sem_errf(err, SEM_EINVAL, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return sem_errf(err, status_from_errno(errno), "%s: create temp: %s", path, strerror(errno));
    const char *step = NULL;
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0 && !step) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) step = "write";
        else {
            p += w;
            left -= (size_t)w;
        }
    }
    if (!step && fsync(fd) != 0) step = "fsync";
    int e = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        e = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        e = errno;
    }
    if (step) {
        unlink(tmp);
        return sem_errf(err, status_from_errno(e), "%s: atomic write failed at %s: %s", path, step,
                        strerror(e));
    }
    return fs_fsync_parent_dir(path, err);
}
