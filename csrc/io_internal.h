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
/* Sets the connection's deadline (loop time, ms; 0: none), when
 * io__conn_deadline is to run.  Returns 0, or -1 when out of memory (the
 * deadline is then not set). */
int io__timer_set(io_conn_t *c, uint64_t due);
/* A connection's deadline came (see io__timer_set). */
void io__conn_deadline(io_conn_t *c);
/* Links a new connection into its loop. */
void io__conn_list_add(io_conn_t *c);
/* The ws_conn event callback of every connection. */
void io__on_ws_event(void *ud, const ws_event_t *ev);
/* Sets up a connection's ws_conn in `role`, with io__on_ws_event and its
 * WS_EV_MARK events (on_input_done relies on them). */
void io__ws_init(io_conn_t *c, ws_role_t role);
/* Each connection holds a file descriptor: the first server or client
 * connection of a loop raises the soft limit on open files (often 1024)
 * to the hard limit, as Go's runtime does (failure changes nothing).
 * Returns the limit, 0 for none. */
uint64_t io__nofile_limit(io_loop_t *loop);
/* Frees a closed server once its listener and connections are gone. */
void io__server_free_if_done(io_server_t *s);

/* Queues the connection for the next flush. */
void io__conn_mark_dirty(io_conn_t *c);
/* The TCP handle's close callback (frees the connection). */
void io__conn_closed(uv_handle_t *h);
/* Client: parses the proxy's answer or the upgrade response. */
void io__client_input(io_conn_t *c, const uint8_t *data, size_t n);
/* Processes plaintext received (after TLS, if any). */
void io__conn_plaintext(io_conn_t *c, uint8_t *data, size_t n);
/* Client: frees the client state. */
void io__client_free(io_conn_t *c);
/* Client: cancels a pending resolution. */
void io__client_cancel(io_conn_t *c);

#endif
