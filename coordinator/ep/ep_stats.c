/* ep_stats.c - see ep_stats.h. */
#include "ep_stats.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "transport/link.h"

ep_stats_t *ep_stats_create(int n_layers, int n_experts, int world, spex_err_t *err) {
    ep_stats_t *s = calloc(1, sizeof *s);
    if (s) {
        s->layer = calloc((size_t)n_layers + 1, sizeof *s->layer);
        s->rank = calloc((size_t)world + 1, sizeof *s->rank);
        s->tokens = calloc((size_t)n_layers * n_experts + 1, sizeof *s->tokens);
        s->rank_pairs = calloc((size_t)n_layers * world + 1, sizeof *s->rank_pairs);
    }
    if (!s || !s->layer || !s->rank || !s->tokens || !s->rank_pairs) {
        ep_stats_free(s);
        spex_fail(err, "stats: out of memory");
        return NULL;
    }
    s->n_layers = n_layers;
    s->n_experts = n_experts;
    s->world = world;
    s->t_begin = s->t_end = spex_now();
    return s;
}

void ep_stats_free(ep_stats_t *s) {
    if (!s) return;
    free(s->layer);
    free(s->rank);
    free(s->tokens);
    free(s->rank_pairs);
    free(s);
}

static void io_add(ep_io_t *a, const ep_io_t *b) {
    a->messages += b->messages;
    a->raw_bytes += b->raw_bytes;
    a->wire_bytes += b->wire_bytes;
}

ep_layer_stats_t ep_layer_stats_delta(ep_layer_stats_t a, ep_layer_stats_t b) {
    ep_layer_stats_t d = b;
    d.calls -= a.calls, d.rows -= a.rows, d.pairs -= a.pairs;
    d.dispatch.messages -= a.dispatch.messages, d.dispatch.raw_bytes -= a.dispatch.raw_bytes;
    d.dispatch.wire_bytes -= a.dispatch.wire_bytes;
    d.combine.messages -= a.combine.messages, d.combine.raw_bytes -= a.combine.raw_bytes;
    d.combine.wire_bytes -= a.combine.wire_bytes;
    d.t_dispatch -= a.t_dispatch, d.t_wait -= a.t_wait, d.t_combine -= a.t_combine, d.t_expert -= a.t_expert;
    return d;
}

ep_layer_stats_t ep_stats_total(const ep_stats_t *s) {
    ep_layer_stats_t t = {0};
    for (int l = 0; l < s->n_layers; l++) {
        const ep_layer_stats_t *x = &s->layer[l];
        t.calls += x->calls;
        t.rows += x->rows;
        t.pairs += x->pairs;
        io_add(&t.dispatch, &x->dispatch);
        io_add(&t.combine, &x->combine);
        t.t_dispatch += x->t_dispatch;
        t.t_wait += x->t_wait;
        t.t_combine += x->t_combine;
        t.t_expert += x->t_expert;
    }
    return t;
}

static double ratio(const ep_io_t *io) { return io->wire_bytes ? (double)io->raw_bytes / (double)io->wire_bytes : 0; }

static cJSON *io_json(const ep_io_t *io) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "messages", (double)io->messages);
    cJSON_AddNumberToObject(o, "raw_bytes", (double)io->raw_bytes);
    cJSON_AddNumberToObject(o, "wire_bytes", (double)io->wire_bytes);
    cJSON_AddNumberToObject(o, "ratio", ratio(io));
    return o;
}

static cJSON *layer_json(const ep_layer_stats_t *x) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "calls", (double)x->calls);
    cJSON_AddNumberToObject(o, "rows", (double)x->rows);
    cJSON_AddNumberToObject(o, "pairs", (double)x->pairs);
    cJSON_AddItemToObject(o, "dispatch", io_json(&x->dispatch));
    cJSON_AddItemToObject(o, "combine", io_json(&x->combine));
    cJSON_AddNumberToObject(o, "dispatch_seconds", x->t_dispatch);
    cJSON_AddNumberToObject(o, "wait_seconds", x->t_wait);
    cJSON_AddNumberToObject(o, "combine_seconds", x->t_combine);
    cJSON_AddNumberToObject(o, "expert_seconds", x->t_expert);
    return o;
}

