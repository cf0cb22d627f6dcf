/* request.c - the request handle shared by a submitter (e.g. an HTTP
 * thread) and the engine thread: copied parameters, an event queue, a
 * cancel flag and a reference count.
 *
 * Lifetime: eng_submit creates it with two references; the submitter drops
 * its own with eng_request_release, the engine drops its own after the
 * DONE event. on_event is cleared under `mu` at release, so the engine
 * never calls back into a connection that is gone.
 *
 * Thread: any, as each function says.
 */
#include "engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const finish_names[] = {"none", "stop", "length", "cancelled", "error", "timeout"};

const char *eng_finish_name(eng_finish f)
{
    return (unsigned)f < sizeof finish_names / sizeof finish_names[0] ? finish_names[f] : "?";
}

eng_request_params eng_request_default_params(void)
{
    return (eng_request_params){
        .max_tokens = 256,
        .sampling = eng_sampling_greedy(),
        .seed = 0,
        .repetition_penalty = 1.0f,
    };
}

void eng_event_free(eng_event *ev)
{
    if (!ev) return;
    free(ev->text);
    free(ev->stop_string);
    free(ev);
}

eng_event *eng_event_done(eng_finish f, sem_status st, const char *msg)
{
    eng_event *ev = calloc(1, sizeof *ev);
    if (!ev) return NULL;
    ev->kind = ENG_EV_DONE;
    ev->finish = f;
    ev->status = st;
    if (msg) snprintf(ev->message, sizeof ev->message, "%s", msg);
    return ev;
}

static void request_free(eng_request *r)
{
    void *ev;
    while (chan_try_pop(r->events, &ev)) eng_event_free(ev);
    chan_destroy(r->events);
    for (size_t i = 0; i < r->p.n_stop; i++) free(r->stops[i]);
    free(r->stops);
    free(r->prompt);
    free(r->forced);
    free(r->agent_id);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void eng_request_unref(eng_request *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1) request_free(r);
}

/* Copies the borrowed arrays of p into r. */
static bool copy_params(eng_request *r, const eng_request_params *p)
{
    r->p = *p;
    r->prompt = malloc(p->n_prompt * sizeof *r->prompt);
    r->stops = calloc(p->n_stop ? p->n_stop : 1, sizeof *r->stops);
    r->forced = malloc((p->n_forced ? p->n_forced : 1) * sizeof *r->forced);
    if (!r->prompt || !r->stops || !r->forced) return false;
    memcpy(r->prompt, p->prompt, p->n_prompt * sizeof *r->prompt);
    if (p->n_forced) memcpy(r->forced, p->forced, p->n_forced * sizeof *r->forced);
    for (size_t i = 0; i < p->n_stop; i++)
        if (!(r->stops[i] = sem_strdup(p->stop[i]))) return false;
    if (p->agent_id && !(r->agent_id = sem_strdup(p->agent_id))) return false;
    r->p.agent_id = r->agent_id;
    r->p.prompt = r->prompt;
    r->p.stop = (const char *const *)r->stops;
    r->p.forced = r->forced;
    return true;
}

eng_request *eng_request_new(const eng_request_params *p, uint64_t id)
{
    eng_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    atomic_init(&r->refs, 2);
    atomic_init(&r->cancel, false);
    pthread_mutex_init(&r->mu, NULL);
    r->events = chan_create();
    r->on_event = p->on_event;
    r->on_event_ctx = p->on_event_ctx;
    r->submit_ns = clk_now_ns();
    r->id = id;
    if (!r->events || !copy_params(r, p)) {
        r->p.n_stop = p->n_stop;
        request_free(r);
        return NULL;
    }
    return r;
}

void eng_request_emit(eng_request *r, eng_event *ev)
{
    if (!ev || !chan_push(r->events, ev)) {
        eng_event_free(ev);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (r->on_event) r->on_event(r->on_event_ctx);
    pthread_mutex_unlock(&r->mu);
}

sem_status eng_request_next(eng_request *r, int64_t timeout_ms, eng_event **ev)
{
    void *item;
    sem_status s = chan_pop(r->events, timeout_ms, &item);
    if (s == SEM_OK) *ev = item;
    return s == SEM_OK ? SEM_OK : SEM_ETIMEDOUT;
}

void eng_request_cancel(eng_request *r) { atomic_store(&r->cancel, true); }

void eng_request_release(eng_request *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->on_event = NULL;
    r->on_event_ctx = NULL;
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->cancel, true);
    eng_request_unref(r);
}
