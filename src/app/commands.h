/* commands.h - one entry point per `semantic` subcommand. Each lives in
 * src/app/cmd_<name>.c, parses its own flags, prints --help, and returns
 * the process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef SEM_APP_COMMANDS_H
#define SEM_APP_COMMANDS_H

typedef int (*app_cmd_fn)(int argc, char **argv); /* argv[0] is the command name */

typedef struct app_command {
    const char *name;
    const char *summary;
    app_cmd_fn run;
} app_command;

/* The table in cli.c; add one row per command. */
int app_cmd_generate(int argc, char **argv);
int app_cmd_model(int argc, char **argv);
int app_cmd_bench(int argc, char **argv);
int app_cmd_tokenize(int argc, char **argv);
int app_cmd_chat(int argc, char **argv);
int app_cmd_serve(int argc, char **argv);
int app_cmd_perplexity(int argc, char **argv);

#endif