static cJSON *rank_json(const ep_rank_stats_t *r, int rank) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rank", rank);
    cJSON_AddNumberToObject(o, "experts_hosted", (double)r->experts_hosted);
    cJSON_AddNumberToObject(o, "rows", (double)r->rows);
    cJSON_AddNumberToObject(o, "pairs", (double)r->pairs);
    cJSON_AddItemToObject(o, "dispatch", io_json(&r->dispatch));
    cJSON_AddItemToObject(o, "combine", io_json(&r->combine));
    cJSON_AddNumberToObject(o, "decode_seconds", r->t_decode);
    cJSON_AddNumberToObject(o, "compute_seconds", r->t_compute);
    cJSON_AddNumberToObject(o, "encode_seconds", r->t_encode);
    cJSON_AddNumberToObject(o, "busy_seconds", r->busy_seconds);
    cJSON_AddNumberToObject(o, "idle_seconds", r->idle_seconds);
    cJSON_AddNumberToObject(o, "weight_bytes", (double)r->weight_bytes);
    cJSON_AddNumberToObject(o, "max_rss_bytes", (double)r->max_rss_bytes);
    return o;
}

/* Expert load of layer l: max and mean tokens over its experts. */
static void layer_load(const ep_stats_t *s, int l, int64_t *max, double *mean) {
    int64_t sum = 0, mx = 0;
    for (int e = 0; e < s->n_experts; e++) {
        int64_t t = s->tokens[(size_t)l * s->n_experts + e];
        sum += t;
        mx = t > mx ? t : mx;
    }
    *max = mx;
    *mean = s->n_experts ? (double)sum / s->n_experts : 0;
}

/* Rank load of layer l: the busiest worker rank's (row, expert) pairs and the mean over worker ranks. */
static void layer_rank_load(const ep_stats_t *s, int l, int64_t *max, double *mean) {
    int64_t sum = 0, mx = 0;
    for (int r = 1; r < s->world; r++) {
        int64_t t = s->rank_pairs[(size_t)l * s->world + r];
        sum += t;
        mx = t > mx ? t : mx;
    }
    *max = mx;
    *mean = s->world > 1 ? (double)sum / (s->world - 1) : 0;
}

/* Over all layers: sum of each layer's busiest rank over the sum of its means
 * (the critical path's share of imbalance: every layer waits for its slowest rank). */
static double rank_imbalance(const ep_stats_t *s) {
    double mx = 0, mean = 0;
    for (int l = 0; l < s->n_layers; l++) {
        int64_t m;
        double a;
        layer_rank_load(s, l, &m, &a);
        mx += (double)m, mean += a;
    }
    return mean > 0 ? mx / mean : 0;
}

/* "pairs_per_rank" (ranks 1..world-1) and its imbalance, into the layer's load object. */
static void add_rank_load(cJSON *o, const ep_stats_t *s, int l) {
    int64_t mx;
    double mean;
    layer_rank_load(s, l, &mx, &mean);
    cJSON *t = cJSON_AddArrayToObject(o, "pairs_per_rank");
    for (int r = 1; r < s->world; r++)
        cJSON_AddItemToArray(t, cJSON_CreateNumber((double)s->rank_pairs[(size_t)l * s->world + r]));
    cJSON_AddNumberToObject(o, "rank_max_over_mean", mean > 0 ? mx / mean : 0);
}

static cJSON *load_json(const ep_stats_t *s) {
    cJSON *arr = cJSON_CreateArray();
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->layer[l].calls) continue;
        cJSON *o = cJSON_CreateObject();
        int64_t mx;
        double mean;
        layer_load(s, l, &mx, &mean);
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON *t = cJSON_AddArrayToObject(o, "tokens_per_expert");
        for (int e = 0; e < s->n_experts; e++)
            cJSON_AddItemToArray(t, cJSON_CreateNumber((double)s->tokens[(size_t)l * s->n_experts + e]));
        cJSON_AddNumberToObject(o, "max", (double)mx);
        cJSON_AddNumberToObject(o, "mean", mean);
        cJSON_AddNumberToObject(o, "max_over_mean", mean > 0 ? mx / mean : 0);
        add_rank_load(o, s, l);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static double hidden_fraction(const ep_overlap_t *o) {
    return o->comm_seconds > 0 ? o->hidden_seconds / o->comm_seconds : 0;
}

static cJSON *overlap_json(const ep_overlap_t *o) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "micro_batches", o->micro_batches);
    cJSON_AddNumberToObject(j, "calls", (double)o->calls);
    cJSON_AddNumberToObject(j, "comm_seconds", o->comm_seconds);
    cJSON_AddNumberToObject(j, "hidden_seconds", o->hidden_seconds);
    cJSON_AddNumberToObject(j, "hidden_fraction", hidden_fraction(o));
    return j;
}

