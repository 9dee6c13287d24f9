/* cmd_generate.c - `spex generate`: continue a prompt.
 *
 *   spex generate --model DIR (--prompt TEXT | --tokens IDS) [options: GEN_OPTIONS, sampling, EP]
 * Streams the text to stdout as it is generated (token ids if the model has no
 * tokenizer.json); with --json prints one object {tokens, text, stats} at the end.
 * A prompt given as text gets BOS prepended when the tokenizer config asks for it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_ep.h"
#include "cli/cli_genconf.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/decode/generate.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "transport/mpi_world.h"

typedef struct gen_cli {
    const char *dir, *prompt, *tokens;
    long n;
    cli_sampling_t sp;
    const char *stats_file;
    bool json, no_bos, no_gen_config;
    cli_ep_t ep;
    seq_params_t gp;   /* from the options above */
} gen_cli_t;

typedef struct stream_ctx {
    const tokenizer_t *tok;
    utf8_stream_t utf8;
    bool print;
    const eos_set_t *eos;   /* stop tokens print nothing */
} stream_ctx_t;

static const cli_option_t GEN_OPTIONS[] = {
    CLI_OPT_STRING("--prompt", "TEXT", gen_cli_t, prompt, "the prompt as text (needs tokenizer.json)"),
    CLI_OPT_STRING("--tokens", "ID,ID,...", gen_cli_t, tokens, "the prompt as token ids"),
    CLI_OPT_INT("--max-tokens", "-n", "N", gen_cli_t, n, 0, 1 << 24,
                "tokens to generate (default: generation_config.json's\nmax_new_tokens, else 64)"),
    CLI_OPT_FLAG("--json", gen_cli_t, json, "print {tokens, text, stats} instead of streaming text"),
    CLI_OPT_STRING("--stats", "FILE", gen_cli_t, stats_file,
                   "write the stats object (timings, speculation\nacceptance; with the experts behind the wire also\n"
                   "\"expert_parallelism\", as --ep-stats writes it) as JSON"),
    CLI_OPT_FLAG("--no-bos", gen_cli_t, no_bos, "do not prepend BOS to a --prompt"),
};

/* Parses into c; -1 to go on, else the exit status. */
static int gen_parse(int argc, char **argv, gen_cli_t *c) {
    c->n = -1;   /* -1: not given (generation_config.json's, else the default) */
    c->sp = cli_sampling_defaults();
    c->sp.spec_k = -1;   /* not given: spex_default_spec_k() (engine.h) */
    c->sp.temperature = c->sp.top_p = -1;
    c->sp.top_k = -1;
    cli_ep_init(&c->ep);
    cli_group_t groups[] = {cli_model_group(&c->dir), CLI_GROUP(NULL, GEN_OPTIONS, c), cli_sampling_group(&c->sp, 0),
                            cli_gen_config_group(&c->no_gen_config), cli_ep_group(&c->ep), cli_compute_group(&c->ep)};
    cli_spec_t spec = CLI_SPEC("generate", "generate --model DIR (--prompt TEXT | --tokens ID,ID,...) [options]",
                               "Streams the text as it is generated (token ids without tokenizer.json). --temperature, --top-p,\n"
                               "--top-k and -n not given come from the model's generation_config.json, else greedy,\n"
                               "1, 0 (off) and 64; its eos_token_id ids stop generation too. With an MTP module --spec-k\n"
                               "defaults to 1 in one process and 3 with expert ranks (the fastest measured on the shipped\n"
                               "model), else 0.", groups);
    int rc = cli_run_parse(&spec, argc, argv, 1);
    if (rc >= 0) return rc;
    if (!c->prompt == !c->tokens) return cli_usage_error(&spec, "need exactly one of --prompt / --tokens");
    c->gp.spec_k = (int)c->sp.spec_k;   /* the rest once generation_config.json is read (gen_resolve) */
    return -1;
}

/* The sequence's parameters: options given win, then generation_config.json, then the defaults. */
static int gen_resolve(gen_cli_t *c, const model_t *m, bool local_experts, const tokenizer_t *tok, spex_err_t *err) {
    gen_config_t gc;
    if (cli_gen_config_load("generate", c->dir, c->no_gen_config, m->cfg.vocab_size, &gc, err)) return -1;
    cli_sampling_t *sp = &c->sp;
    if (sp->temperature < 0) sp->temperature = gc.has_temperature ? gc.temperature : 0;
    if (sp->top_p < 0) sp->top_p = gc.has_top_p ? gc.top_p : 1;
    if (sp->top_k < 0) sp->top_k = gc.has_top_k ? gc.top_k : 0;
    if (sp->spec_k < 0) sp->spec_k = spex_default_spec_k(m->n_mtp, local_experts);
    if (c->n < 0) c->n = gc.has_max_new_tokens ? gc.max_new_tokens : 64;
    c->gp = cli_sampling_seq(sp);
    c->gp.max_new_tokens = (int)c->n;
    eos_set_add(&c->gp.eos, tok ? tokenizer_eos_id(tok) : m->cfg.eos_token_id);
    return eos_set_merge(&c->gp.eos, &gc.eos) ? spex_fail(err, "more than %d stop token ids", SPEX_MAX_EOS) : 0;
}

