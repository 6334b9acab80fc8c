/*
 * Internal functions shared by the io_*.c files (double underscore: not
 * for the layers above).
 */
#ifndef UVWS_IO_INTERNAL_H
#define UVWS_IO_INTERNAL_H

#include "io.h"

/* Processes pending input, then writes what `out` holds. */
void io__conn_flush(io_conn_t *c);
/* Starts reading unless paused or waiting for the layer above. */
void io__conn_start(io_conn_t *c);
/* Arms the connection timer for its earliest deadline. */
void io__conn_arm(io_conn_t *c);
/* Links a new connection into its loop. */
void io__conn_list_add(io_conn_t *c);
/* The ws_conn event callback of every connection. */
void io__on_ws_event(void *ud, const ws_event_t *ev);
/* Frees a closed server once its listener and connections are gone. */
void io__server_free_if_done(io_server_t *s);

#endif
