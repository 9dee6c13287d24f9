/* cmd_batch.c - `spex batch`: a JSONL file of requests through continuous batching,
 * resumable and safe to kill at any moment (Slurm preemption).
 *
 *   spex batch --model DIR --input prompts.jsonl --output results.jsonl [--errors FILE] [options]
 *
 * Input lines: {"id": ..., "prompt": ... | "messages": [...], params...} with
 * the parameters of the HTTP API (server/api.h). Output lines, in completion
 * order: {"id", "text", "tokens", "usage", "finish_reason", "timing", "line"}.
 *
 * Crash safety rests on three rules:
 *   - an output line is written with one write() of the whole line, and the
 *     file is fsync'ed after each step's lines, so a line is either complete
 *     (ends in '\n') or is the last, truncated one;
 *   - on start the output is scanned: complete lines give the ids that are
 *     done; a truncated tail (SIGKILL in the middle of a write) is cut off
 *     before anything is appended;
 *   - ids already done are skipped, so rerunning the same command after any
 *     kill loses nothing and duplicates nothing.
 * The errors file (bad input lines, by line number) follows the same rules,
 * keyed by line number. SIGTERM/SIGINT: finish the current engine step, write
 * what completed, exit with 75 (EX_TEMPFAIL) if work is left, so a job
 * script can requeue (see docs/serving.md). Sampling without a "seed" uses a
 * seed derived from the id, so a rerun reproduces the same text for an id.
 *
 * Single-threaded: this thread reads input, steps the scheduler and writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli_chat_template.h"
#include "cli/cli_ep.h"
#include "cli/cli_genconf.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/json_raw.h"
#include "server/json_str.h"
#include "coordinator/decode/generate.h"
#include "coordinator/serve/scheduler.h"
#include "server/api.h"
#include "server/signals.h"
#include "core/strbuf.h"

/* Exit status when stopped by a signal with work left: rerun to resume. */
#define BATCH_EXIT_REQUEUE 75

typedef struct batch_cli {
    const char *dir, *input, *output, *errors;
    long max_tokens;
    double temperature, progress_interval;
    cli_sched_t sched;       /* limits */
    cli_sampling_t sp;       /* --spec-k (default 0: what measures fastest on the shipped model), --draft */
    cli_ep_t ep;             /* expert parallelism: workers under mpirun, loopback ranks, or --no-ep */
    bool no_gen_config;      /* --no-generation-config */
    const char *chat_template;   /* --chat-template auto|builtin|FILE */
} batch_cli_t;

/* ---------------------------------------------------------------- a set of strings */

typedef struct strset {
    char **slot;
    size_t cap, n;
} strset_t;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool set_has(const strset_t *t, const char *key) {
    if (!t->cap) return false;
    for (size_t i = fnv1a(key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slot[i]) return false;
        if (!strcmp(t->slot[i], key)) return true;
    }
}

static int set_put_owned(strset_t *t, char *key);

static int set_grow(strset_t *t) {
    strset_t bigger = {calloc(t->cap ? t->cap * 2 : 1024, sizeof(char *)), t->cap ? t->cap * 2 : 1024, 0};
    if (!bigger.slot) return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i]) set_put_owned(&bigger, t->slot[i]);
    free(t->slot);
    *t = bigger;
    return 0;
}

/* Insert (taking ownership of key); no-op if present. */
static int set_put_owned(strset_t *t, char *key) {
    if ((t->n + 1) * 2 > t->cap && set_grow(t)) { free(key); return -1; }
    size_t i = fnv1a(key) & (t->cap - 1);
    while (t->slot[i] && strcmp(t->slot[i], key)) i = (i + 1) & (t->cap - 1);
    if (t->slot[i]) { free(key); return 0; }
    t->slot[i] = key;
    t->n++;
    return 0;
}

static int set_put(strset_t *t, const char *key) {
    char *k = strdup(key);
    return k ? set_put_owned(t, k) : -1;
}