static int on_token(void *user, int32_t tok) {
    stream_ctx_t *s = user;
    if (!s->print) return 0;
    if (!s->tok) { printf("%d ", (int)tok); fflush(stdout); return 0; }
    if (tokenizer_is_special(s->tok, tok) || eos_set_has(s->eos, tok)) return 0;
    size_t len;
    const char *b = tokenizer_token_bytes(s->tok, tok, &len);
    if (!b) return 0;
    char buf[512];
    if (len + 4 > sizeof buf) { fwrite(b, 1, len, stdout); fflush(stdout); return 0; }
    size_t k = utf8_stream_push(&s->utf8, b, len, buf);
    fwrite(buf, 1, k, stdout);
    fflush(stdout);
    return 0;
}

/* Prompt ids from --tokens or by encoding --prompt. */
static int gen_prompt(const gen_cli_t *c, const tokenizer_t *tok, int32_t **ids, int *n, spex_err_t *err) {
    if (c->tokens) {
        return cli_parse_ids("--tokens", c->tokens, ids, n) ? spex_fail(err, "bad --tokens") : 0;
    }
    if (!tok) return spex_fail(err, "--prompt needs a tokenizer.json in the model directory (or use --tokens)");
    size_t cnt;
    bool bos = !c->no_bos && tokenizer_bos_id(tok) >= 0 && tokenizer_add_bos_default(tok);
    if (tokenizer_encode(tok, c->prompt, strlen(c->prompt), bos, ids, &cnt, err)) return -1;
    *n = (int)cnt;
    return 0;
}

/* The stats object: timings and speculation acceptance per draft position. */
static cJSON *stats_json(const gen_stats_t *st, int spec_k) {
    const spec_stats_t *sp = &st->spec;
    int n = st->generated_tokens;
    cJSON *o = cJSON_CreateObject(), *acc = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "prompt_tokens", st->prompt_tokens);
    cJSON_AddNumberToObject(o, "generated_tokens", n);
    cJSON_AddStringToObject(o, "finish_reason", st->finish_reason);
    cJSON_AddNumberToObject(o, "prefill_seconds", st->prefill_seconds);
    cJSON_AddNumberToObject(o, "decode_seconds", st->decode_seconds);
    cJSON_AddNumberToObject(o, "prefill_tokens_per_second",
                            st->prefill_seconds > 0 ? st->prompt_tokens / st->prefill_seconds : 0);
    cJSON_AddNumberToObject(o, "decode_tokens_per_second",
                            st->decode_seconds > 0 && n > 1 ? (n - 1) / st->decode_seconds : 0);
    cJSON_AddNumberToObject(o, "spec_k", spec_k);
    cJSON_AddNumberToObject(o, "steps", (double)sp->steps);
    cJSON_AddNumberToObject(o, "tokens_per_step", sp->steps ? (double)sp->emitted / sp->steps : 0.0);
    cJSON_AddNumberToObject(o, "drafted", (double)sp->drafted);
    cJSON_AddNumberToObject(o, "accepted", (double)sp->accepted);
    cJSON_AddNumberToObject(o, "rejected", (double)(sp->drafted - sp->accepted));
    cJSON_AddNumberToObject(o, "acceptance", sp->drafted ? (double)sp->accepted / sp->drafted : 0.0);
    for (int j = 0; acc && j < spec_k; j++)
        cJSON_AddItemToArray(acc, cJSON_CreateNumber(sp->drafted_at[j] ? (double)sp->accepted_at[j] / sp->drafted_at[j] : 0.0));
    cJSON_AddItemToObject(o, "acceptance_by_position", acc);
    cJSON_AddItemToObject(o, "drafted_by_position", cli_json_longs(sp->drafted_at, spec_k));
    cJSON_AddItemToObject(o, "accepted_by_position", cli_json_longs(sp->accepted_at, spec_k));
    return o;
}

