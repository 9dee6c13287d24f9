/* test_api.c - the OpenAI request/response schema (server/api.h) and JSON escaping
 * (core/strbuf.h): accepted prompt shapes, defaults, every type and range
 * check naming its field, chat prompts equal to the rendered template, and
 * responses / SSE chunks / errors that parse as JSON of OpenAI's shape even
 * when the model produced invalid UTF-8.
 *
 * The unit tests link the coordinator libraries only; server/api.c needs
 * nothing else (no libmicrohttpd), so it is compiled into this test directly. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/api.c"
#include "server/api_response.h"
#include "coordinator/serve/chat.h"
#include "testutil.h"

static tokenizer_t *tok;
static api_ctx_t ctx;

static void setup(void) {
    char path[1024];
    spex_err_t err = {0};
    tok = tokenizer_load(test_data_path(path, sizeof path, "tiny-tokenizer/tokenizer.json"), &err);
    cr_assert_not_null(tok, "%s", err.msg);
    ctx = (api_ctx_t){.tok = tok, .model_name = "tiny", .vocab_size = 320};
}

static void teardown(void) { tokenizer_free(tok); }

TestSuite(api, .init = setup, .fini = teardown);

static const api_defaults_t DEFAULTS = {.temperature = 1.0f};

static int parse(api_kind_t kind, const char *json, api_request_t *r, api_error_t *e) {
    cJSON *root = cJSON_Parse(json);
    cr_assert_not_null(root, "test JSON: %s", json);
    int rc = api_parse_request(&ctx, kind, root, &DEFAULTS, r, e);
    cJSON_Delete(root);
    return rc;
}

static void expect_bad(api_kind_t kind, const char *json, int status, const char *param) {
    api_request_t r;
    api_error_t e;
    cr_assert_eq(parse(kind, json, &r, &e), -1, "accepted: %s", json);
    cr_assert_eq(e.status, status, "%s: status %d", json, e.status);
    if (param) cr_assert(e.param && !strcmp(e.param, param), "%s: param %s", json, e.param ? e.param : "null");
}

Test(api, completion_prompt_shapes_and_defaults) {
    api_request_t r;
    api_error_t e;
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":\"It is\",\"unknown_field\":{\"x\":1},\"user\":null}", &r, &e), 0,
                 "%s", e.message);
    int32_t *ids;
    size_t n;
    spex_err_t err = {0};
    cr_assert_eq(tokenizer_encode(tok, "It is", 5, true, &ids, &n, &err), 0);
    cr_assert_eq(r.n_prompt, (int)n);
    cr_assert_arr_eq(r.prompt, ids, n * sizeof(int32_t));
    cr_assert_eq(r.prompt[0], 0, "BOS added as tokenizer_config.json asks");
    cr_assert_eq(r.params.max_tokens, 16, "OpenAI's default for completions");
    cr_assert_float_eq(r.params.sampling.temperature, 1.0f, 0);
    cr_assert_eq(r.params.spec_k, -1);
    cr_assert_not(r.stream);
    free(ids);
    api_request_free(&r);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[5,6,7],\"max_tokens\":3,\"temperature\":0,\"seed\":42,"
                                       "\"stop\":[\"a\",\"bc\"],\"stream\":true,\"spec_k\":1,\"top_k\":-1,"
                                       "\"stream_options\":{\"include_usage\":true},\"model\":\"tiny\"}",
                       &r, &e),
                 0, "%s", e.message);
    cr_assert_eq(r.n_prompt, 3);
    cr_assert_eq(r.prompt[2], 7);
    cr_assert_eq(r.params.max_tokens, 3);
    cr_assert_eq(r.params.sampling.seed, 42);
    cr_assert_eq(r.params.sampling.top_k, 0);
    cr_assert_eq(r.params.n_stop, 2);
    cr_assert_str_eq(r.params.stop[1], "bc");
    cr_assert(r.stream && r.include_usage);
    cr_assert_eq(r.params.spec_k, 1);
    api_request_free(&r);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[[9,8]]}", &r, &e), 0);
    cr_assert_eq(r.n_prompt, 2);
    api_request_free(&r);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[\"x\"],\"max_completion_tokens\":4}", &r, &e), 0);
    cr_assert_eq(r.params.max_tokens, 4);
    api_request_free(&r);
}

Test(api, wrong_types_and_ranges_name_the_field) {
    expect_bad(API_COMPLETION, "[1,2]", 400, NULL);
    expect_bad(API_COMPLETION, "{}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":5}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[1,320]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[1,2.5]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[\"a\",5]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[\"a\",[[1]]]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":\"10\"}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":2.5}", 400, "temperature");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", 400, "temperature");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":0}", 400, "top_p");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"top_k\":-2}", 400, "top_k");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"seed\":\"1\"}", 400, "seed");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"n\":129}", 400, "n");
    expect_bad(API_COMPLETION, "{\"prompt\":[\"x\",\"y\"],\"n\":65}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stream\":\"yes\"}", 400, "stream");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stream_options\":true}", 400, "stream_options");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stop\":5}", 400, "stop");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"\"]}", 400, "stop");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\","
                               "\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}", 400, "stop");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"spec_k\":9}", 400, "spec_k");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"model\":\"gpt-4\"}", 404, "model");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"model\":7}", 400, "model");
    expect_bad(API_CHAT, "{\"prompt\":\"x\"}", 400, "prompt");
    expect_bad(API_CHAT, "{\"messages\":[]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
               "messages");
}

Test(api, chat_prompt_is_the_rendered_template) {
    api_request_t r;
    api_error_t e;
    cr_assert_eq(parse(API_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be kind.\"},{\"role\":\"user\","
                                 "\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},{\"type\":\"text\",\"text\":"
                                 "\"there\"}]}]}",
                       &r, &e),
                 0, "%s", e.message);
    chat_message_t m[] = {{"system", "Be kind.", 0}, {"user", "Hi there", 0}};
    spex_err_t err = {0};
    char *text = chat_render(m, 2, "<｜begin▁of▁sentence｜>", true, &err);
    int32_t *ids;
    size_t n;
    cr_assert_eq(tokenizer_encode(tok, text, strlen(text), false, &ids, &n, &err), 0);
    cr_assert_eq(r.n_prompt, (int)n);
    cr_assert_arr_eq(r.prompt, ids, n * sizeof(int32_t));
    cr_assert_eq(r.prompt[0], 0, "the template's BOS became the BOS token");
    cr_assert_eq(r.params.max_tokens, SCHED_MAX_TOKENS_FIT, "chat default: as many as fit");
    free(ids);
    free(text);
    api_request_free(&r);
}

Test(api, json_escaping_keeps_output_valid) {
    strbuf_t b = {0};
    const char raw[] = "a\"b\\c\n\x01\xff\xe2\x82\xac\xe2\x82 end";
    sb_json_str(&b, raw, sizeof raw - 1);
    cJSON *v = cJSON_Parse(b.p);
    cr_assert(cJSON_IsString(v), "%s", b.p);
    cr_assert_str_eq(v->valuestring, "a\"b\\c\n\x01\xef\xbf\xbd\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd end");
    cJSON_Delete(v);
    sb_free(&b);
    char nul[] = {'x', 0, 'y'};
    sb_json_str(&b, nul, 3);
    cr_assert_str_eq(b.p, "\"x\\u0000y\"");
    sb_free(&b);
}

Test(api, responses_chunks_and_errors_have_openai_shape) {
    int32_t pids[5] = {1, 2, 3, 4, 5};
    api_prompt_t prompt = {pids, 5, NULL, 0, 0};
    api_request_t rq = {.kind = API_CHAT, .prompts = &prompt, .n_prompts = 1, .n = 1, .n_prompt = 5,
                        .return_tokens = true};
    int32_t toks[] = {7, 8, 1};
    sched_result_t res = {.finish_reason = "stop", .text = "hi\xff", .text_len = 3, .tokens = toks, .n_tokens = 3,
                          .prompt_tokens = 5};
    const sched_result_t *resp[1] = {&res};
    strbuf_t b = {0};
    api_response_json(&b, &rq, tok, "chatcmpl-1", 123, "tiny", resp, 1);
    cJSON *o = cJSON_Parse(b.p);
    cr_assert_not_null(o, "%s", b.p);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion");
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content")->valuestring, "hi\xef\xbf\xbd");
    cr_assert_str_eq(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "stop");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(ch, "tokens")), 3);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint, 8);
    cJSON_Delete(o);
    sb_reset(&b);
    api_chunk_sse(&b, &rq, tok, "chatcmpl-1", 123, "tiny", &(api_delta_t){.text = "x", .len = 1, .role = true}, 2);
    cr_assert_eq(strncmp(b.p, "data: {", 7), 0);
    cr_assert_eq(strcmp(b.p + b.n - 2, "\n\n"), 0);
    o = cJSON_Parse(b.p + 6);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion.chunk");
    ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "role")->valuestring, "assistant");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(ch, "finish_reason")));
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "completion_tokens")->valueint, 2);
    cJSON_Delete(o);
    sb_reset(&b);
    api_error_t e;
    api_submit_error(SCHED_QUEUE_FULL, NULL, "busy", &e);
    cr_assert_eq(e.status, 429);
    api_error_json(&b, &e);
    o = cJSON_Parse(b.p);
    cJSON *err = cJSON_GetObjectItem(o, "error");
    cr_assert_str_eq(cJSON_GetObjectItem(err, "message")->valuestring, "busy");
    cr_assert_str_eq(cJSON_GetObjectItem(err, "type")->valuestring, "rate_limit_error");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(err, "param")));
    cr_assert_str_eq(cJSON_GetObjectItem(err, "code")->valuestring, "queue_full");
    cJSON_Delete(o);
    sb_free(&b);
    sched_result_t down = {.finish_reason = "cancelled", .shutdown = true};
    cr_assert(api_result_error(&down, &e));
    cr_assert_eq(e.status, 503);
    sched_result_t broken = {.finish_reason = "error", .error = "rank 2: worker died"};
    cr_assert(api_result_error(&broken, &e));
    cr_assert_eq(e.status, 500);
    cr_assert(strstr(e.message, "rank 2"));
    cr_assert_not(api_result_error(&res, &e));
}

Test(api, openai_fields_work_or_are_refused_by_name) {
    api_request_t r;
    api_error_t e;
    /* implemented */
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[\"a\",[5,6]],\"n\":3,\"logprobs\":2,\"presence_penalty\":0.5,"
                                       "\"frequency_penalty\":-1,\"logit_bias\":{\"7\":-100,\"9\":2.5},\"seed\":10,"
                                       "\"best_of\":1,\"suffix\":\"\",\"user\":\"u\"}", &r, &e), 0, "%s", e.message);
    cr_assert_eq(api_n_choices(&r), 6);
    cr_assert(r.params.logprobs);
    cr_assert_eq(r.params.top_logprobs, 2);
    cr_assert_float_eq(r.params.adjust.presence, 0.5f, 0);
    cr_assert_float_eq(r.params.adjust.frequency, -1.0f, 0);
    cr_assert_eq(r.params.adjust.n_bias, 2);
    cr_assert_eq(r.params.adjust.bias[0].id, 7);
    cr_assert_float_eq(r.params.adjust.bias[1].bias, 2.5f, 0);
    sched_params_t p;
    api_choice_params(&r, 4, &p);   /* prompt 1, its second choice */
    cr_assert_eq(p.n_prompt, 2);
    cr_assert_eq(p.prompt[1], 6);
    cr_assert_eq(p.sampling.seed, 11);
    cr_assert_eq(api_prompt_tokens(&r), r.prompts[0].n + 2);
    api_request_free(&r);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[5,6],\"echo\":true}", &r, &e), 0, "%s", e.message);
    cr_assert_eq(r.prompts[0].echo_len, strlen(r.prompts[0].echo));
    api_request_free(&r);
    cr_assert_eq(parse(API_CHAT, "{\"messages\":[{\"role\":\"developer\",\"content\":\"Be kind.\"},{\"role\":\"user\","
                                 "\"content\":\"Hi\"}],\"logprobs\":true,\"top_logprobs\":20,"
                                 "\"max_tokens\":5,\"max_completion_tokens\":5,\"response_format\":{\"type\":\"text\"}}",
                       &r, &e), 0, "%s", e.message);
    api_request_t sys;
    cr_assert_eq(parse(API_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be kind.\"},{\"role\":\"user\","
                                 "\"content\":\"Hi\"}]}", &sys, &e), 0);
    cr_assert_eq(r.n_prompt, sys.n_prompt, "developer renders as system");
    cr_assert_arr_eq(r.prompt, sys.prompt, sizeof(int32_t) * (size_t)r.n_prompt);
    cr_assert_eq(r.params.max_tokens, 5);
    cr_assert_eq(r.params.top_logprobs, 20);
    api_request_free(&r);
    api_request_free(&sys);
    /* refused, naming the field */
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":6}", 400, "logprobs");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"presence_penalty\":2.5}", 400, "presence_penalty");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"frequency_penalty\":\"1\"}", 400, "frequency_penalty");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"320\":1}}", 400, "logit_bias");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"1x\":1}}", 400, "logit_bias");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"1\":101}}", 400, "logit_bias");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":[1]}", 400, "logit_bias");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"best_of\":2}", 400, "best_of");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"suffix\":\"y\"}", 400, "suffix");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"top_logprobs\":2}", 400, "top_logprobs");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"tools\":[]}", 400, "tools");
    const char *chat_refused[] = {"\"tools\":[{\"type\":\"function\"}]", "\"tool_choice\":\"auto\"",
                                  "\"functions\":[]", "\"function_call\":\"auto\"",
                                  "\"response_format\":{\"type\":\"json_object\"}", "\"echo\":true", "\"suffix\":\"s\"",
                                  "\"best_of\":1", "\"audio\":{}", "\"modalities\":[\"text\",\"audio\"]",
                                  "\"prediction\":{}", "\"reasoning_effort\":\"low\"", "\"store\":true",
                                  "\"metadata\":{}", "\"service_tier\":\"flex\"", "\"parallel_tool_calls\":true",
                                  "\"web_search_options\":{}", "\"user\":5"};
    for (size_t i = 0; i < sizeof chat_refused / sizeof chat_refused[0]; i++) {
        char json[256], name[64];
        snprintf(json, sizeof json, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}", chat_refused[i]);
        snprintf(name, sizeof name, "%.*s", (int)(strchr(chat_refused[i] + 1, '"') - chat_refused[i] - 1),
                 chat_refused[i] + 1);
        expect_bad(API_CHAT, json, 400, name);
    }
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 400,
               "top_logprobs");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
                         "\"top_logprobs\":21}", 400, "top_logprobs");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":4,"
                         "\"max_completion_tokens\":5}", 400, "max_completion_tokens");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":\"bob\"}]}", 400, "messages");
}