static void set_free(strset_t *t) {
    for (size_t i = 0; i < t->cap; i++) free(t->slot[i]);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- resuming */

/* A line as one JSON value with string lengths (server/json_str.h); NULL and
 * *why when it is not. */
static cJSON *parse_line(const char *line, size_t len, const char **why) {
    size_t at;
    return json_parse_doc(line, len, why, &at);
}

/* Collect `field` of every complete line of `path` into done; cut a truncated
 * last line off. A missing file is fine (nothing done yet). */
static int scan_done(const char *path, const char *field, strset_t *done, spex_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : spex_fail(err, "cannot read '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {   /* a device or pipe: nothing to resume from (reading */
        fclose(f);                                         /* /dev/full or /dev/zero never ended) */
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0, good_end = 0;
    bool tail = false;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n') { tail = true; break; }   /* killed in the middle of this write */
        no++;
        good_end += len;
        const char *why;
        cJSON *o = parse_line(line, (size_t)len - 1, &why);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
        char *key = v ? json_raw_key(v, line, (size_t)len, field) : NULL;
        if (!key) rc = spex_fail(err, "'%s' line %ld is not a JSON object with \"%s\"; fix or remove it", path, no, field);
        else rc = set_put_owned(done, key) ? spex_fail(err, "out of memory") : 0;
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    if (rc == 0 && tail) {
        fprintf(stderr, "spex batch: '%s': dropping a truncated last line (interrupted write)\n", path);
        if (truncate(path, good_end)) return spex_fail(err, "cannot truncate '%s': %s", path, strerror(errno));
    }
    return rc;
}

static long count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {   /* a pipe would be consumed, a device never end */
        fclose(f);
        return -1;
    }
    long n = 0;
    int c, last = '\n';
    while ((c = getc(f)) != EOF) {
        if (c == '\n') n++;
        last = c;
    }
    fclose(f);
    return n + (last != '\n');
}

/* ---------------------------------------------------------------- output */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = ENOSPC;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* `o` as one compact line into b (b->oom when out of memory); frees o. */
static void json_line(strbuf_t *b, cJSON *o) {
    size_t len;
    char *line = cli_json_line(o, &len);
    if (line) sb_add(b, line, len);
    else b->oom = true;
    free(line);
}

static cJSON *usage_json(const sched_result_t *r) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", r->n_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", r->prompt_tokens + r->n_tokens);
    return u;
}

static cJSON *timing_json(const sched_result_t *r) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "queue_seconds", r->queue_seconds);
    cJSON_AddNumberToObject(t, "ttft_seconds", r->ttft_seconds);
    cJSON_AddNumberToObject(t, "prefill_seconds", r->prefill_seconds);
    cJSON_AddNumberToObject(t, "decode_seconds", r->decode_seconds);
    cJSON_AddNumberToObject(t, "total_seconds", r->total_seconds);
    cJSON_AddNumberToObject(t, "decode_tokens_per_second",
                            r->decode_seconds > 0 && r->n_tokens > 1 ? (r->n_tokens - 1) / r->decode_seconds : 0);
    return t;
}

/* key: the id as canonical JSON text (json_key). */
static void result_line(strbuf_t *b, const char *key, long line_no, const sched_result_t *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddRawToObject(o, "id", key);
    cli_json_add_text(o, "text", r->text, r->text_len);
    cJSON_AddItemToObject(o, "tokens", cli_json_ids(r->tokens, r->n_tokens));
    cJSON_AddItemToObject(o, "usage", usage_json(r));
    cli_json_add_cstr(o, "finish_reason", r->finish_reason);
    cJSON_AddItemToObject(o, "timing", timing_json(r));
    cJSON_AddNumberToObject(o, "spec_k", r->spec_k);
    cJSON_AddNumberToObject(o, "line", (double)line_no);
    json_line(b, o);
}

static void error_line(strbuf_t *b, long line_no, const char *key, const char *msg, const char *param) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "line", (double)line_no);
    cJSON_AddRawToObject(o, "id", key ? key : "null");
    cli_json_add_cstr(e, "message", msg);
    cli_json_add_cstr(e, "param", param);
    cJSON_AddItemToObject(o, "error", e);
    json_line(b, o);
}

/* ---------------------------------------------------------------- the run */

typedef struct inflight {
    sched_req_t *req;
    char *key;
    long line_no;
} inflight_t;

typedef struct batch {
    batch_cli_t c;
    tokenizer_t *tok;
    model_t *m;
    scheduler_t *sched;
    chat_template_t *chat;   /* the model's chat format */
    api_ctx_t api;
    api_defaults_t defaults; /* --max-tokens / --temperature, else generation_config.json's, else OpenAI's */
    FILE *in;
    int out_fd, err_fd;
    const char *errors_path;
    const char *failed_path;  /* the file a write or fsync failed on, and why */
    int failed_errno;
    strset_t done_ids, done_lines, seen;
    inflight_t *fl;
    int n_fl, cap_fl;
    long line_no, total_lines, completed, skipped, errors, tokens, resumed;
    bool input_done, out_dirty, err_dirty;
    double t_start, next_progress;
} batch_t;