static int print_json(const tokenizer_t *tok, const int32_t *gen, int n, const gen_stats_t *st, int spec_k,
                      const eos_set_t *eos) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "tokens", cli_json_ids(gen, n));
    size_t len = 0;
    int n_text = n > 0 && eos_set_has(eos, gen[n - 1]) ? n - 1 : n;   /* a stop token has no text */
    char *text = tok ? tokenizer_decode(tok, gen, (size_t)n_text, true, &len, NULL) : NULL;
    cli_json_add_text(o, "text", text ? text : "", len);
    free(text);
    cJSON_AddItemToObject(o, "stats", stats_json(st, spec_k));
    return cli_json_print(o, stdout);
}

/* The stats object to `path`, with the expert-parallel statistics (if the
 * experts are behind the wire) added as "expert_parallelism". */
static int write_stats(const char *path, const gen_stats_t *st, int spec_k, cli_ep_t *ep) {
    spex_err_t err = {{0}};
    char *ep_json = cli_ep_stats_json(ep, &err);
    if (err.msg[0]) { cli_error("generate", "%s", err.msg); return -1; }
    cJSON *o = stats_json(st, spec_k);
    if (ep_json) cJSON_AddRawToObject(o, "expert_parallelism", ep_json);
    FILE *f = fopen(path, "w");
    int rc = !f || cli_json_print(o, f) ? -1 : 0;
    if (!f) cJSON_Delete(o);
    if (f && fclose(f)) rc = -1;
    if (rc) cli_error("generate", "cannot write --stats file '%s'", path);
    /* the table too when real workers did the routed work (--ep-stats prints it anyway) */
    else if (ep_json && !ep->stats && mpi_world_size() > 1) cli_ep_print_stats(ep, stderr);
    free(ep_json);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_cli_t c = {0};
    int prc = gen_parse(argc, argv, &c);
    if (prc >= 0) return prc;
    spex_err_t err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", c.dir);
    tokenizer_t *tok = NULL;
    if (access(path, R_OK) == 0 && !(tok = tokenizer_load(c.dir, &err))) {
        cli_error("generate", "%s", err.msg);
        return 1;
    }
    int32_t *prompt = NULL, *gen = NULL;
    int n_prompt = 0, n_gen = 0, rc = 1;
    model_options_t opt = {.load_mtp = c.gp.spec_k != 0, .local_experts = true, .progress = cli_progress, .progress_user = "loading model"};
    model_t *m = NULL;
    stream_ctx_t sc = {.tok = tok, .print = !c.json};
    if (gen_prompt(&c, tok, &prompt, &n_prompt, &err) || !(m = cli_model_load(c.dir, &opt, &c.ep, &err))) goto fail;
    if (gen_resolve(&c, m, opt.local_experts, tok, &err)) goto fail;
    sc.eos = &c.gp.eos;
    gen_stats_t st;
    if (generate(m, prompt, n_prompt, &c.gp, on_token, &sc, &gen, &n_gen, &st, &err)) goto fail;
    if (c.json && print_json(tok, gen, n_gen, &st, c.gp.spec_k, &c.gp.eos)) {
        spex_fail(&err, "out of memory");
        goto fail;
    }
    if (!c.json) {
        char tail[8];
        fwrite(tail, 1, utf8_stream_flush(&sc.utf8, tail), stdout);
        printf("\n");
        fflush(stdout);   /* the text before the summary when both go to one pipe */
        fprintf(stderr, "spex: %d prompt tokens, %d generated (%s); prefill %.1f tok/s, decode %.1f tok/s",
                st.prompt_tokens, st.generated_tokens, st.finish_reason,
                st.prefill_seconds > 0 ? st.prompt_tokens / st.prefill_seconds : 0,
                st.decode_seconds > 0 && n_gen > 1 ? (n_gen - 1) / st.decode_seconds : 0);
        if (c.gp.spec_k > 0)
            fprintf(stderr, "; spec-k %d: %.2f tokens/step, acceptance %.1f%%", c.gp.spec_k,
                    st.spec.steps ? (double)st.spec.emitted / st.spec.steps : 0.0,
                    st.spec.drafted ? 100.0 * st.spec.accepted / st.spec.drafted : 0.0);
        fputc('\n', stderr);
    }
    if (c.stats_file && write_stats(c.stats_file, &st, c.gp.spec_k, &c.ep)) goto done;
    if (cli_ep_finish("generate", &c.ep)) goto done;
    rc = 0;
    goto done;
fail:
    cli_error("generate", "%s", err.msg);
done:
    model_free(m);
    tokenizer_free(tok);
    free(prompt);
    free(gen);
    return rc;
}
