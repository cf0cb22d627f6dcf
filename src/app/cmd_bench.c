/* cmd_bench.c - the `semantic bench` command (placeholder until it lands). */
#include "app/commands.h"

#include <stdio.h>

int app_cmd_bench(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "semantic %s: not implemented yet\n", argv[0]);
    return 1;
}
