/* test_wire.c - transport/wire: frames round-trip every message type, and
 * anything that is not exactly a frame of this protocol version is refused
 * with a message naming the sending rank (truncated at every length, garbage,
 * another version, another frame format, a corrupt payload, a dispatch whose
 * counts do not add up). Buffers are malloc'ed to their exact size so ASan
 * sees any read past the end. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/codec.h"
#include "transport/wire.h"

static uint8_t *dispatch_frame(size_t *len, const uint8_t *payload, size_t plen) {
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Dispatch d = SPEX__DISPATCH__INIT;
    uint32_t counts[3] = {2, 0, 1}, experts[3] = {3, 9, 4};
    float weights[3] = {0.5f, -1.25f, 3.0e-39f};
    d.layer = 7;
    d.rows = 3;
    d.n_counts = 3, d.counts = counts;
    d.n_experts = 3, d.experts = experts;
    d.n_weights = 3, d.weights = weights;
    d.codec = "raw+zstd:1";
    d.combine = SPEX__COMBINE_MODE__COMBINE_PRESUM;
    h.step = 0x123456789ull;
    h.body_case = SPEX__HEADER__BODY_DISPATCH;
    h.dispatch = &d;
    uint8_t *buf;
    spex_err_t err = {{0}};
    cr_assert_eq(wire_pack(&h, payload, plen, &buf, len, &err), 0, "%s", err.msg);
    return buf;
}

static int unpack(const uint8_t *buf, size_t len, spex_err_t *err) {
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    wire_header_t *h = NULL;
    const uint8_t *p;
    size_t pl;
    int rc = wire_unpack(copy, len, 3, &h, &p, &pl, err);
    wire_header_free(h);
    free(copy);
    return rc;
}

Test(wire, dispatch_round_trip) {
    uint8_t payload[100];
    for (int i = 0; i < 100; i++) payload[i] = (uint8_t)(i * 37);
    size_t len;
    uint8_t *buf = dispatch_frame(&len, payload, sizeof payload);
    wire_header_t *h;
    const uint8_t *p;
    size_t pl;
    spex_err_t err = {{0}};
    cr_assert_eq(wire_unpack(buf, len, 1, &h, &p, &pl, &err), 0, "%s", err.msg);
    cr_assert_eq(h->version, SPEX_PROTO_VERSION);
    cr_assert_eq(h->step, 0x123456789ull);
    cr_assert_eq(h->body_case, SPEX__HEADER__BODY_DISPATCH);
    cr_assert_eq(h->dispatch->layer, 7);
    cr_assert_eq(h->dispatch->rows, 3);
    cr_assert_eq(h->dispatch->counts[0], 2);
    cr_assert_eq(h->dispatch->experts[2], 4);
    cr_assert_eq(h->dispatch->weights[1], -1.25f);
    cr_assert_eq(h->dispatch->weights[2], 3.0e-39f);   /* f32 travels exactly, subnormal too */
    cr_assert_str_eq(h->dispatch->codec, "raw+zstd:1");
    cr_assert_eq(h->dispatch->combine, SPEX__COMBINE_MODE__COMBINE_PRESUM);
    cr_assert_eq(pl, sizeof payload);
    cr_assert_eq(memcmp(p, payload, pl), 0);
    cr_assert_str_eq(wire_body_name(h), "dispatch");
    wire_header_free(h);
    free(buf);
}

Test(wire, every_body_round_trips) {
    Spex__Hello hello = SPEX__HELLO__INIT;
    uint32_t ex[2] = {1, 5};
    hello.model_id = 0xfeedfacecafebeefull, hello.n_experts = 2, hello.experts = ex;
    hello.dispatch_codec = "fp8", hello.combine_codec = "bf16+zstd:3";
    Spex__HelloAck ack = SPEX__HELLO_ACK__INIT;
    ack.ok = 1, ack.reason = "", ack.weight_bytes = 1ull << 40;
    Spex__Combine comb = SPEX__COMBINE__INIT;
    comb.vectors = 9, comb.codec = "raw", comb.compute_seconds = 0.25;
    Spex__Stats st = SPEX__STATS__INIT;
    st.bytes_in = 12345;
    Spex__Error e = SPEX__ERROR__INIT;
    e.message = "rank 2: boom";
    Spex__Shutdown sd = SPEX__SHUTDOWN__INIT;
    sd.code = -3;
    Spex__Header hs[6] = {SPEX__HEADER__INIT, SPEX__HEADER__INIT, SPEX__HEADER__INIT,
                          SPEX__HEADER__INIT, SPEX__HEADER__INIT, SPEX__HEADER__INIT};
    hs[0].body_case = SPEX__HEADER__BODY_HELLO, hs[0].hello = &hello;
    hs[1].body_case = SPEX__HEADER__BODY_HELLO_ACK, hs[1].hello_ack = &ack;
    hs[2].body_case = SPEX__HEADER__BODY_COMBINE, hs[2].combine = &comb;
    hs[3].body_case = SPEX__HEADER__BODY_STATS, hs[3].stats = &st;
    hs[4].body_case = SPEX__HEADER__BODY_ERROR, hs[4].error = &e;
    hs[5].body_case = SPEX__HEADER__BODY_SHUTDOWN, hs[5].shutdown = &sd;
    for (int i = 0; i < 6; i++) {
        uint8_t *buf;
        size_t len, pl;
        const uint8_t *p;
        wire_header_t *h;
        spex_err_t err = {{0}};
        cr_assert_eq(wire_pack(&hs[i], NULL, 0, &buf, &len, &err), 0);
        cr_assert_eq(wire_unpack(buf, len, 0, &h, &p, &pl, &err), 0, "%d: %s", i, err.msg);
        cr_assert_eq(h->body_case, hs[i].body_case);
        cr_assert_eq(pl, 0);
        free(buf);
        if (i == 0) {
            cr_assert_eq(h->hello->model_id, 0xfeedfacecafebeefull);
            cr_assert_eq(h->hello->n_experts, 2);
            cr_assert_eq(h->hello->experts[1], 5);
            cr_assert_str_eq(h->hello->combine_codec, "bf16+zstd:3");
        }
        if (i == 1) cr_assert_eq(h->hello_ack->weight_bytes, 1ull << 40);
        if (i == 2) cr_assert_eq(h->combine->compute_seconds, 0.25);
        if (i == 3) cr_assert_eq(h->stats->bytes_in, 12345);
        if (i == 4) cr_assert_str_eq(h->error->message, "rank 2: boom");
        if (i == 5) cr_assert_eq(h->shutdown->code, -3);
        wire_header_free(h);
    }
}

