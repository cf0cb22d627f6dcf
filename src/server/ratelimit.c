/* ratelimit.c - token-bucket rate limits: one bucket for the whole server
 * (key "") or one per agent id.
 *
 * A bucket holds up to `burst` tokens and refills at `rps` tokens a second;
 * a request takes one. When the bucket is empty the caller answers 429
 * with Retry-After = the time until one token is back.
 *
 * Agents are tracked in a chained hash table bounded by max_keys; when it
 * is full the bucket touched longest ago is dropped (a dropped agent comes
 * back with a full bucket, which is what an idle agent would have anyway).
 *
 * Thread: any; one mutex guards the table and every bucket.
 */
#include "server/srv_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RL_N_HEADS 4096u /* power of two */

typedef struct rl_entry {
    struct rl_entry *next;
    double tokens;
    double last_s;
    char key[]; /* NUL-terminated */
} rl_entry;

struct srv_rl {
    double rps, burst;
    size_t max_keys, n_keys;
    pthread_mutex_t mu;  /* guards heads, n_keys and every entry */
    rl_entry *heads[RL_N_HEADS];
};

sem_status srv_rl_create(double rps, double burst, size_t max_keys, srv_rl **out, sem_err *err)
{
    if (!(rps >= 0) || !isfinite(rps) || !(burst >= 0) || !isfinite(burst))
        return sem_errf(err, SEM_EINVAL, "rate limit: rps and burst must be finite and >= 0");
    srv_rl *rl = sem_calloc(1, sizeof *rl);
    if (!rl) return sem_errf(err, SEM_ENOMEM, "rate limit: out of memory");
    rl->rps = rps;
    rl->burst = burst < 1 ? 1 : burst;
    rl->max_keys = max_keys ? max_keys : 1;
    pthread_mutex_init(&rl->mu, NULL);
    *out = rl;
    return SEM_OK;
}

void srv_rl_destroy(srv_rl *rl)
{
    if (!rl) return;
    for (size_t i = 0; i < RL_N_HEADS; i++) {
        for (rl_entry *e = rl->heads[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static uint32_t hash_key(const char *k)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 16777619u;
    return h & (RL_N_HEADS - 1);
}

/* Drops the entry touched longest ago. Called with mu held, table full. */
static void evict_stalest(srv_rl *rl)
{
    rl_entry **victim = NULL;
    for (size_t i = 0; i < RL_N_HEADS; i++)
        for (rl_entry **pp = &rl->heads[i]; *pp; pp = &(*pp)->next)
            if (!victim || (*pp)->last_s < (*victim)->last_s) victim = pp;
    if (!victim) return;
    rl_entry *e = *victim;
    *victim = e->next;
    free(e);
    rl->n_keys--;
}

static rl_entry *find_or_add(srv_rl *rl, const char *key, double now_s)
{
    uint32_t h = hash_key(key);
    for (rl_entry *e = rl->heads[h]; e; e = e->next)
        if (!strcmp(e->key, key)) return e;
    if (rl->n_keys >= rl->max_keys) evict_stalest(rl);
    size_t n = strlen(key) + 1;
    rl_entry *e = malloc(sizeof *e + n);
    if (!e) return NULL;
    memcpy(e->key, key, n);
    e->tokens = rl->burst;
    e->last_s = now_s;
    e->next = rl->heads[h];
    rl->heads[h] = e;
    rl->n_keys++;
    return e;
}

bool srv_rl_take(srv_rl *rl, const char *key, double now_s, double *retry_after_s)
{
    if (!rl || rl->rps <= 0) return true;
    pthread_mutex_lock(&rl->mu);
    rl_entry *e = find_or_add(rl, key ? key : "", now_s);
    bool ok = true;
    if (e) { /* on OOM the request is let through: a limiter must not fail closed on itself */
        double dt = now_s > e->last_s ? now_s - e->last_s : 0;
        e->tokens = fmin(rl->burst, e->tokens + dt * rl->rps);
        e->last_s = now_s;
        if (e->tokens >= 1) {
            e->tokens -= 1;
        } else {
            ok = false;
            if (retry_after_s) *retry_after_s = (1 - e->tokens) / rl->rps;
        }
    }
    pthread_mutex_unlock(&rl->mu);
    return ok;
}

size_t srv_rl_n_keys(srv_rl *rl)
{
    pthread_mutex_lock(&rl->mu);
    size_t n = rl->n_keys;
    pthread_mutex_unlock(&rl->mu);
    return n;
}
