/* test_safetensors.c - the safetensors reader, writer and shard sets:
 * round trips, and a malformed-input table where every case must fail with
 * a specific status and a message naming the file, never crash. */
#include "formats/formats.h"

#include "test_util.h"

#include <fcntl.h>
#include <sys/stat.h>

static char *tmp_dir;

static int setup(void **state)
{
    (void)state;
    tmp_dir = tu_tmpdir();
    return tmp_dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(tmp_dir);
    free(tmp_dir);
    return 0;
}

static void write_raw(const char *path, const char *header, size_t hlen_field, size_t data_bytes)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hlen_field >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_bytes; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}

static void write_valid(const char *path)
{
    sem_err err;
    st_writer *w;
    assert_int_equal(st_writer_create(path, &w, &err), SEM_OK);
    uint64_t s1[2] = {2, 3}, s2[1] = {4};
    assert_int_equal(st_writer_declare(w, "a.weight", ST_F32, 2, s1, &err), SEM_OK);
    assert_int_equal(st_writer_declare(w, "b", ST_U32, 1, s2, &err), SEM_OK);
    assert_int_equal(st_writer_declare(w, "a.weight", ST_F32, 2, s1, &err), SEM_EINVAL);
    assert_int_equal(st_writer_set_metadata(w, "format", "mlx", &err), SEM_OK);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint32_t b[4] = {7, 8, 9, 0xdeadbeef};
    assert_int_equal(st_writer_write(w, a, sizeof a, &err), SEM_OK);
    assert_int_equal(st_writer_write(w, b, sizeof b, &err), SEM_OK);
    assert_int_equal(st_writer_write(w, b, 1, &err), SEM_EINVAL); /* past declared */
    assert_int_equal(st_writer_finish(w, &err), SEM_OK);
    st_writer_destroy(w);
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmp_dir);
    write_valid(path);
    sem_err err;
    st_file *f;
    assert_int_equal(st_open(path, &f, &err), SEM_OK);
    assert_int_equal(st_file_n_tensors(f), 2);
    const st_tensor *t = st_file_find(f, "a.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[1], 3);
    float v;
    memcpy(&v, (const char *)t->data + 5 * 4, 4);
    assert_true(v == 6.0f);
    t = st_file_find(f, "b");
    uint32_t u;
    memcpy(&u, (const char *)t->data + 12, 4);
    assert_int_equal(u, 0xdeadbeef);
    assert_true(t->offset % 8 == 0 || t->offset % 4 == 0);
    assert_string_equal(st_file_metadata(f, "format"), "mlx");
    assert_null(st_file_metadata(f, "nope"));
    assert_null(st_file_find(f, "c"));
    st_close(f);
}

static void test_unfinished_writer_leaves_nothing(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/partial.safetensors", tmp_dir);
    sem_err err;
    st_writer *w;
    assert_int_equal(st_writer_create(path, &w, &err), SEM_OK);
    uint64_t s[1] = {4};
    assert_int_equal(st_writer_declare(w, "x", ST_F32, 1, s, &err), SEM_OK);
    assert_int_equal(st_writer_write(w, "abcd", 4, &err), SEM_OK);
    assert_int_equal(st_writer_finish(w, &err), SEM_EINVAL); /* 4 of 16 bytes */
    st_writer_destroy(w);
    assert_false(fs_exists(path));
    char *out;
    assert_int_equal(tu_run(&out, "ls %s | grep -c tmp || true", tmp_dir), 0);
    assert_int_equal(atoi(out), 0);
    free(out);
}

typedef struct bad_case {
    const char *what;
    const char *header;
    long hlen_delta; /* added to strlen(header) in the length field */
    size_t data_bytes;
    sem_status want;
} bad_case;