Test(wire, truncated_at_every_length) {
    uint8_t payload[40] = {1, 2, 3};
    size_t len;
    uint8_t *buf = dispatch_frame(&len, payload, sizeof payload);
    for (size_t n = 0; n < len; n++) {
        spex_err_t err = {{0}};
        cr_assert_neq(unpack(buf, n, &err), 0, "accepted %zu of %zu bytes", n, len);
        cr_assert(strstr(err.msg, "rank 3"), "%zu: message does not name the rank: %s", n, err.msg);
    }
    free(buf);
}

Test(wire, garbage_and_magic) {
    spex_err_t err = {{0}};
    uint8_t junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (uint8_t)(i * 91 + 7);
    cr_assert_neq(unpack(junk, sizeof junk, &err), 0);
    cr_assert(strstr(err.msg, "rank 3: malformed"), "%s", err.msg);
    /* right magic, random protobuf */
    memcpy(junk, "SPX\1", 4);
    junk[4] = 50, junk[5] = junk[6] = junk[7] = 0;
    cr_assert_neq(unpack(junk, sizeof junk, &err), 0);
    cr_assert(strstr(err.msg, "rank 3"), "%s", err.msg);
    /* another frame format */
    size_t len;
    uint8_t *buf = dispatch_frame(&len, NULL, 0);
    buf[3] = 2;
    cr_assert_neq(unpack(buf, len, &err), 0);
    cr_assert(strstr(err.msg, "frame format 2"), "%s", err.msg);
    free(buf);
}

Test(wire, wrong_version) {
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Bye bye = SPEX__BYE__INIT;
    h.version = SPEX_PROTO_VERSION + 1;
    h.body_case = SPEX__HEADER__BODY_BYE;
    h.bye = &bye;
    /* wire_pack stamps the current version, so build the frame by hand */
    size_t hl = spex__header__get_packed_size(&h);
    uint8_t *buf = malloc(WIRE_PREFIX + hl);
    memcpy(buf, "SPX\1", 4);
    buf[4] = (uint8_t)hl, buf[5] = buf[6] = buf[7] = 0;
    spex__header__pack(&h, buf + WIRE_PREFIX);
    spex_err_t err = {{0}};
    cr_assert_neq(unpack(buf, WIRE_PREFIX + hl, &err), 0);
    char want[96];
    snprintf(want, sizeof want, "rank 3: protocol version %d, this binary speaks %d", SPEX_PROTO_VERSION + 1,
             SPEX_PROTO_VERSION);
    cr_assert(strstr(err.msg, want), "%s", err.msg);
    free(buf);
}

Test(wire, corrupt_payload_and_missing_body) {
    uint8_t payload[16] = {0};
    size_t len;
    uint8_t *buf = dispatch_frame(&len, payload, sizeof payload);
    buf[len - 1] ^= 0x10;
    spex_err_t err = {{0}};
    cr_assert_neq(unpack(buf, len, &err), 0);
    cr_assert(strstr(err.msg, "checksum"), "%s", err.msg);
    free(buf);
    Spex__Header h = SPEX__HEADER__INIT;
    cr_assert_eq(wire_pack(&h, NULL, 0, &buf, &len, &err), 0);
    cr_assert_neq(unpack(buf, len, &err), 0);
    cr_assert(strstr(err.msg, "without a body"), "%s", err.msg);
    free(buf);
}

Test(wire, dispatch_counts_must_add_up) {
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Dispatch d = SPEX__DISPATCH__INIT;
    uint32_t counts[2] = {2, 2}, experts[3] = {1, 2, 3};
    float w[3] = {1, 1, 1};
    d.rows = 2, d.n_counts = 2, d.counts = counts;
    d.n_experts = 3, d.experts = experts, d.n_weights = 3, d.weights = w;
    d.codec = "raw";
    h.body_case = SPEX__HEADER__BODY_DISPATCH;
    h.dispatch = &d;
    uint8_t *buf;
    size_t len;
    spex_err_t err = {{0}};
    cr_assert_eq(wire_pack(&h, NULL, 0, &buf, &len, &err), 0);
    cr_assert_neq(unpack(buf, len, &err), 0);
    cr_assert(strstr(err.msg, "rank 3: dispatch: counts sum to 4"), "%s", err.msg);
    free(buf);
    d.rows = 5;   /* counts shorter than rows */
    cr_assert_eq(wire_pack(&h, NULL, 0, &buf, &len, &err), 0);
    cr_assert_neq(unpack(buf, len, &err), 0);
    cr_assert(strstr(err.msg, "2 counts for 5 rows"), "%s", err.msg);
    free(buf);
}
