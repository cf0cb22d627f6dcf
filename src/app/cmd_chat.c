/* cmd_chat.c - the `semantic chat` command (placeholder until it lands). */
#include "app/commands.h"

#include <stdio.h>

int app_cmd_chat(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "semantic %s: not implemented yet\n", argv[0]);
    return 1;
}