static const bad_case bad_cases[] = {
    {"valid baseline", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, SEM_OK},
    {"header lies about offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 8, SEM_ECORRUPT},
    {"overlapping tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 12, SEM_ECORRUPT},
    {"unknown dtype", "{\"t\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, SEM_EUNSUPPORTED},
    {"shape x dtype != bytes", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 12, SEM_ECORRUPT},
    {"begin > end", "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 0, 8, SEM_ECORRUPT},
    {"negative dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8, SEM_ECORRUPT},
    {"huge dims overflow", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 0, 8, SEM_ECORRUPT},
    {"offsets not integers", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 0, 8, SEM_ECORRUPT},
    {"missing dtype", "{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, SEM_ECORRUPT},
    {"duplicate key", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, SEM_ECORRUPT},
    {"header not an object", "[1,2,3]", 0, 0, SEM_ECORRUPT},
    {"invalid JSON", "{\"t\":", 0, 0, SEM_ECORRUPT},
    {"metadata not an object", "{\"__metadata__\":[1]}", 0, 0, SEM_ECORRUPT},
    {"header length past EOF", "{}", 100, 0, SEM_ECORRUPT},
    {"header length huge", "{}", 1L << 40, 0, SEM_ECORRUPT},
    {"too many dims", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 0, 1, SEM_ECORRUPT},
    {"entry not an object", "{\"t\":5}", 0, 0, SEM_ECORRUPT},
};

static void test_malformed_table(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp_dir);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        write_raw(path, c->header, (size_t)((long)strlen(c->header) + c->hlen_delta), c->data_bytes);
        sem_err err;
        sem_err_clear(&err);
        st_file *f = NULL;
        sem_status s = st_open(path, &f, &err);
        if (s != c->want) fail_msg("case '%s': got %s (%s), want %s", c->what, sem_status_name(s), err.msg, sem_status_name(c->want));
        if (s == SEM_OK) {
            st_close(f);
        } else {
            assert_non_null(strstr(err.msg, "bad.safetensors")); /* names the file */
        }
    }
}

/* Truncating a valid file at every byte must fail cleanly (or, for a cut
 * inside trailing padding that leaves every tensor whole, still succeed). */
static void test_truncation_every_byte(void **state)
{
    (void)state;
    char path[512], cut[512];
    snprintf(path, sizeof path, "%s/full.safetensors", tmp_dir);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", tmp_dir);
    write_valid(path);
    char *data;
    size_t len;
    sem_err err;
    assert_int_equal(fs_read_file(path, 1 << 20, &data, &len, &err), SEM_OK);
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(fs_write_atomic(cut, data, n, &err), SEM_OK);
        st_file *f = NULL;
        sem_status s = st_open(cut, &f, &err);
        if (s == SEM_OK) fail_msg("truncated at %zu of %zu bytes but opened", n, len);
        assert_true(s == SEM_ECORRUPT);
    }
    free(data);
}

static void write_shard(const char *dir, const char *file, const char *tensor)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char header[256];
    snprintf(header, sizeof header, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", tensor);
    write_raw(path, header, strlen(header), 8);
}

static void write_text(const char *dir, const char *file, const char *text)
{
    char path[512];
    sem_err err;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    assert_int_equal(fs_write_atomic(path, text, strlen(text), &err), SEM_OK);
}

static void test_sharded_sets(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmp_dir);
    sem_err err;
    assert_int_equal(fs_mkdirs(dir, &err), SEM_OK);
    write_shard(dir, "model-00001-of-00002.safetensors", "x");
    write_shard(dir, "model-00002-of-00002.safetensors", "y");
    write_text(dir, "model.safetensors.index.json",
               "{\"metadata\":{},\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\","
               "\"y\":\"model-00002-of-00002.safetensors\"}}");
    st_set *s;
    assert_int_equal(st_set_open_dir(dir, &s, &err), SEM_OK);
    assert_int_equal(st_set_n_files(s), 2);
    assert_int_equal(st_set_n_tensors(s), 2);
    assert_non_null(st_set_find(s, "y"));
    assert_null(st_set_find(s, "z"));
    st_set_close(s);

    /* the index lies about where a tensor is */
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\":{\"x\":\"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_set_open_dir(dir, &s, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "'x'"));
    /* the index names a shard that is missing */
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\":{\"x\":\"nope.safetensors\"}}");
    assert_int_equal(st_set_open_dir(dir, &s, &err), SEM_ENOTFOUND);
    /* the index escapes the directory */
    write_text(dir, "model.safetensors.index.json", "{\"weight_map\":{\"x\":\"../x.safetensors\"}}");
    assert_int_equal(st_set_open_dir(dir, &s, &err), SEM_ECORRUPT);
    /* no index: every *.safetensors; duplicate names across files fail */
    char idx[600];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    unlink(idx);
    write_shard(dir, "extra.safetensors", "x");
    assert_int_equal(st_set_open_dir(dir, &s, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "appears in both"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_unfinished_writer_leaves_nothing),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_truncation_every_byte),
        cmocka_unit_test(test_sharded_sets),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