static cJSON *stats_json(const ep_stats_t *s) {
    cJSON *root = cJSON_CreateObject();
    ep_layer_stats_t t = ep_stats_total(s);
    double wall = s->t_end - s->t_begin;
    cJSON_AddNumberToObject(root, "world", s->world);
    cJSON_AddStringToObject(root, "dispatch_codec", s->dispatch_codec);
    cJSON_AddStringToObject(root, "combine_codec", s->combine_codec);
    cJSON_AddStringToObject(root, "combine", s->combine_mode);
    cJSON_AddNumberToObject(root, "wall_seconds", wall);
    cJSON_AddNumberToObject(root, "other_seconds", wall - t.t_dispatch - t.t_wait - t.t_combine);
    cJSON_AddItemToObject(root, "total", layer_json(&t));
    cJSON_AddItemToObject(root, "overlap", overlap_json(&s->overlap));
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->layer[l].calls) continue;
        cJSON *o = layer_json(&s->layer[l]);
        cJSON_AddNumberToObject(o, "layer", l);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    for (int r = 1; r < s->world; r++) cJSON_AddItemToArray(ranks, rank_json(&s->rank[r], r));
    cJSON_AddItemToObject(root, "expert_load", load_json(s));
    cJSON_AddNumberToObject(root, "rank_max_over_mean", rank_imbalance(s));
    return root;
}

char *ep_stats_json_text(const ep_stats_t *s) {
    cJSON *root = stats_json(s);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

int ep_stats_write_json(const ep_stats_t *s, const char *path, spex_err_t *err) {
    cJSON *root = stats_json(s);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return spex_fail(err, "stats: out of memory");
    FILE *f = fopen(path, "w");
    int rc = 0;
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) rc = spex_fail(err, "stats: cannot write '%s'", path);
    if (f && fclose(f) && !rc) rc = spex_fail(err, "stats: cannot write '%s'", path);
    free(text);
    return rc;
}

void ep_stats_print(const ep_stats_t *s, FILE *f) {
    ep_layer_stats_t t = ep_stats_total(s);
    double wall = s->t_end - s->t_begin;
    fprintf(f, "expert parallelism: %d worker rank(s), dispatch %s, combine %s (%s)\n", s->world - 1,
            s->dispatch_codec, s->combine_codec, s->combine_mode);
    fprintf(f, "  %-9s %10s %12s %12s %7s\n", "direction", "messages", "raw bytes", "wire bytes", "ratio");
    fprintf(f, "  %-9s %10lld %12lld %12lld %7.3f\n", "dispatch", (long long)t.dispatch.messages,
            (long long)t.dispatch.raw_bytes, (long long)t.dispatch.wire_bytes, ratio(&t.dispatch));
    fprintf(f, "  %-9s %10lld %12lld %12lld %7.3f\n", "combine", (long long)t.combine.messages,
            (long long)t.combine.raw_bytes, (long long)t.combine.wire_bytes, ratio(&t.combine));
    fprintf(f, "  coordinator %.3f s: other (attention, dense, shared) %.3f, dispatch %.3f, wait %.3f "
            "(expert critical path %.3f), combine %.3f\n",
            wall, wall - t.t_dispatch - t.t_wait - t.t_combine, t.t_dispatch, t.t_wait, t.t_expert, t.t_combine);
    fprintf(f, "  overlap: %d micro-batch(es) in flight at most; round trip %.3f s, %.3f s of it hidden (%.0f%%)\n",
            s->overlap.micro_batches, s->overlap.comm_seconds, s->overlap.hidden_seconds,
            100 * hidden_fraction(&s->overlap));
    fprintf(f, "  %-5s %8s %9s %9s %12s %12s %9s %9s\n", "rank", "experts", "rows", "pairs", "in bytes",
            "out bytes", "compute", "codec");
    for (int r = 1; r < s->world; r++) {
        const ep_rank_stats_t *x = &s->rank[r];
        fprintf(f, "  %-5d %8lld %9lld %9lld %12lld %12lld %8.3fs %8.3fs\n", r, (long long)x->experts_hosted,
                (long long)x->rows, (long long)x->pairs, (long long)x->dispatch.wire_bytes,
                (long long)x->combine.wire_bytes, x->t_compute, x->t_decode + x->t_encode);
    }
    for (int l = 0; l < s->n_layers; l++) {
        if (!s->layer[l].calls) continue;
        int64_t mx;
        double mean;
        int64_t rmx;
        double rmean;
        layer_load(s, l, &mx, &mean);
        layer_rank_load(s, l, &rmx, &rmean);
        fprintf(f, "  layer %-3d tokens/expert max %lld mean %.1f (max/mean %.2f); pairs/rank max %lld mean %.1f "
                "(max/mean %.2f)\n", l, (long long)mx, mean, mean > 0 ? mx / mean : 0, (long long)rmx, rmean,
                rmean > 0 ? rmx / rmean : 0);
    }
    fprintf(f, "  busiest rank over the mean, summed over layers: %.3f\n", rank_imbalance(s));
}
