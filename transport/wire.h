/* wire.h - framing of the messages between coordinator and expert ranks.
 *
 * A frame is one transport message:
 *   "SPX" 0x01 | u32 LE header length | spex.Header (protobuf, proto/spex.proto) | payload
 * wire_pack() fills in the version, payload length and XXH32 checksum;
 * wire_unpack() refuses anything that is not exactly such a frame: bad magic,
 * a header length past the end, a header protobuf-c cannot parse, another
 * protocol version, a missing body, a payload whose length or checksum differs
 * from the header. Its messages name the rank the frame came from, so a
 * corrupt or incompatible peer is reported as "rank 3: ...", never a crash. */
#ifndef SPEX_WIRE_H
#define SPEX_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "spex.pb-c.h"
#include "transport/link.h"

#define SPEX_PROTO_VERSION 2   /* 2: payload length and checksum are fixed-size fields */
#define WIRE_PREFIX 8                     /* magic + header length */
#define WIRE_MAX_HEADER (64u << 20)       /* sanity bound for the protobuf header */

typedef Spex__Header wire_header_t;

/* out = malloc'ed frame of h (version, payload_bytes and checksum are set on
 * a copy) followed by payload[0 .. plen). */
int wire_pack(const wire_header_t *h, const uint8_t *payload, size_t plen, uint8_t **out, size_t *out_len,
              spex_err_t *err);

/* A frame built in place: wire_begin() sizes the header (h with its payload
 * fields present) and returns where up to `cap` payload bytes go, so a codec
 * encodes straight into the frame; wire_end() writes the header for the
 * actual `plen` bytes in front of them and hands over the frame (malloc'ed,
 * starting at *frame). Fields of h changed between the two calls must keep
 * their presence (a zero-valued scalar is omitted); if the header's size
 * still changes, wire_end moves the payload (correct, just not copy-free). */
typedef struct wire_out {
    uint8_t *buf;
    size_t hl, cap;   /* header bytes reserved, payload capacity */
} wire_out_t;
uint8_t *wire_begin(wire_out_t *o, const wire_header_t *h, size_t cap, spex_err_t *err);
int wire_end(wire_out_t *o, const wire_header_t *h, size_t plen, uint8_t **frame, size_t *frame_len, spex_err_t *err);
/* Free a wire_out whose frame was not taken (an error between begin and end). */
void wire_out_free(wire_out_t *o);

/* wire_pack() and link->send() to `rank`: the one way either side puts a
 * message on a link. *frame_len (if not NULL) = the bytes sent. */
int wire_send(link_t *link, int rank, const wire_header_t *h, const uint8_t *payload, size_t plen, size_t *frame_len,
              spex_err_t *err);

/* Parse and validate a frame received from `rank`. *h must be released with
 * wire_header_free(); *payload points into buf. */
int wire_unpack(const uint8_t *buf, size_t len, int rank, wire_header_t **h, const uint8_t **payload, size_t *plen,
                spex_err_t *err);
void wire_header_free(wire_header_t *h);

/* Name of the body case ("dispatch", "combine", ...) for messages. */
const char *wire_body_name(const wire_header_t *h);

#endif