Test(api, logprobs_json_shapes) {
    int32_t pids[2] = {5, 6};
    api_prompt_t prompt = {pids, 2, "It", 2, 0};
    api_request_t rq = {.kind = API_COMPLETION, .prompts = &prompt, .n_prompts = 1, .n = 1, .echo = true,
                        .params = {.logprobs = true, .top_logprobs = 1}};
    sched_token_t ti[2] = {{70, 1}, {71, 3}};
    token_logprob_t lp[2] = {{-0.5f, 1, {70}, {-0.5f}}, {-1.25f, 1, {72}, {-0.25f}}};
    sched_result_t res = {.finish_reason = "length", .text = "abc", .text_len = 3, .n_tokens = 2, .token_info = ti,
                          .logprobs = lp, .n_token_info = 2};
    const sched_result_t *resp[1] = {&res};
    strbuf_t b = {0};
    api_response_json(&b, &rq, tok, "cmpl-1", 1, "tiny", resp, 1);
    cJSON *o = cJSON_Parse(b.p);
    cr_assert_not_null(o, "%s", b.p);
    cJSON *lps = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "logprobs");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(lps, "tokens")), 2);
    cr_assert_float_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(lps, "token_logprobs"), 1)->valuedouble, -1.25, 1e-9);
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(lps, "text_offset"), 0)->valueint, 2, "after the echo");
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(lps, "text_offset"), 1)->valueint, 3);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(lps, "top_logprobs"), 1)), 1);
    cJSON_Delete(o);
    sb_reset(&b);
    rq.kind = API_CHAT;
    api_response_json(&b, &rq, tok, "chatcmpl-1", 1, "tiny", resp, 1);
    o = cJSON_Parse(b.p);
    cr_assert_not_null(o, "%s", b.p);
    lps = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "logprobs");
    cJSON *c1 = cJSON_GetArrayItem(cJSON_GetObjectItem(lps, "content"), 1);
    cr_assert_float_eq(cJSON_GetObjectItem(c1, "logprob")->valuedouble, -1.25, 1e-9);
    cr_assert(cJSON_IsArray(cJSON_GetObjectItem(c1, "bytes")));
    cJSON *alt = cJSON_GetArrayItem(cJSON_GetObjectItem(c1, "top_logprobs"), 0);
    cr_assert_float_eq(cJSON_GetObjectItem(alt, "logprob")->valuedouble, -0.25, 1e-9);
    cJSON_Delete(o);
    sb_free(&b);
}

