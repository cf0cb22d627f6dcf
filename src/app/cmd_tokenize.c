/* cmd_tokenize.c - the `semantic tokenize` command (placeholder until it lands). */
#include "app/commands.h"

#include <stdio.h>

int app_cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "semantic %s: not implemented yet\n", argv[0]);
    return 1;
}
