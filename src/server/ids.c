/* ids.c - names that come from outside (request ids, agent ids) and names
 * we make (response and tool-call ids).
 *
 * A request id from X-Request-ID is echoed in headers and logs, so only a
 * conservative alphabet is accepted; anything else is replaced by a fresh
 * one. An agent id will become a cache file name, so it must be a single
 * safe path component: [A-Za-z0-9_.-]{1,128}, not starting with '.', which
 * rules out "", ".", "..", hidden files, separators and NUL.
 *
 * Generated ids hash a per-server random key with a counter (splitmix64):
 * unique within a server, unpredictable across servers.
 *
 * Thread: any.
 */
#include "server/srv_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static bool id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static bool id_chars_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > SRV_MAX_ID_BYTES) return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char((unsigned char)s[i])) return false;
    return true;
}

bool srv_request_id_valid(const char *s, size_t len) { return id_chars_valid(s, len); }

bool srv_agent_id_valid(const char *s, size_t len)
{
    return id_chars_valid(s, len) && s[0] != '.';
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void srv_idgen_init(srv_idgen *g, uint64_t key)
{
    g->key = key;
    atomic_init(&g->counter, 0);
}

uint64_t srv_idgen_u64(srv_idgen *g)
{
    uint64_t n = atomic_fetch_add_explicit(&g->counter, 1, memory_order_relaxed);
    return splitmix64(g->key ^ splitmix64(n));
}

void srv_idgen_str(srv_idgen *g, const char *prefix, char *out, size_t cap)
{
    uint64_t a = srv_idgen_u64(g), b = srv_idgen_u64(g);
    snprintf(out, cap, "%s%016" PRIx64 "%08" PRIx32, prefix, a, (uint32_t)(b >> 32));
}

uint64_t srv_random_seed(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = 0;
    return v ^ splitmix64(clk_now_ns() ^ clk_wall_ms());
}