/* echo with logprobs (OpenAI's legacy completions): the prompt's tokens come
 * first, the first of them with null logprob and top_logprobs, then the
 * completion's; offsets run through the echoed text and on into the completion. */
Test(api, echo_logprobs_list_the_prompt_first) {
    api_request_t pr;
    api_error_t e;
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":\"It is\",\"logprobs\":1,\"echo\":true}", &pr, &e), 0, "%s",
                 e.message);
    cr_assert(pr.params.prompt_logprobs, "echo + logprobs asks the engine for the prompt's logprobs");
    api_request_free(&pr);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":1,\"echo\":true,\"stream\":true}", &pr, &e),
                 0, "streamed too: %s", e.message);
    cr_assert(pr.params.prompt_logprobs);
    api_request_free(&pr);
    int32_t pids[3] = {5, 6, 7};
    api_prompt_t prompt = {pids, 3, "It is", 5, 0};
    api_request_t rq = {.kind = API_COMPLETION, .prompts = &prompt, .n_prompts = 1, .n = 1, .echo = true,
                        .params = {.logprobs = true, .top_logprobs = 1, .prompt_logprobs = true}};
    sched_token_t ti[2] = {{70, 1}, {71, 3}};
    token_logprob_t lp[2] = {{-0.5f, 1, {70}, {-0.5f}}, {-1.25f, 1, {72}, {-0.25f}}};
    token_logprob_t plp[3] = {{0}, {-2.5f, 1, {6}, {-2.5f}}, {-3.5f, 1, {9}, {-0.75f}}};
    sched_result_t res = {.finish_reason = "length", .text = "abc", .text_len = 3, .n_tokens = 2, .token_info = ti,
                          .logprobs = lp, .prompt_logprobs = plp, .n_token_info = 2};
    const sched_result_t *resp[1] = {&res};
    strbuf_t b = {0};
    api_response_json(&b, &rq, tok, "cmpl-1", 1, "tiny", resp, 1);
    cJSON *o = cJSON_Parse(b.p);
    cr_assert_not_null(o, "%s", b.p);
    cJSON *lps = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "logprobs");
    cJSON *tl = cJSON_GetObjectItem(lps, "token_logprobs"), *top = cJSON_GetObjectItem(lps, "top_logprobs");
    cJSON *off = cJSON_GetObjectItem(lps, "text_offset");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(lps, "tokens")), 5, "%s", b.p);
    cr_assert_eq(cJSON_GetArraySize(tl), 5);
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(tl, 0)), "the first prompt token has no logprob");
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(top, 0)));
    cr_assert_float_eq(cJSON_GetArrayItem(tl, 1)->valuedouble, -2.5, 1e-9);
    cr_assert_float_eq(cJSON_GetArrayItem(tl, 2)->valuedouble, -3.5, 1e-9);
    cr_assert_float_eq(cJSON_GetArrayItem(tl, 3)->valuedouble, -0.5, 1e-9, "then the completion's");
    cr_assert_float_eq(cJSON_GetArrayItem(tl, 4)->valuedouble, -1.25, 1e-9);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetArrayItem(top, 2)), 1);
    cr_assert_eq(cJSON_GetArrayItem(off, 0)->valueint, 0, "the prompt starts the text");
    cr_assert_eq(cJSON_GetArrayItem(off, 3)->valueint, 5, "the completion starts after the echo");
    cr_assert_eq(cJSON_GetArrayItem(off, 4)->valueint, 6);
    for (int i = 1; i < 5; i++)
        cr_assert_leq(cJSON_GetArrayItem(off, i - 1)->valueint, cJSON_GetArrayItem(off, i)->valueint);
    cJSON_Delete(o);
    sb_free(&b);
    /* streamed: the echo chunk carries the prompt's part of the same list */
    api_echo_chunk_sse(&b, &rq, tok, "cmpl-1", 1, "tiny", 0, plp, -1);
    cr_assert(!strncmp(b.p, "data: ", 6), "%s", b.p);
    o = cJSON_Parse(b.p + 6);
    cr_assert_not_null(o, "%s", b.p);
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(ch, "text")->valuestring, "It is");
    lps = cJSON_GetObjectItem(ch, "logprobs");
    tl = cJSON_GetObjectItem(lps, "token_logprobs");
    cr_assert_eq(cJSON_GetArraySize(tl), 3, "%s", b.p);
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(tl, 0)));
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(lps, "top_logprobs"), 0)));
    cr_assert_float_eq(cJSON_GetArrayItem(tl, 2)->valuedouble, -3.5, 1e-9);
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(lps, "text_offset"), 0)->valueint, 0);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(ch, "finish_reason")));
    cJSON_Delete(o);
    sb_free(&b);
}

