/* cmd_chat.c - `semantic chat --model DIR`: an interactive chat in the
 * terminal with the model's own chat template. Each turn renders the whole
 * conversation, and the engine reuses the previous turn's KV through the
 * agent cache (agent "chat"), so only the new tokens are prefilled. */
#include "app/commands.h"
#include "app/runtime.h"
#include "swap/swap.h"

#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: semantic chat --model DIR [options]\n\n"
               "Interactive chat with the model's chat template. Type a message and press\n"
               "Enter; an empty line or Ctrl-D quits; /reset starts a new conversation.\n\n"
               "  --model DIR        model directory or id (required)\n"
               "  --system TEXT      a system message\n"
               "  -n, --max-tokens N tokens per reply (default 256)\n"
               "  --temperature T    0 = greedy (default 0.7)\n"
               "  --top-p P          nucleus sampling (default 0.95)\n"
               "  --seed S           sampling seed (default 42)\n"
               "  --threads N        compute threads (default: one per core)\n");
}

typedef struct chat_opts {
    const char *model;
    const char *system;
    long max_tokens, threads;
    double temperature, top_p;
    long seed;
} chat_opts;

static int parse(int argc, char **argv, chat_opts *o)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},      {"system", required_argument, 0, 's'},
        {"max-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 'T'},
        {"top-p", required_argument, 0, 'p'},      {"seed", required_argument, 0, 'S'},
        {"threads", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (chat_opts){.max_tokens = 256, .temperature = 0.7, .top_p = 0.95, .seed = 42};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 's': o->system = optarg; break;
        case 'n': ok = app_parse_long(optarg, 1, 1 << 20, &o->max_tokens); break;
        case 'T': ok = app_parse_float(optarg, 0, 100, &o->temperature); break;
        case 'p': ok = app_parse_float(optarg, 0, 1, &o->top_p); break;
        case 'S': ok = app_parse_long(optarg, 0, 1L << 62, &o->seed); break;
        case 'j': ok = app_parse_long(optarg, 1, 256, &o->threads); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) return fprintf(stderr, "semantic chat: bad value '%s'\n", optarg), 2;
    }
    if (!o->model) return fprintf(stderr, "semantic chat: --model is required (see --help)\n"), 2;
    return -1;
}

/* Runs one assistant turn; appends the reply to messages and prints it. */
static sem_status reply(const swap_bundle *b, const chat_opts *o, json_t *messages, sem_err *err)
{
    char *text;
    size_t len;
    sem_status st = tok_chat_render(b->chat, messages, NULL, true, &text, &len, err);
    if (st) return st;
    tok_ids ids;
    tok_ids_init(&ids);
    st = tok_encode(b->tok, NULL, text, len, false, &ids, err);
    free(text);
    eng_request_params p = eng_request_default_params();
    p.prompt = ids.data;
    p.n_prompt = ids.len;
    p.max_tokens = (int32_t)o->max_tokens;
    p.sampling.temperature = (float)o->temperature;
    p.sampling.top_p = (float)o->top_p;
    p.seed = (uint64_t)o->seed;
    p.agent_id = "chat";
    eng_request *r = NULL;
    if (!st) st = eng_submit(b->eng, &p, &r, err);
    tok_ids_fini(&ids);
    if (st) return st;
    buf out;
    buf_init(&out);
    for (bool done = false; !done;) {
        eng_event *ev;
        if (eng_request_next(r, -1, &ev) != SEM_OK) break;
        done = ev->kind == ENG_EV_DONE;
        if (ev->text_len) {
            fwrite(ev->text, 1, ev->text_len, stdout);
            fflush(stdout);
            buf_append(&out, ev->text, ev->text_len);
        }
        if (done && ev->finish == ENG_FINISH_ERROR) st = sem_errf(err, ev->status, "%s", ev->message);
        eng_event_free(ev);
    }
    eng_request_release(r);
    printf("\n");
    json_array_append_new(messages, json_pack("{s:s,s:s%}", "role", "assistant", "content", out.data ? out.data : "", out.len));
    buf_fini(&out);
    return st;
}

static json_t *new_conversation(const chat_opts *o)
{
    json_t *m = json_array();
    if (o->system) json_array_append_new(m, json_pack("{s:s,s:s}", "role", "system", "content", o->system));
    return m;
}

int app_cmd_chat(int argc, char **argv)
{
    chat_opts o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    sem_err err;
    tp_pool *pool = NULL;
    swap_mgr *sm = NULL;
    sem_logger *lg = sem_logger_create(stderr, SEM_LOG_WARN);
    swap_params sp = {.pool = NULL, .lg = lg, .engine = eng_default_params()};
    sem_status st = tp_create((int)o.threads, &pool, &err);
    sp.pool = pool;
    if (!st) st = swap_create(&sp, o.model, &sm, &err);
    const swap_bundle *b = NULL;
    if (!st) st = swap_acquire(sm, -1, &b, &err);
    if (!st && !b->chat) st = sem_errf(&err, SEM_EUNSUPPORTED, "%s has no chat template", o.model);
    json_t *messages = new_conversation(&o);
    char line[8192];
    while (!st) {
        printf("> ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin) || line[0] == '\n') break;
        line[strcspn(line, "\n")] = '\0';
        if (!strcmp(line, "/reset")) {
            json_decref(messages);
            messages = new_conversation(&o);
            continue;
        }
        json_array_append_new(messages, json_pack("{s:s,s:s}", "role", "user", "content", line));
        st = reply(b, &o, messages, &err);
    }
    json_decref(messages);
    if (b) swap_release(sm, b);
    swap_destroy(sm);
    tp_destroy(pool);
    sem_logger_destroy(lg);
    if (st) fprintf(stderr, "semantic chat: %s\n", err.msg);
    return st ? 1 : 0;
}