/* Write to the output (out) or errors file; a failure records which file and why. */
static int batch_write(batch_t *b, bool out, const strbuf_t *s) {
    if (!s->oom && write_all(out ? b->out_fd : b->err_fd, s->p, s->n) == 0) return 0;
    b->failed_path = out ? b->c.output : b->errors_path;
    b->failed_errno = s->oom ? ENOMEM : errno;
    return -1;
}

static int batch_sync(batch_t *b, bool out) {
    if (fsync(out ? b->out_fd : b->err_fd) == 0 || errno == EINVAL) return 0;
    b->failed_path = out ? b->c.output : b->errors_path;
    b->failed_errno = errno;
    return -1;
}

static int report_error(batch_t *b, long line_no, const char *key, const char *msg, const char *param) {
    strbuf_t s = {0};
    error_line(&s, line_no, key, msg, param);
    int rc = batch_write(b, false, &s);
    sb_free(&s);
    b->errors++;
    b->err_dirty = true;
    return rc;
}

static uint64_t seed_of(const char *key) { return fnv1a(key); }

/* The field of a parsed line that batch output lines cannot carry, or NULL:
 * one text per line, no logprobs, no echo. */
static const char *batch_unsupported(const api_request_t *rq) {
    if (rq->n_prompts > 1) return "prompt";
    if (rq->n > 1) return "n";
    if (rq->params.logprobs) return "logprobs";
    if (rq->echo) return "echo";
    return NULL;
}

/* Submit a parsed line whose id is new; on success the in-flight entry takes *key. */
static int submit_parsed(batch_t *b, const cJSON *o, char **key) {
    api_request_t rq;
    api_error_t e;
    api_defaults_t d = b->defaults;
    d.have_seed = true;
    d.seed = seed_of(*key);
    bool chat = cJSON_GetObjectItemCaseSensitive(o, "messages") != NULL;
    if (api_parse_request(&b->api, chat ? API_CHAT : API_COMPLETION, o, &d, &rq, &e))
        return report_error(b, b->line_no, *key, e.message, e.param);
    const char *unsupported = batch_unsupported(&rq);
    if (unsupported) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' is not supported by spex batch (one completion per line; use spex serve)",
                 unsupported);
        api_request_free(&rq);
        return report_error(b, b->line_no, *key, msg, unsupported);
    }
    sched_req_t *req;
    const char *param;
    spex_err_t err = {0};
    sched_status_t st = scheduler_submit(b->sched, &rq.params, &req, &param, &err);
    api_request_free(&rq);
    if (st != SCHED_OK) return report_error(b, b->line_no, *key, err.msg, param);
    b->fl[b->n_fl++] = (inflight_t){req, *key, b->line_no};
    *key = NULL;
    return 0;
}

/* Parse one input line and submit it. Returns -1 only on an I/O failure.
 * The order of the checks makes every run classify a line the same way,
 * whatever earlier runs finished: the first line with an id owns it (run, or
 * skipped when its result is already in the output); any later line with that
 * id is a duplicate, reported once (by line number) and never run. */
static int submit_line(batch_t *b, char *line, size_t len) {
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    size_t k = 0;
    while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
    if (k == len) return 0;   /* blank */
    char line_key[32];
    snprintf(line_key, sizeof line_key, "%ld", b->line_no);
    bool reported = set_has(&b->done_lines, line_key);
    const char *why = "not a JSON object";
    cJSON *o = parse_line(line, len, &why);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    bool id_ok = cJSON_IsObject(o) && (cJSON_IsString(id) || cJSON_IsNumber(id));
    char *key = id_ok ? json_raw_key(id, line, len, "id") : NULL;
    int rc = 0;
    if (id_ok && !key) rc = -1;
    else if (!id_ok) rc = reported ? 0 : report_error(b, b->line_no, NULL, cJSON_IsObject(o) ? "\"id\" (a string or a "
                                                      "number) is required" : o ? "not a JSON object" : why,
                                                      cJSON_IsObject(o) ? "id" : NULL);
    else if (set_has(&b->seen, key))
        rc = reported ? 0 : report_error(b, b->line_no, key, "duplicate id (an earlier line has it)", "id");
    else if (set_put(&b->seen, key)) rc = -1;
    else if (reported) {}                                   /* bad line, reported by an earlier run */
    else if (set_has(&b->done_ids, key)) b->skipped++;      /* finished in an earlier run */
    else rc = submit_parsed(b, o, &key);
    free(key);
    cJSON_Delete(o);
    return rc;
}