/* max_tokens 0 (OpenAI's way to score a prompt, as lm-eval-harness does):
 * accepted with echo and passed on as 0, not as "as many as fit" (which is
 * what leaving it out means for chat); without echo there is nothing to
 * answer with (400 naming the field sent), and negative values stay a 400.
 * The answer is the echoed prompt with its tokens' logprobs and no more. */
Test(api, max_tokens_zero_scores_the_prompt) {
    api_request_t pr;
    api_error_t e;
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":\"It is\",\"logprobs\":1,\"echo\":true,\"max_tokens\":0}", &pr, &e),
                 0, "%s", e.message);
    cr_assert_eq(pr.params.max_tokens, 0);
    cr_assert(pr.params.prompt_logprobs);
    api_request_free(&pr);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":\"x\",\"echo\":true,\"max_completion_tokens\":0}", &pr, &e), 0,
                 "echo without logprobs: %s", e.message);
    cr_assert_eq(pr.params.max_tokens, 0);
    api_request_free(&pr);
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0,\"logprobs\":1}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"echo\":false,\"max_completion_tokens\":0}", 400,
               "max_completion_tokens");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":-1}", 400, "max_tokens");
    int32_t pids[3] = {5, 6, 7};
    api_prompt_t prompt = {pids, 3, "It is", 5, 0};
    api_request_t rq = {.kind = API_COMPLETION, .prompts = &prompt, .n_prompts = 1, .n = 1, .echo = true,
                        .params = {.logprobs = true, .top_logprobs = 1, .prompt_logprobs = true}};
    token_logprob_t plp[3] = {{0}, {-2.5f, 1, {6}, {-2.5f}}, {-3.5f, 1, {9}, {-0.75f}}};
    sched_result_t res = {.finish_reason = "length", .text = "", .prompt_logprobs = plp};   /* no token, no lps */
    const sched_result_t *resp[1] = {&res};
    strbuf_t b = {0};
    api_response_json(&b, &rq, tok, "cmpl-1", 1, "tiny", resp, 1);
    cJSON *o = cJSON_Parse(b.p);
    cr_assert_not_null(o, "%s", b.p);
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(ch, "text")->valuestring, "It is", "the prompt, nothing after it");
    cr_assert_str_eq(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "length");
    cJSON *tl = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "logprobs"), "token_logprobs");
    cr_assert_eq(cJSON_GetArraySize(tl), 3, "the prompt's tokens only: %s", b.p);
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(tl, 0)));
    cr_assert_float_eq(cJSON_GetArrayItem(tl, 2)->valuedouble, -3.5, 1e-9);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "completion_tokens")->valueint, 0);
    cJSON_Delete(o);
    sb_free(&b);
}
