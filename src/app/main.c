/* main.c - the `semantic` command line: parses the subcommand and hands off
 * to app/. Placeholder until the engine lands.
 */
#include "app/app.h"

int main(int argc, char **argv) { return app_main(argc, argv); }