/* Read input lines until enough requests are in flight for the next steps. */
static int fill(batch_t *b) {
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && !b->input_done && b->n_fl < b->cap_fl) {
        ssize_t len = getline(&line, &cap, b->in);
        if (len < 0) { b->input_done = true; break; }
        b->line_no++;
        rc = submit_line(b, line, (size_t)len);
    }
    free(line);
    return rc;
}

/* Write every finished request; returns -1 on I/O failure, 1 if the engine failed. */
static int drain(batch_t *b) {
    int rc = 0;
    for (int i = 0; i < b->n_fl; i++) {
        if (!sched_req_done(b->fl[i].req)) continue;
        const sched_result_t *r = sched_req_result(b->fl[i].req);
        if (!strcmp(r->finish_reason, "error")) {
            fprintf(stderr, "spex batch: line %ld: %s\n", b->fl[i].line_no, r->error);
            rc = rc ? rc : 1;   /* not written: a rerun retries it */
        } else if (strcmp(r->finish_reason, "cancelled")) {
            strbuf_t s = {0};
            result_line(&s, b->fl[i].key, b->fl[i].line_no, r);
            if (batch_write(b, true, &s)) rc = -1;
            sb_free(&s);
            b->completed++;
            b->tokens += r->n_tokens;
            b->out_dirty = true;
        }
        sched_req_release(b->fl[i].req);
        free(b->fl[i].key);
        b->fl[i--] = b->fl[--b->n_fl];
    }
    if (b->out_dirty && batch_sync(b, true)) rc = -1;
    if (b->err_dirty && batch_sync(b, false)) rc = -1;
    b->out_dirty = b->err_dirty = false;
    return rc;
}

static void progress(batch_t *b, bool final) {
    double now = spex_now();
    bool tty = isatty(2);
    if (!final && now < b->next_progress) return;
    b->next_progress = now + (tty ? 0.2 : b->c.progress_interval);
    long finished = b->resumed + b->completed + b->errors, total = b->total_lines > 0 ? b->total_lines : 1;
    double el = now - b->t_start, tps = el > 0 ? b->tokens / el : 0;
    if (tty) {
        int width = 30, fill = (int)(width * (finished > total ? total : finished) / total);
        fprintf(stderr, "\rspex batch [%.*s%*s] %ld/%ld lines, %d running, %ld errors, %.1f tok/s ", fill,
                "##############################", width - fill, "", finished, b->total_lines, b->n_fl, b->errors, tps);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "spex batch: %ld/%ld lines done (%ld this run, %ld errors), %d in flight, %.1f tok/s, %.0f s\n",
                finished, b->total_lines, b->completed, b->errors, b->n_fl, tps, el);
    }
}

/* ---------------------------------------------------------------- setup */

static const cli_option_t BATCH_OPTIONS[] = {
    CLI_OPT_NEEDED("--input", "IN.jsonl", batch_cli_t, input, "one request per line"),
    CLI_OPT_NEEDED("--output", "OUT.jsonl", batch_cli_t, output, "results, appended; ids already there are skipped"),
    CLI_OPT_STRING("--errors", "FILE", batch_cli_t, errors, "bad lines, by line number (default\nOUT.jsonl.errors.jsonl)"),
    CLI_OPT_INT("--max-tokens", NULL, "N", batch_cli_t, max_tokens, 1, 1L << 30,
                "default max_tokens for lines without one (default:\n16 for prompts, as many as fit for messages, as\n"
                "the HTTP API)"),
    CLI_OPT_DOUBLE("--progress-interval", "S", batch_cli_t, progress_interval, 0.1, 86400,
                   "seconds between progress lines when stderr is not a\nterminal"),
};

