/* test_link_delay.c - transport/link_delay.c, the emulated per-message latency
 * (--link-delay-ms): over an in-process echo link, a frame's round trip is
 * never shorter than the requested delay (1, 2, 5 and 10 ms), and the best of
 * 35 round trips is within 1.5x the delay + 1 ms (a delay paid twice or a
 * coarse timer would miss it; load can only lengthen a round trip, so the
 * minimum is what the emulation itself does); frames sent together pay one
 * delay, not one each (200 ms: 600 ms if they added up, bound 450 ms), they
 * arrive in order, and delay 0 is the plain link. No tight wall-time bound
 * (issue 16 item 8): the machine may be loaded. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "transport/link.h"

/* Echo: every frame comes straight back to rank 0 (the caller). */
static int echo(void *user, int rank, const uint8_t *msg, size_t len, uint8_t **reply, size_t *reply_len,
                spex_err_t *err) {
    (void)user, (void)rank, (void)err;
    *reply = malloc(len);
    memcpy(*reply, msg, len);
    *reply_len = len;
    return 0;
}

static uint8_t *frame(uint8_t v) {
    uint8_t *b = malloc(4);
    memset(b, v, 4);
    return b;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of 7 send -> echo round trips (only the send is delayed in process). */
static double median_delay(link_t *l, double *min_out) {
    double t[7];
    spex_err_t err = {{0}};
    for (int i = 0; i < 7; i++) {
        double t0 = spex_now();
        cr_assert_eq(l->send(l, 1, frame((uint8_t)i), 4, &err), 0, "%s", err.msg);
        int src;
        uint8_t *buf;
        size_t len;
        cr_assert_eq(l->recv(l, LINK_ANY, t0 + 5.0, &src, &buf, &len, &err), 0, "%s", err.msg);
        t[i] = spex_now() - t0;
        cr_assert_eq(len, 4);
        cr_assert_eq(buf[0], (uint8_t)i);
        free(buf);
    }
    qsort(t, 7, sizeof t[0], cmp_double);
    *min_out = t[0];
    return t[3];
}

/* A frame never arrives early, and the best of 35 round trips is close to the delay: load on the
 * machine only adds time, so the minimum shows the mechanism's own precision. The bound (1.5x + 1 ms)
 * still catches a delay paid twice or a coarse timer tick, without asserting a tight wall time
 * (issue 16 item 8). */
Test(link_delay, round_trip_is_never_early_and_at_best_the_requested_delay) {
    const double ms[] = {1, 2, 5, 10};
    for (int i = 0; i < 4; i++) {
        spex_err_t err = {{0}};
        link_t *l = link_delay_wrap(link_loop_create(2, echo, NULL, &err), ms[i] / 1e3, &err);
        cr_assert_not_null(l, "%s", err.msg);
        double best = 1e30;
        for (int try = 0; try < 5; try++) {
            double lo = 0, med = median_delay(l, &lo);
            cr_log_info("delay %.0f ms, try %d: median %.4f ms, min %.4f ms", ms[i], try + 1, med * 1e3, lo * 1e3);
            cr_expect_geq(lo, ms[i] / 1e3, "delay %.0f ms: a frame arrived after %.4f ms", ms[i], lo * 1e3);
            if (lo < best) best = lo;
        }
        cr_expect_leq(best, 1.5 * ms[i] / 1e3 + 1e-3, "delay %.0f ms: best round trip %.4f ms", ms[i], best * 1e3);
        l->destroy(l);
    }
}

/* Three frames sent together arrive after one delay, not three: with a 200 ms delay, added-up delays
 * would take 600 ms; the bound 450 ms leaves 250 ms for a loaded machine. */
Test(link_delay, frames_sent_together_pay_one_delay_in_order) {
    const double delay = 0.200;
    spex_err_t err = {{0}};
    link_t *l = link_delay_wrap(link_loop_create(4, echo, NULL, &err), delay, &err);
    cr_assert_not_null(l, "%s", err.msg);
    cr_assert_eq(l->world, 4);
    double t0 = spex_now();
    for (int r = 1; r < 4; r++) cr_assert_eq(l->send(l, r, frame((uint8_t)r), 4, &err), 0, "%s", err.msg);
    for (int r = 1; r < 4; r++) {
        int src;
        uint8_t *buf;
        size_t len;
        cr_assert_eq(l->recv(l, LINK_ANY, t0 + 5.0, &src, &buf, &len, &err), 0, "%s", err.msg);
        cr_expect_eq(src, r, "frames out of order: rank %d answered %d-th", src, r);
        free(buf);
    }
    double dt = spex_now() - t0;
    cr_expect_geq(dt, delay);
    cr_expect_lt(dt, 2.25 * delay, "3 frames sent together took %.4f s: delays add up instead of overlapping", dt);
    cr_assert_eq(l->flush(l, spex_now() + 1, &err), 0, "%s", err.msg);
    l->destroy(l);
}

Test(link_delay, zero_delay_is_the_plain_link_and_null_stays_null) {
    spex_err_t err = {{0}};
    link_t *inner = link_loop_create(2, echo, NULL, &err);
    cr_assert_eq(link_delay_wrap(inner, 0, &err), inner);
    inner->destroy(inner);
    cr_assert_null(link_delay_wrap(NULL, 0.001, &err));
}

Test(link_delay, held_frames_are_freed_and_flush_waits_for_them) {
    spex_err_t err = {{0}};
    link_t *l = link_delay_wrap(link_loop_create(2, echo, NULL, &err), 0.002, &err);
    double t0 = spex_now();
    cr_assert_eq(l->send(l, 1, frame(1), 4, &err), 0);
    cr_assert_eq(l->flush(l, t0 + 5, &err), 0, "%s", err.msg);
    cr_expect_geq(spex_now() - t0, 0.002);
    cr_assert_eq(l->send(l, 1, frame(2), 4, &err), 0);   /* still held at destroy: freed (ASan) */
    l->destroy(l);
}
