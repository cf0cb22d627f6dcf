/* cmd_model.c - `semantic model inspect DIR`: the spec, the weight
 * formats, the parameter count and the bytes of a model directory. */
#include "app/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: semantic model inspect DIR\n\n"
               "Loads the model directory (config.json + safetensors), validates every\n"
               "tensor, and prints the spec, the weight formats, the parameter count and\n"
               "the bytes. Exits 1 with a message naming the file and the problem if the\n"
               "directory is malformed.\n");
}

int app_cmd_model(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "inspect") != 0) {
        usage(stderr);
        return 2;
    }
    sem_err err;
    model *m;
    if (model_load(argv[2], &m, &err) != SEM_OK) {
        fprintf(stderr, "semantic model inspect: %s\n", err.msg);
        return 1;
    }
    model_describe(m, stdout);
    model_destroy(m);
    return 0;
}