/* -1 to go on, else the exit status. */
static int batch_parse(int argc, char **argv, batch_cli_t *c) {
    *c = (batch_cli_t){.temperature = -1 /* not given */, .progress_interval = 10, .sched = {.max_running = 16}};
    c->sp = cli_sampling_defaults();
    c->sp.spec_k = 0;   /* many sequences per step: K > 0 measures 0.86-1.15x at 8 clients (`spex bench serve`) */
    cli_ep_init(&c->ep);
    char about[512];
    snprintf(about, sizeof about,
             "Rerunning the same command resumes: ids already in OUT are skipped. Exit status: 0 all done,\n"
             "%d stopped by SIGTERM/SIGINT with work left (rerun to resume), 1 error, 2 usage.\n"
             "--spec-k defaults to 0 (with many sequences per step speculation did not pay reliably on the shipped model). Documentation: docs/serving.md",
             BATCH_EXIT_REQUEUE);
    cli_group_t groups[] = {cli_model_group(&c->dir), CLI_GROUP(NULL, BATCH_OPTIONS, c),
                            cli_request_temperature_group(&c->temperature), cli_sched_group(&c->sched),
                            cli_gen_config_group(&c->no_gen_config), cli_chat_template_group(&c->chat_template),
                            cli_sampling_group(&c->sp, CLI_S_SPEC_K | CLI_S_DRAFT | CLI_S_DRAFT_MIN_P | CLI_S_SPEC_STEP_ROWS), cli_ep_group(&c->ep), cli_compute_group(&c->ep)};
    cli_spec_t spec = CLI_SPEC("batch", "batch --model DIR --input IN.jsonl --output OUT.jsonl [options]", about, groups);
    return cli_run_parse(&spec, argc, argv, 1);
}

