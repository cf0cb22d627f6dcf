/* auth.c - API keys and the admin key.
 *
 * API keys (SEMANTIC_API_KEYS, comma-separated) are accepted as
 * "Authorization: Bearer KEY" (OpenAI) or "x-api-key: KEY" (Anthropic).
 * With no keys configured the API is open. Admin routes need X-Admin-Key
 * equal to SEMANTIC_ADMIN_KEY; with no admin key they are refused.
 *
 * Every comparison runs in time that depends only on the configured key's
 * length, and every configured key is compared (no early exit), so timing
 * says nothing about how much of a guess was right. Keys never reach logs.
 *
 * Thread: init/fini on the owner; checks from any thread (read-only).
 */
#include "server/srv_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool srv_ct_equal(const char *guess, size_t guess_len, const char *secret, size_t secret_len)
{
    volatile unsigned char diff = (unsigned char)(guess_len != secret_len);
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = i < guess_len ? (unsigned char)guess[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)secret[i]);
    }
    return diff == 0;
}

static char *dup_trimmed(const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    if (!n) return NULL;
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

sem_status srv_auth_init(srv_auth *a, const char *api_keys_csv, const char *admin_key,
                         sem_err *err)
{
    memset(a, 0, sizeof *a);
    for (const char *p = api_keys_csv; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char *k = dup_trimmed(p, n);
        if (k) {
            if (a->n_keys == SRV_MAX_API_KEYS) {
                free(k);
                srv_auth_fini(a);
                return sem_errf(err, SEM_ELIMIT, "SEMANTIC_API_KEYS: more than %d keys",
                                SRV_MAX_API_KEYS);
            }
            a->keys[a->n_keys++] = k;
        }
        p = comma ? comma + 1 : p + n;
    }
    if (admin_key && *admin_key) {
        a->admin_key = dup_trimmed(admin_key, strlen(admin_key));
        if (!a->admin_key) {
            srv_auth_fini(a);
            return sem_errf(err, SEM_EINVAL, "SEMANTIC_ADMIN_KEY is blank");
        }
    }
    return SEM_OK;
}

void srv_auth_fini(srv_auth *a)
{
    for (size_t i = 0; i < a->n_keys; i++) free(a->keys[i]);
    free(a->admin_key);
    memset(a, 0, sizeof *a);
}

bool srv_auth_required(const srv_auth *a) { return a->n_keys > 0; }

static bool key_matches(const srv_auth *a, const char *k)
{
    size_t n = strlen(k);
    bool ok = false;
    for (size_t i = 0; i < a->n_keys; i++)
        ok |= srv_ct_equal(k, n, a->keys[i], strlen(a->keys[i]));
    return ok;
}

bool srv_auth_check_api(const srv_auth *a, const char *authorization, const char *x_api_key)
{
    if (!srv_auth_required(a)) return true;
    bool ok = false;
    if (authorization && !strncasecmp(authorization, "Bearer ", 7)) {
        const char *k = authorization + 7;
        while (*k == ' ') k++;
        ok |= key_matches(a, k);
    }
    if (x_api_key) ok |= key_matches(a, x_api_key);
    return ok;
}

srv_admin_check srv_auth_check_admin(const srv_auth *a, const char *x_admin_key)
{
    if (!a->admin_key) return SRV_ADMIN_DISABLED;
    if (!x_admin_key || !*x_admin_key) return SRV_ADMIN_MISSING;
    return srv_ct_equal(x_admin_key, strlen(x_admin_key), a->admin_key, strlen(a->admin_key))
               ? SRV_ADMIN_OK
               : SRV_ADMIN_WRONG;
}
