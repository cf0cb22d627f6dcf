/* cli.c - the `semantic` command line: a table of subcommands, --help and
 * dispatch. Each command lives in its own cmd_<name>.c. */
#include "app/app.h"
#include "app/commands.h"

#include <stdio.h>
#include <string.h>

static const app_command commands[] = {
    {"serve", "serve the OpenAI and Anthropic APIs over HTTP (serve --help)", app_cmd_serve},
    {"generate", "run the model on token ids or a prompt and print the output", app_cmd_generate},
    {"chat", "interactive chat with a model's own chat template", app_cmd_chat},
    {"tokenize", "print the token ids of a text", app_cmd_tokenize},
    {"model", "inspect a model directory (model inspect DIR)", app_cmd_model},
    {"perplexity", "perplexity of a model over a text, at KV 16/8/4 bits (perplexity --help)", app_cmd_perplexity},
    {"bench", "benchmarks that print figures (bench --help)", app_cmd_bench},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: semantic <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'semantic <command> --help' for a command's options.\n");
}

int app_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "semantic: unknown command '%s' (see semantic --help)\n", argv[1]);
    return 2;
}
