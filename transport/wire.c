/* wire.c - see wire.h. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "transport/codec.h"

static const uint8_t MAGIC[4] = {'S', 'P', 'X', 1};

int wire_pack(const wire_header_t *h, const uint8_t *payload, size_t plen, uint8_t **out, size_t *out_len,
              spex_err_t *err) {
    wire_header_t c = *h;
    c.version = SPEX_PROTO_VERSION;
    c.payload_bytes = plen;
    c.payload_checksum = codec_checksum(payload, plen);
    size_t hl = spex__header__get_packed_size(&c);
    if (hl > WIRE_MAX_HEADER) return spex_fail(err, "wire: header of %zu bytes is too large", hl);
    uint8_t *b = malloc(WIRE_PREFIX + hl + plen + 1);
    if (!b) return spex_fail(err, "wire: out of memory for a %zu-byte frame", WIRE_PREFIX + hl + plen);
    memcpy(b, MAGIC, 4);
    for (int i = 0; i < 4; i++) b[4 + i] = (uint8_t)(hl >> (8 * i));
    spex__header__pack(&c, b + WIRE_PREFIX);
    if (plen) memcpy(b + WIRE_PREFIX + hl, payload, plen);
    *out = b;
    *out_len = WIRE_PREFIX + hl + plen;
    return 0;
}

int wire_send(link_t *link, int rank, const wire_header_t *h, const uint8_t *payload, size_t plen, size_t *frame_len,
              spex_err_t *err) {
    uint8_t *buf;
    size_t len;
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
