/* wire.c - see wire.h. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "transport/codec.h"

static const uint8_t MAGIC[4] = {'S', 'P', 'X', 1};

/* h as sent: version and payload fields set. */
static wire_header_t framed(const wire_header_t *h, uint64_t plen, uint32_t sum) {
    wire_header_t c = *h;
    c.version = SPEX_PROTO_VERSION;
    c.payload_bytes = plen;
    c.payload_checksum = sum;
    return c;
}

uint8_t *wire_begin(wire_out_t *o, const wire_header_t *h, size_t cap, spex_err_t *err) {
    wire_header_t c = framed(h, 1, 1);   /* non-zero: both fixed-size fields present */
    o->hl = spex__header__get_packed_size(&c);
    o->cap = cap;
    if (o->hl > WIRE_MAX_HEADER) {
        spex_fail(err, "wire: header of %zu bytes is too large", o->hl);
        return NULL;
    }
    if (!(o->buf = malloc(WIRE_PREFIX + o->hl + cap + 1))) {
        spex_fail(err, "wire: out of memory for a %zu-byte frame", WIRE_PREFIX + o->hl + cap);
        return NULL;
    }
    return o->buf + WIRE_PREFIX + o->hl;
}

int wire_end(wire_out_t *o, const wire_header_t *h, size_t plen, uint8_t **frame, size_t *frame_len,
             spex_err_t *err) {
    uint8_t *pl = o->buf + WIRE_PREFIX + o->hl;
    if (plen > o->cap) {
        wire_out_free(o);
        return spex_fail(err, "wire: payload of %zu bytes overflows its %zu-byte slot", plen, o->cap);
    }
    wire_header_t c = framed(h, plen, codec_checksum(pl, plen));
    size_t hl = spex__header__get_packed_size(&c);
    if (hl > o->hl) {   /* a field gained presence after wire_begin: caller error */
        wire_out_free(o);
        return spex_fail(err, "wire: header grew from %zu to %zu bytes after the payload was placed", o->hl, hl);
    }
    if (hl < o->hl) memmove(o->buf + WIRE_PREFIX + hl, pl, plen);   /* a zero field was dropped: rare */
    memcpy(o->buf, MAGIC, 4);
    for (int i = 0; i < 4; i++) o->buf[4 + i] = (uint8_t)(hl >> (8 * i));
    spex__header__pack(&c, o->buf + WIRE_PREFIX);
    *frame = o->buf;
    *frame_len = WIRE_PREFIX + hl + plen;
    o->buf = NULL;
    return 0;
}

void wire_out_free(wire_out_t *o) {
    free(o->buf);
    o->buf = NULL;
}

int wire_pack(const wire_header_t *h, const uint8_t *payload, size_t plen, uint8_t **out, size_t *out_len,
              spex_err_t *err) {
    wire_out_t o;
    uint8_t *dst = wire_begin(&o, h, plen, err);
    if (!dst) return -1;
    if (plen) memcpy(dst, payload, plen);
    return wire_end(&o, h, plen, out, out_len, err);
}

int wire_send(link_t *link, int rank, const wire_header_t *h, const uint8_t *payload, size_t plen, size_t *frame_len,
              spex_err_t *err) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (wire_pack(h, payload, plen, &buf, &len, err)) return -1;
    if (frame_len) *frame_len = len;
    return link->send(link, rank, buf, len, err);
}

static int check_body(const wire_header_t *h, int rank, spex_err_t *err) {
    switch (h->body_case) {
    case SPEX__HEADER__BODY_DISPATCH: {
        const Spex__Dispatch *d = h->dispatch;
        if (d->n_counts != d->rows)
            return spex_fail(err, "rank %d: dispatch: %zu counts for %u rows", rank, d->n_counts, d->rows);
        uint64_t sum = 0;
        for (size_t i = 0; i < d->n_counts; i++) sum += d->counts[i];
        if (d->n_experts != sum || d->n_weights != sum)
            return spex_fail(err, "rank %d: dispatch: counts sum to %llu but %zu experts and %zu weights", rank,
                             (unsigned long long)sum, d->n_experts, d->n_weights);
        return 0;
    }
    case SPEX__HEADER__BODY__NOT_SET:
        return spex_fail(err, "rank %d: message without a body", rank);
    default:
        return 0;
    }
}

int wire_unpack(const uint8_t *buf, size_t len, int rank, wire_header_t **h, const uint8_t **payload, size_t *plen,
                spex_err_t *err) {
    *h = NULL;
    if (len < WIRE_PREFIX || memcmp(buf, MAGIC, 3))
        return spex_fail(err, "rank %d: malformed message (%zu bytes, no SPX frame magic)", rank, len);
    if (buf[3] != MAGIC[3])
        return spex_fail(err, "rank %d: frame format %u, expected %u (different spex version?)", rank, buf[3],
                         MAGIC[3]);
    uint32_t hl = 0;
    for (int i = 0; i < 4; i++) hl |= (uint32_t)buf[4 + i] << (8 * i);
    if (hl > len - WIRE_PREFIX)
        return spex_fail(err, "rank %d: truncated message: header of %u bytes, only %zu received", rank, hl,
                         len - WIRE_PREFIX);
    wire_header_t *m = spex__header__unpack(NULL, hl, buf + WIRE_PREFIX);
    if (!m) return spex_fail(err, "rank %d: malformed message header (%u bytes of protobuf)", rank, hl);
    size_t have = len - WIRE_PREFIX - hl;
    const uint8_t *p = buf + WIRE_PREFIX + hl;
    int rc = 0;
    if (m->version != SPEX_PROTO_VERSION)
        rc = spex_fail(err, "rank %d: protocol version %u, this binary speaks %u", rank, m->version,
                       SPEX_PROTO_VERSION);
    else if (m->payload_bytes != have)
        rc = spex_fail(err, "rank %d: %s payload is %zu bytes, header says %llu (truncated?)", rank,
                       wire_body_name(m), have, (unsigned long long)m->payload_bytes);
    else if (codec_checksum(p, have) != m->payload_checksum)
        rc = spex_fail(err, "rank %d: %s payload checksum mismatch (corrupt message)", rank, wire_body_name(m));
    else rc = check_body(m, rank, err);
    if (rc) { spex__header__free_unpacked(m, NULL); return -1; }
    *h = m;
    *payload = p;
    *plen = have;
    return 0;
}

void wire_header_free(wire_header_t *h) {
    if (h) spex__header__free_unpacked(h, NULL);
}

const char *wire_body_name(const wire_header_t *h) {
    switch (h->body_case) {
    case SPEX__HEADER__BODY_HELLO: return "hello";
    case SPEX__HEADER__BODY_HELLO_ACK: return "hello-ack";
    case SPEX__HEADER__BODY_DISPATCH: return "dispatch";
    case SPEX__HEADER__BODY_COMBINE: return "combine";
    case SPEX__HEADER__BODY_STATS_REQUEST: return "stats-request";
    case SPEX__HEADER__BODY_STATS: return "stats";
    case SPEX__HEADER__BODY_BYE: return "bye";
    case SPEX__HEADER__BODY_SHUTDOWN: return "shutdown";
    case SPEX__HEADER__BODY_LOADING: return "loading";
    case SPEX__HEADER__BODY_ERROR: return "error";
    default: return "empty";
    }
}