static int batch_open(batch_t *b, char *errors_path, spex_err_t *err) {
    b->errors_path = errors_path;
    if (scan_done(b->c.output, "id", &b->done_ids, err) || scan_done(errors_path, "line", &b->done_lines, err))
        return -1;
    b->resumed = (long)(b->done_ids.n + b->done_lines.n);
    if (!(b->in = fopen(b->c.input, "rb"))) return spex_fail(err, "cannot read --input '%s': %s", b->c.input, strerror(errno));
    b->total_lines = count_lines(b->c.input);
    b->out_fd = open(b->c.output, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    b->err_fd = open(errors_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (b->out_fd < 0 || b->err_fd < 0)
        return spex_fail(err, "cannot open '%s' for appending: %s", b->out_fd < 0 ? b->c.output : errors_path,
                         strerror(errno));
    if (b->resumed) fprintf(stderr, "spex batch: resuming: %zu ids done, %zu bad lines already reported\n",
                            b->done_ids.n, b->done_lines.n);
    return 0;
}

static int batch_load(batch_t *b, spex_err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", b->c.dir);
    if (access(path, R_OK) == 0 && !(b->tok = tokenizer_load(b->c.dir, err))) return -1;
    if (!(b->chat = cli_chat_template_load("batch", b->c.dir, b->c.chat_template, err))) return -1;
    model_options_t opt = {.load_mtp = b->c.sp.spec_k != 0, .local_experts = true, .progress = cli_progress,
                           .progress_user = "loading model"};
    if (!(b->m = cli_model_load(b->c.dir, &opt, &b->c.ep, err))) return -1;
    size_t prefix = cli_sched_prefix_bytes(&b->c.sched);
    if (prefix && model_set_prefix_cache(b->m, prefix, err)) return -1;
    gen_config_t gc;
    if (cli_gen_config_load("batch", b->c.dir, b->c.no_gen_config, b->m->cfg.vocab_size, &gc, err)) return -1;
    b->defaults = (api_defaults_t){.temperature = 1.0f};
    cli_gen_config_api(&gc, &b->defaults);
    if (b->c.temperature >= 0) b->defaults.temperature = (float)b->c.temperature;
    if (b->c.max_tokens > 0) b->defaults.max_tokens = (int)b->c.max_tokens;
    int k = b->c.sp.spec_k >= 0 ? (int)b->c.sp.spec_k : b->m->n_mtp > 0 ? 2 : 0;
    const cli_sched_t *l = &b->c.sched;
    sched_config_t sc = {.max_running = (int)l->max_running, .max_queue = (int)l->max_running,
                         .kv_capacity_tokens = l->kv_capacity, .max_prompt_tokens = (int)l->max_prompt,
                         .max_tokens_limit = (int)l->max_tokens_limit, .spec_k = k,
                         .argmax_drafts = b->c.sp.draft == CLI_DRAFT_ARGMAX,
                         .spec_step_rows = (int)b->c.sp.spec_step_rows, .draft_min_p = (float)b->c.sp.draft_min_p, .extra_eos = gc.eos};
    if (!(b->sched = scheduler_create(b->m, b->tok, &sc, err))) return -1;
    b->api = (api_ctx_t){.sched = b->sched, .tok = b->tok, .vocab_size = b->m->cfg.vocab_size,
                         .chat_template = chat_template_is_builtin(b->chat) ? NULL : b->chat};
    b->cap_fl = 2 * (int)b->c.sched.max_running;
    b->fl = calloc((size_t)b->cap_fl, sizeof *b->fl);
    return b->fl ? 0 : spex_fail(err, "out of memory");
}

static int write_failed(const batch_t *b, spex_err_t *err) {
    if (!b->failed_path) return spex_fail(err, "out of memory");
    return spex_fail(err, "cannot write '%s': %s (rerun the same command to resume once it can be written)",
                     b->failed_path, strerror(b->failed_errno));
}

/* Steps until the input is exhausted and nothing is in flight, or a signal. */
static int batch_loop(batch_t *b, volatile sig_atomic_t *stop, spex_err_t *err) {
    while (!*stop) {
        if (fill(b)) return write_failed(b, err);
        if (b->n_fl == 0) return 0;
        spex_err_t step_err = {0};
        int engine_failed = scheduler_step(b->sched, &step_err);
        int d = drain(b);
        if (d < 0) return write_failed(b, err);
        if (engine_failed || d > 0) return spex_fail(err, "engine failure: %s (rerun to retry the unfinished ids)",
                                                      step_err.msg[0] ? step_err.msg : "see above");
        progress(b, false);
    }
    return 0;
}

static void batch_free(batch_t *b) {
    for (int i = 0; i < b->n_fl; i++) {
        sched_req_release(b->fl[i].req);
        free(b->fl[i].key);
    }
    free(b->fl);
    scheduler_free(b->sched);
    model_free(b->m);
    tokenizer_free(b->tok);
    chat_template_free(b->chat);
    if (b->in) fclose(b->in);
    if (b->out_fd > 0) close(b->out_fd);
    if (b->err_fd > 0) close(b->err_fd);
    set_free(&b->done_ids);
    set_free(&b->done_lines);
    set_free(&b->seen);
}

/* True when both paths name one existing file (device and inode: a symlink
 * or another spelling of the input counts). */
static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* --output or the errors file being the input would append results to the
 * file being read (and skip every id as done): a usage error (issue 16 item 7). */
static const char *overlapping_file(const batch_cli_t *c, const char *errors_path) {
    if (same_file(c->input, c->output)) return "--output is the --input file";
    if (same_file(c->input, errors_path)) return "--errors is the --input file";
    if (same_file(c->output, errors_path)) return "--errors is the --output file";
    return NULL;
}

int cmd_batch(int argc, char **argv) {
    batch_t b = {.out_fd = -1, .err_fd = -1};
    int prc = batch_parse(argc, argv, &b.c);
    if (prc >= 0) return prc;
    char errors_path[4096];
    snprintf(errors_path, sizeof errors_path, "%s", b.c.errors ? b.c.errors : "");
    if (!b.c.errors) snprintf(errors_path, sizeof errors_path, "%s.errors.jsonl", b.c.output);
    const char *overlap = overlapping_file(&b.c, errors_path);
    if (overlap) {
        cli_error("batch", "%s; results must go to another file", overlap);
        return 2;
    }
    volatile sig_atomic_t stop = 0;
    stop_signals_install(&stop);
    spex_err_t err = {0};
    int rc = 1;
    b.t_start = spex_now();
    if (batch_open(&b, errors_path, &err) || batch_load(&b, &err) || batch_loop(&b, &stop, &err)) {
        if (b.sched) progress(&b, true);
        cli_error("batch", "%s", err.msg);
    } else if (stop && (b.n_fl > 0 || !b.input_done)) {
        progress(&b, true);
        fprintf(stderr, "spex batch: stopped by signal %d after %ld results; rerun the same command to resume\n",
                (int)stop, b.completed);
        rc = BATCH_EXIT_REQUEUE;
    } else {
        progress(&b, true);
        fprintf(stderr, "spex batch: done: %ld results this run, %ld skipped as already done, %ld errors\n",
                b.completed, b.skipped, b.errors);
        rc = 0;
    }
    if (b.m && cli_ep_finish("batch", &b.c.ep) && rc == 0) rc = 1;   /* --ep-stats */
    batch_free(&b);
    return rc;
}
