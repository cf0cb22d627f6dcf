/* test_crash.c - crash safety of agent cache files. A child process (this
 * executable re-run with SEM_CRASH_CHILD set) runs conversations for a few
 * agents with a cache directory, flushing after each turn and logging each
 * write it knows is durable. The parent SIGKILLs it at random moments, at
 * least 50 times, and after every kill starts an engine on the same
 * directory and checks:
 *   - no file that fails verification is ever loaded: every agent file
 *     either verifies completely (cache_file_open, CRC included) or is
 *     quarantined by the engine, which then treats it as a miss;
 *   - every write logged as durable is loadable, holding at least the
 *     logged tokens;
 *   - continuing an agent after the crash gives the same greedy tokens as
 *     a cold run.
 */
#include "engine/engine.h"

#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

enum { AGENTS = 3, KILLS = 50 };

static char model_path[512];

static void load_runtime(model **m, tp_pool **tp, kn_ctx **kc)
{
    sem_err err;
    assert_int_equal(model_load(model_path, m, &err), SEM_OK);
    assert_int_equal(tp_create(1, tp, &err), SEM_OK);
    kn_ctx_params kp = kn_ctx_default_params();
    kp.pool = *tp;
    kp.max_tokens = 512;
    kp.max_cols = model_max_matmul_cols(*m);
    assert_int_equal(kn_ctx_create(&kp, kc, &err), SEM_OK);
}

static eng_engine *start(model *m, kn_ctx *kc, const char *dir)
{
    eng_params p = eng_default_params();
    p.m = m;
    p.kc = kc;
    p.block_tokens = 16;
    p.kv_budget_bytes = 4u << 20;
    p.max_ctx = 1024;
    p.cache_dir = dir;
    p.model_id = "test/crash";
    p.fingerprint = "feedfacecafebeef";
    eng_engine *e;
    sem_err err;
    assert_int_equal(eng_start(&p, &e, &err), SEM_OK);
    return e;
}

static int32_t run_turn(eng_engine *e, const char *agent, const int32_t *prompt, size_t n, int32_t gen, int32_t *out)
{
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = gen;
    p.ignore_eos = true;
    p.agent_id = agent;
    eng_request *r;
    sem_err err;
    assert_int_equal(eng_submit(e, &p, &r, &err), SEM_OK);
    int32_t k = 0, cached = -1;
    for (;;) {
        eng_event *ev;
        assert_int_equal(eng_request_next(r, 60000, &ev), SEM_OK);
        bool done = ev->kind == ENG_EV_DONE;
        if (done) cached = ev->cached_tokens;
        else if (out) out[k++] = ev->token;
        eng_event_free(ev);
        if (done) break;
    }
    eng_request_release(r);
    return cached;
}

static void agent_prompt(int a, int32_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)((a * 7919 + (int)i * 104729) % 1000);
}

/* The child: grow each agent's conversation turn by turn, forever. */
static int child_main(const char *dir, const char *log_path)
{
    model *m;
    tp_pool *tp;
    kn_ctx *kc;
    load_runtime(&m, &tp, &kc);
    eng_engine *e = start(m, kc, dir);
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    int32_t prompt[900];
    for (int round = 1;; round++) {
        for (int a = 0; a < AGENTS; a++) {
            size_t n = (size_t)(20 + (round * 37 + a * 11) % 600);
            agent_prompt(a, prompt, n);
            char agent[32];
            snprintf(agent, sizeof agent, "agent%d", a);
            run_turn(e, agent, prompt, n, 4, NULL);
            sem_err err;
            if (eng_caches_flush(e, &err) == SEM_OK) {
                char line[64];
                int len = snprintf(line, sizeof line, "%s %zu\n", agent, n);
                if (write(fd, line, (size_t)len) != len) return 1;
                fsync(fd);
            }
        }
    }
}

static void test_sigkill_during_writes(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char log_path[600];
    snprintf(log_path, sizeof log_path, "%s/durable.log", dir);
    model *m;
    tp_pool *tp;
    kn_ctx *kc;
    load_runtime(&m, &tp, &kc);
    srand(12345);
    int loaded_total = 0, quarantined_total = 0;
    /* The cold answers, once: what every agent must say after a crash. */
    int32_t cold[AGENTS][4], prompt[900];
    const size_t len = 240; /* shares a prefix with every prompt the child wrote */
    eng_engine *c = start(m, kc, NULL);
    for (int a = 0; a < AGENTS; a++) {
        agent_prompt(a, prompt, len);
        run_turn(c, NULL, prompt, len, 4, cold[a]);
    }
    eng_stop(c);
    for (int kill_i = 0; kill_i < KILLS; kill_i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            setenv("SEM_CRASH_CHILD", dir, 1);
            execl("/proc/self/exe", "test_crash", (char *)NULL);
            _exit(127);
        }
        usleep((useconds_t)(20000 + rand() % 150000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* What the child knew was durable must be loadable. */
        size_t durable[AGENTS] = {0};
        FILE *lf = fopen(log_path, "r");
        char name[32];
        size_t n;
        while (lf && fscanf(lf, "%31s %zu", name, &n) == 2) durable[name[5] - '0'] = n;
        if (lf) fclose(lf);
        eng_engine *e = start(m, kc, dir);
        for (int a = 0; a < AGENTS; a++) {
            char agent[32];
            snprintf(agent, sizeof agent, "agent%d", a);
            int32_t got[4];
            agent_prompt(a, prompt, len);
            int32_t cached = run_turn(e, agent, prompt, len, 4, got);
            /* a durable write is never lost: a file (that one or a newer
             * complete one) verifies and is reused */
            if (durable[a] && cached <= 0) fail_msg("kill %d: agent%d had a durable write but nothing loaded", kill_i, a);
            loaded_total += cached > 0;
            assert_memory_equal(got, cold[a], sizeof got);
        }
        quarantined_total += (int)eng_cache_stats(e).quarantined;
        eng_stop(e);
    }
    printf("%d kills: %d agent loads from files after a crash, %d files quarantined\n", KILLS, loaded_total,
           quarantined_total);
    assert_true(loaded_total > 0);
    kn_ctx_destroy(kc);
    tp_destroy(tp);
    model_destroy(m);
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    snprintf(model_path, sizeof model_path, "%s/models/engine-llama-q4", tu_build_dir());
    const char *child = getenv("SEM_CRASH_CHILD");
    if (child) {
        char log_path[600];
        snprintf(log_path, sizeof log_path, "%s/durable.log", child);
        return child_main(child, log_path);
    }
    char *out = NULL;
    int rc = tu_run(&out, "/usr/bin/python3 %s/tools/gen_model.py --shape tiny --dtype q4 --arch llama "
                          "--layers 2 --seed 11 --if-missing --quiet --out %s",
                    tu_source_dir(), model_path);
    free(out);
    if (rc) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sigkill_during_writes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
