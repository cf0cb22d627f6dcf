/* app.h - the door of the app room: the command-line entry point. app/
 * builds the process-wide root (logger, CPU features, compute pool) and
 * passes it down; nothing below app/ holds global state. */
#ifndef SEM_APP_H
#define SEM_APP_H

int app_main(int argc, char **argv);

#endif
