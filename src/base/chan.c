/* chan.c - an unbounded MPMC queue of pointers (mutex + condvar) with
 * timed pop and close. The threads of Semantic talk only through these.
 */
#include "base.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct chan_node {
    struct chan_node *next;
    void *item;
} chan_node;

struct chan {
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    chan_node *head, *tail;
    size_t len;
    bool closed;
};

chan *chan_create(void)
{
    chan *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    return c;
}

void chan_destroy(chan *c)
{
    if (!c) return;
    chan_node *n = c->head;
    while (n) {
        chan_node *next = n->next;
        free(n);
        n = next;
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

bool chan_push(chan *c, void *item)
{
    chan_node *n = malloc(sizeof *n);
    if (!n) return false;
    n->next = NULL;
    n->item = item;
    pthread_mutex_lock(&c->mu);
    if (c->closed) {
        pthread_mutex_unlock(&c->mu);
        free(n);
        return false;
    }
    if (c->tail) c->tail->next = n;
    else c->head = n;
    c->tail = n;
    c->len++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return true;
}

static void *pop_locked(chan *c)
{
    chan_node *n = c->head;
    c->head = n->next;
    if (!c->head) c->tail = NULL;
    c->len--;
    void *item = n->item;
    free(n);
    return item;
}

sem_status chan_pop(chan *c, int64_t timeout_ms, void **out)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ms > 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (timeout_ms % 1000) * 1000000;
        if (dl.tv_nsec >= 1000000000) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&c->mu);
    while (!c->head && !c->closed) {
        if (timeout_ms == 0) break;
        if (timeout_ms < 0) pthread_cond_wait(&c->cv, &c->mu);
        else if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT) break;
    }
    sem_status s;
    if (c->head) {
        *out = pop_locked(c);
        s = SEM_OK;
    } else {
        s = c->closed ? SEM_ECANCELED : SEM_ETIMEDOUT;
    }
    pthread_mutex_unlock(&c->mu);
    return s;
}

bool chan_try_pop(chan *c, void **out) { return chan_pop(c, 0, out) == SEM_OK; }

void chan_close(chan *c)
{
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

size_t chan_len(chan *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->len;
    pthread_mutex_unlock(&c->mu);
    return n;
}
