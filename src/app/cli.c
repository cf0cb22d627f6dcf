/* cli.c - subcommand dispatch for the `semantic` binary. */
#include "app/app.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: semantic <command> [options]\n"
               "commands:\n"
               "  --help         this text\n");
}

int app_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "semantic: unknown command '%s' (see semantic --help)\n", argv[1]);
    return 2;
}
