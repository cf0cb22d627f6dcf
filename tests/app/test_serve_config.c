/* test_serve_config.c - `semantic serve` settings (app/serve_config.c):
 * flags beat SEMANTIC_* variables, which beat defaults; bad values name
 * their source; secrets come from the environment only; and the README's
 * Configuration section documents every variable. */
#include "app/serve_config.h"

#include "test_util.h"

/* A fake environment: NAME=VALUE pairs. */
static const char *const *fake_env;

static const char *env_lookup(const char *name)
{
    size_t n = strlen(name);
    for (const char *const *p = fake_env; p && *p; p++)
        if (!strncmp(*p, name, n) && (*p)[n] == '=') return *p + n + 1;
    return NULL;
}

static sem_status resolve(char **argv, int argc, const char *const *env, app_serve_config *c,
                          sem_err *err)
{
    fake_env = env;
    bool help;
    return app_serve_config_resolve(argc, argv, env_lookup, c, &help, err);
}

static void test_precedence(void **state)
{
    (void)state;
    app_serve_config c;
    sem_err err;
    char *argv[] = {"serve", "--model", "/m", "--port=9001", "--test-hooks", "--rate-limit-rps", "2.5"};
    const char *const env[] = {"SEMANTIC_PORT=7000", "SEMANTIC_HOST=0.0.0.0", "SEMANTIC_MAX_BATCH=3",
                               "SEMANTIC_API_KEYS=k1,k2", NULL};
    assert_int_equal(resolve(argv, 7, env, &c, &err), SEM_OK);
    assert_string_equal(c.model, "/m");
    assert_int_equal(c.port, 9001);              /* flag beats env */
    assert_string_equal(c.host, "0.0.0.0");      /* env beats default */
    assert_int_equal(c.max_batch, 3);
    assert_int_equal(c.http_threads, 4);         /* default */
    assert_int_equal(c.max_body_bytes, 4194304);
    assert_true(c.test_hooks);
    assert_true(c.rate_limit_rps == 2.5);
    assert_string_equal(c.api_keys, "k1,k2");
    assert_string_equal(c.log_level, "info");
    assert_int_equal(c.block_tokens, 256);
    assert_string_equal(c.cache_compat, "model");
    assert_null(c.cache_dir);                    /* the XDG default is resolved at startup */
    char *a3[] = {"serve", "--model", "org/a", "--models-dir", "/srv/models", "--cache-dir=none",
                  "--cache-compat", "dims", "--test-hooks", "--test-fail-load-id", "org/b"};
    const char *const e3[] = {"SEMANTIC_CACHE_DISK_MB=512", "SEMANTIC_BLOCK_TOKENS=64", NULL};
    assert_int_equal(resolve(a3, 11, e3, &c, &err), SEM_OK);
    assert_string_equal(c.models_dir, "/srv/models");
    assert_string_equal(c.cache_dir, "none");
    assert_string_equal(c.cache_compat, "dims");
    assert_string_equal(c.test_fail_load_id, "org/b");
    assert_int_equal(c.cache_disk_mb, 512);
    assert_int_equal(c.block_tokens, 64);
    char *argv2[] = {"serve"};
    const char *const env2[] = {"SEMANTIC_MODEL=/env/model", "SEMANTIC_TEST_HOOKS=yes", NULL};
    assert_int_equal(resolve(argv2, 1, env2, &c, &err), SEM_OK);
    assert_string_equal(c.model, "/env/model");
    assert_true(c.test_hooks);
}

static void test_errors(void **state)
{
    (void)state;
    app_serve_config c;
    sem_err err;
    char *a1[] = {"serve"};
    assert_int_equal(resolve(a1, 1, NULL, &c, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "--model"));
    char *a2[] = {"serve", "--model", "/m", "--port", "70000"};
    assert_int_equal(resolve(a2, 5, NULL, &c, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "--port"));
    char *a3[] = {"serve", "--model", "/m"};
    const char *const e3[] = {"SEMANTIC_HTTP_THREADS=many", NULL};
    assert_int_equal(resolve(a3, 3, e3, &c, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "SEMANTIC_HTTP_THREADS"));
    char *a4[] = {"serve", "--model", "/m", "--api-keys", "k"}; /* secrets: env only */
    assert_int_equal(resolve(a4, 5, NULL, &c, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "unknown option"));
    char *a5[] = {"serve", "--model"};
    assert_int_equal(resolve(a5, 2, NULL, &c, &err), SEM_EINVAL);
    char *a6[] = {"serve", "--model", "/m", "--kv-bits", "5"};
    assert_int_equal(resolve(a6, 5, NULL, &c, &err), SEM_EINVAL);
    char *a7[] = {"serve", "--model", "/m", "--log-level", "loud"};
    assert_int_equal(resolve(a7, 5, NULL, &c, &err), SEM_EINVAL);
    const char *const e8[] = {"SEMANTIC_TEST_HOOKS=maybe", NULL};
    assert_int_equal(resolve(a3, 3, e8, &c, &err), SEM_EINVAL);
    char *a10[] = {"serve", "--model", "/m", "--cache-compat", "weights"};
    assert_int_equal(resolve(a10, 5, NULL, &c, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "--cache-compat"));
    char *a11[] = {"serve", "--model", "/m", "--test-fail-load-id", "org/x"}; /* a hook without --test-hooks */
    assert_int_equal(resolve(a11, 5, NULL, &c, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "--test-hooks"));
    char *a12[] = {"serve", "--model", "/m", "--block-tokens", "8"};
    assert_int_equal(resolve(a12, 5, NULL, &c, &err), SEM_EINVAL);
    bool help = false;
    char *a9[] = {"serve", "--help"};
    assert_int_equal(app_serve_config_resolve(2, a9, env_lookup, &c, &help, &err), SEM_OK);
    assert_true(help);
}

/* Every SEMANTIC_* setting appears in the README's Configuration section. */
static void test_readme_documents_every_setting(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/README.md", tu_source_dir());
    char *text = NULL;
    size_t len = 0;
    sem_err err;
    assert_int_equal(fs_read_file(path, 1 << 20, &text, &len, &err), SEM_OK);
    char *sec = strstr(text, "\n## Configuration");
    assert_non_null(sec);
    char *end = strstr(sec + 3, "\n## ");
    if (end) *end = '\0';
    for (size_t i = 0; app_serve_config_env_name(i); i++) {
        if (!strstr(sec, app_serve_config_env_name(i))) {
            fprintf(stderr, "README.md ## Configuration does not mention %s\n", app_serve_config_env_name(i));
            fail();
        }
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_readme_documents_every_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
