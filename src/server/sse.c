/* sse.c - server-sent event framing (text/event-stream).
 *
 * An event is an optional "event: NAME" line, one "data: ..." line and a
 * blank line. The data is compact JSON, which never contains a newline, so
 * one data line always suffices. OpenAI streams use data-only events and
 * end with "data: [DONE]"; Anthropic streams name every event.
 *
 * Thread: any (pure formatting into the caller's buffer).
 */
#include "server/srv_int.h"

#include <string.h>

bool srv_sse_raw(buf *out, const char *event, const char *data)
{
    SEM_ASSERT(!strchr(data, '\n'));
    if (event && !buf_printf(out, "event: %s\n", event)) return false;
    return buf_append_str(out, "data: ") && buf_append_str(out, data) &&
           buf_append_str(out, "\n\n");
}

bool srv_sse_json(buf *out, const char *event, const json_t *data)
{
    if (event && !buf_printf(out, "event: %s\n", event)) return false;
    return buf_append_str(out, "data: ") && srv_json_append(out, data) &&
           buf_append_str(out, "\n\n");
}
